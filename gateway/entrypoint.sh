#!/bin/sh
# Entrypoint of the gateway image (/usr/local/bin/fleet-gateway, gateway/Dockerfile).
#
# Refuses to start, with one line naming the setting and exit status 78 (EX_CONFIG), when a
# setting is missing or malformed; builds the template's derived variables from the settings
# (for each service GATEWAY_SERVICES lists, its upstream block and its route's target from its
# <SERVICE>_SERVERS; the set_real_ip_from lines from GATEWAY_TRUSTED_PROXIES; NGINX's resolver
# from GATEWAY_RESOLVER or /etc/resolv.conf; the API docs' list of documents from the routed
# services, and their directories from GATEWAY_DOCS_DIR and GATEWAY_SWAGGER_UI_DIR);
# renders nginx.conf.template with envsubst restricted to exactly the template's variables
# (NGINX's own $variables are left alone) into the writable run directory; then execs NGINX in
# the foreground as PID 1. Extra arguments go to nginx ("-t" only checks).
#
# fleet_tools.gateway renders the same file in Python; tests/gateway runs this script with
# BusyBox ash (the image's shell) and dash and checks that both agree with it, on the file and
# on what they accept and refuse, word for word. Hence POSIX sh only: no arrays, no [[ ]], no
# regexes. docs/gateway.md describes every setting.
set -eu

template=/etc/nginx/fleet/nginx.conf.template
resolv_conf=/etc/resolv.conf

# Settings that must be set and non-empty (the image has a default for each).
required="GATEWAY_LISTEN GATEWAY_RATE GATEWAY_BURST GATEWAY_READ_TIMEOUT GATEWAY_RUN_DIR GATEWAY_ACCESS_LOG GATEWAY_ERROR_LOG GATEWAY_WORKER_PROCESSES"
# The services routed are the ones GATEWAY_SERVICES lists, each with its server lines in
# <SERVICE>_SERVERS: all must be set (they name the deployment's services, so the image has no
# default); an empty <SERVICE>_SERVERS leaves its service unrouted (its prefix answers 404).
# Template variables the script computes from other settings.
derived="GATEWAY_REAL_IP_FROM GATEWAY_RESOLVER_DIRECTIVE GATEWAY_UPSTREAMS GATEWAY_ROUTES GATEWAY_DOCS_CONFIG GATEWAY_DOCS_ROOT GATEWAY_SWAGGER_UI_ROOT"
# How long NGINX uses a DNS answer when GATEWAY_RESOLVER_VALID is unset or empty: short, so a
# Service created again with a new ClusterIP is reached within seconds.
default_resolver_valid=10s
# Where the image keeps the API docs' own files (gateway/docs/) and Swagger UI's assets, when
# GATEWAY_DOCS_DIR / GATEWAY_SWAGGER_UI_DIR are unset or empty.
default_docs_dir=/usr/share/fleet-gateway/docs
default_swagger_ui_dir=/usr/share/fleet-gateway/swagger-ui

fail() {
    # printf, not echo: dash's echo would expand a backslash in a quoted setting.
    printf 'fleet-gateway: %s\n' "$*" >&2
    exit 78
}

# is_ipv4 TEXT: four decimal octets 0-255 without leading zeros (which some parsers read as
# octal, and Python's ipaddress refuses).
is_ipv4() {
    case $1 in
        '' | *[!0-9.]* | .* | *. | *..*) return 1 ;;
    esac
    octets_ifs=$IFS
    IFS=.
    # Split on the dots (only digits and dots are left, so nothing to glob).
    # shellcheck disable=SC2086
    set -- $1
    IFS=$octets_ifs
    [ $# -eq 4 ] || return 1
    for octet do
        case $octet in
            [0-9] | [1-9][0-9] | 1[0-9][0-9] | 2[0-4][0-9] | 25[0-5]) ;;
            *) return 1 ;;
        esac
    done
}

# hex_groups TEXT: sets $groups to the number of 1-4 digit hex groups in TEXT, which are
# separated by single colons (empty TEXT has none); fails on anything else.
hex_groups() {
    groups=0
    rest=$1
    while [ -n "$rest" ]; do
        case ${rest%%:*} in
            '' | ?????* | *[!0-9A-Fa-f]*) return 1 ;;
        esac
        groups=$((groups + 1))
        case $rest in
            *:*) rest=${rest#*:}; [ -n "$rest" ] || return 1 ;;  # a trailing colon
            *) rest= ;;
        esac
    done
}

# is_ipv6 TEXT: eight hex groups, or fewer around one "::"; the last two may be written as an
# IPv4 address (::ffff:192.0.2.1).
is_ipv6() {
    address=$1
    case $address in
        *[!0-9A-Fa-f:.]* | *:::* | *::*::*) return 1 ;;
        *.*)
            is_ipv4 "${address##*:}" || return 1
            address=${address%:*}:0:0 ;;
    esac
    case $address in
        *::*)
            hex_groups "${address%%::*}" || return 1
            before=$groups
            hex_groups "${address#*::}" || return 1
            [ $((before + groups)) -le 7 ] ;;
        *)
            hex_groups "$address" && [ "$groups" -eq 8 ] ;;
    esac
}

# is_address_or_range TEXT: an IPv4 or IPv6 address, optionally with a prefix length that
# fits it. Host names are refused: NGINX would look them up in DNS at every start.
is_address_or_range() {
    case $1 in
        */*) address=${1%/*} prefix=${1##*/} ;;
        *) address=$1 prefix= ;;
    esac
    case $1 in
        */) return 1 ;;
    esac
    case $prefix in
        '' | [0-9] | [1-9][0-9] | 1[01][0-9] | 12[0-8]) ;;
        *) return 1 ;;
    esac
    case $address in
        *:*) is_ipv6 "$address" ;;
        # NGINX's IPv4 parser returns 255.255.255.255 as its error value (INADDR_NONE), so
        # it refuses that address; it is no proxy's address anyway.
        255.255.255.255) return 1 ;;
        *) is_ipv4 "$address" && { [ -z "$prefix" ] || [ "$prefix" -le 32 ]; } ;;
    esac
}

# is_port TEXT: 1-65535 without leading zeros.
is_port() {
    case $1 in
        '' | 0* | *[!0-9]* | ??????*) return 1 ;;
    esac
    [ "$1" -le 65535 ]
}

# is_host_name TEXT: letters, digits, dots and hyphens, starting with a letter or digit, with a
# letter somewhere (so a mistyped IPv4 address is refused rather than looked up).
is_host_name() {
    case $1 in
        '' | [!A-Za-z0-9]* | *[!A-Za-z0-9.-]*) return 1 ;;
        *[A-Za-z]*) return 0 ;;
    esac
    return 1
}

# split_port ADDRESS: sets $host and $port (":8000", or empty) from host[:port].
split_port() {
    case $1 in
        *:*) host=${1%:*} port=:${1##*:} ;;
        *) host=$1 port= ;;
    esac
}

# bracketed_ipv6 TEXT: "[address]" or "[address]:port" with an IPv6 address and a valid port.
bracketed_ipv6() {
    case $1 in
        \[*\])
            bracket_inner=${1#?}
            bracket_inner=${bracket_inner%?}
            bracket_port= ;;
        \[*\]:*)
            bracket_inner=${1#?}
            bracket_inner=${bracket_inner%%]*}
            bracket_port=${1#*]:} ;;
        *) return 1 ;;
    esac
    [ "$1" = "[$bracket_inner]${bracket_port:+:$bracket_port}" ] || return 1
    case $bracket_inner in
        *:*) is_ipv6 "$bracket_inner" || return 1 ;;
        *) return 1 ;;
    esac
    [ -z "$bracket_port" ] || is_port "$bracket_port"
}

# address_kind ADDRESS: sets $kind to "static" (an IP address or unix socket, used as it is)
# or "name" (a host name, looked up while serving), each with an optional port; fails on
# anything else.
address_kind() {
    case $1 in
        unix:) return 1 ;;
        unix:*)
            case $1 in
                *[\;{}#\'\"]*) return 1 ;;
            esac
            kind=static
            return 0 ;;
        \[*)
            bracketed_ipv6 "$1" || return 1
            kind=static
            return 0 ;;
    esac
    split_port "$1"
    if [ -n "$port" ]; then
        is_port "${port#:}" || return 1
    fi
    if is_ipv4 "$host"; then
        kind=static
    elif is_host_name "$host"; then
        kind=name
    else
        return 1
    fi
}

# server_entry WORD...: one "server ADDRESS [PARAMETER...]" entry of $setting; appends its
# line to $servers and records the first host name in $host_name.
server_entry() {
    [ $# -gt 0 ] || return 0
    if [ "$1" != server ] || [ $# -lt 2 ]; then
        fail "$setting is invalid: '$*' is not a server line (server ADDRESS [PARAMETER...])"
    fi
    shift
    server_address=$1
    address_kind "$server_address" \
        || fail "$setting is invalid: '$server_address' is not an IP address, unix socket or host name with an optional port"
    shift
    for parameter do
        case $parameter in
            *[!A-Za-z0-9_=.:-]*) fail "$setting is invalid: '$parameter' is not a server parameter" ;;
        esac
    done
    count=$((count + 1))
    if [ "$kind" = name ] && [ -z "$host_name" ]; then
        host_name=$server_address host_name_parameters=$#
    fi
    servers="$servers        server $server_address${*:+ $*};$newline"
}

# route SETTING SERVICE: checks the setting's entries ("server ADDRESS [PARAMETER...]", each
# ended by ";") and sets $target, what the service's route passes to: nothing (not routed),
# the service's name (every server an address: its upstream block is appended to
# GATEWAY_UPSTREAMS) or the one host:port NGINX looks up while serving (then $by_name is
# "yes").
route() {
    setting=$1 service=$2
    eval "value=\$$setting"
    servers= host_name= host_name_parameters=0 count=0 target= by_name=
    route_ifs=$IFS
    IFS=';'
    for entry in $value; do
        IFS=$route_ifs
        # Split into words on white space (no globbing: set -f is on).
        # shellcheck disable=SC2086
        server_entry $entry
        IFS=';'
    done
    IFS=$route_ifs
    if [ -n "$host_name" ]; then
        if [ "$count" -gt 1 ] || [ "$host_name_parameters" -gt 0 ]; then
            fail "$setting is invalid: '$host_name' is a host name, so it must be the only server, without parameters (NGINX looks it up while serving)"
        fi
        target=$host_name
        by_name=yes
    elif [ "$count" -gt 0 ]; then
        target=$service
        # The block's shape, and why: nginx.conf.template, "upstreams".
        indent="        "
        block="upstream $service {$newline${indent}zone upstream_$service 64k;$newline$servers"
        block="$block${indent}keepalive 16;$newline${indent}keepalive_timeout 1s;$newline    }"
        GATEWAY_UPSTREAMS="$GATEWAY_UPSTREAMS${GATEWAY_UPSTREAMS:+$newline$newline    }$block"
    fi
}

# nothing_routed SETTING...: stops the start, naming the (empty) server settings.
nothing_routed() {
    list=$1
    shift
    [ $# -gt 0 ] || fail "no service is routed: $list is empty"
    while [ $# -gt 1 ]; do
        list="$list, $1"
        shift
    done
    fail "no service is routed: $list and $1 are all empty"
}

# resolver_entry TEXT: sets $server to an entry of GATEWAY_RESOLVER as NGINX's resolver takes
# it: an IPv4 address with an optional port, or an IPv6 address, bare (bracketed here) or in
# brackets with an optional port. Host names are refused: they would be looked up at start.
resolver_entry() {
    case $1 in
        \[*) bracketed_ipv6 "$1" && server=$1 && return 0 ;;
        *:*:*) is_ipv6 "$1" && server="[$1]" && return 0 ;;
    esac
    split_port "$1"
    if [ -n "$port" ]; then
        is_port "${port#:}" || return 1
    fi
    is_ipv4 "$host" && server=$1
}

# read_resolv_conf: sets $nameservers, $search (the first search domain) and $ndots from
# $resolv_conf, as the C library reads it (the last search or domain line wins, so does the
# last ndots); a nameserver NGINX could not use (an IPv6 address with a %zone) is left out.
read_resolv_conf() {
    nameservers= search= ndots=1
    [ -r "$resolv_conf" ] || return 0
    while read -r key first others || [ -n "$key" ]; do
        case $key in
            nameserver)
                if is_ipv4 "$first"; then
                    nameservers="$nameservers${nameservers:+ }$first"
                elif is_ipv6 "$first"; then
                    nameservers="$nameservers${nameservers:+ }[$first]"
                fi ;;
            search | domain)
                if is_host_name "$first"; then search=$first; else search=; fi ;;
            options)
                # Only whether ndots is 0 matters here (and the number may be any length).
                for option in $first $others; do
                    case $option in
                        ndots:*[!0-9]* | ndots:) ;;
                        ndots:*[!0]*) ndots=1 ;;
                        ndots:*) ndots=0 ;;
                    esac
                done ;;
        esac
        key=
    done < "$resolv_conf"
}

format=""
for name in $required; do
    eval "value=\${$name:-}"
    [ -n "$value" ] || fail "required setting $name is not set"
    format="$format \${$name}"
done

newline='
'
set -f

# GATEWAY_SERVICES: the services routed, each from /<service>/, by name, separated by commas
# or white space. A name is a lower-case letter, then up to 62 lower-case letters and digits:
# a path segment, part of a setting's name, and a DNS label at most (nginx.conf.template,
# map_hash_bucket_size). The letters are spelled out rather than written as a range, whose
# meaning depends on the locale.
[ -n "${GATEWAY_SERVICES:-}" ] || fail "required setting GATEWAY_SERVICES is not set"
lower=abcdefghijklmnopqrstuvwxyz
upper=ABCDEFGHIJKLMNOPQRSTUVWXYZ
services=""
saved_ifs=$IFS
IFS=", $(printf '\t')$newline"
for service in $GATEWAY_SERVICES; do
    [ -n "$service" ] || continue  # "a,,b" leaves an empty field between the commas
    case $service in
        [!$lower]* | *[!${lower}0123456789]*) service_name=no ;;
        *) service_name=yes ;;
    esac
    if [ "$service_name" = no ] || [ ${#service} -gt 63 ]; then
        fail "GATEWAY_SERVICES is invalid: '$service' is not a service name (a lower-case letter, then up to 62 lower-case letters and digits)"
    fi
    [ "$service" != docs ] \
        || fail "GATEWAY_SERVICES is invalid: 'docs' is reserved (the gateway serves its API docs at /docs)"
    case " $services " in
        *" $service "*) fail "GATEWAY_SERVICES is invalid: '$service' is listed twice" ;;
    esac
    services="$services${services:+ }$service"
done
IFS=$saved_ifs
[ -n "$services" ] || fail "GATEWAY_SERVICES is invalid: it names no service"

# Each service's <SERVICE>_SERVERS: its route's target (kept in fleet_target_<service>, and
# whether it is a name to look up in fleet_by_name_<service>) and maybe an upstream block.
GATEWAY_UPSTREAMS=""
server_settings=""
routed=""
any_by_name=""
for service in $services; do
    setting=$(printf '%s' "$service" | tr "$lower" "$upper")_SERVERS
    eval "is_set=\${$setting+yes}"
    [ -n "$is_set" ] || fail "required setting $setting is not set"
    route "$setting" "$service"
    eval "fleet_target_$service=\$target fleet_by_name_$service=\$by_name"
    server_settings="$server_settings $setting"
    routed=$routed$target
    any_by_name=$any_by_name$by_name
done
# Split into the settings' names (no globbing: set -f is on).
# shellcheck disable=SC2086
[ -n "$routed" ] || nothing_routed $server_settings

# GATEWAY_TRUSTED_PROXIES: addresses or CIDR ranges separated by commas or white space; empty
# or unset trusts nobody. Each becomes one set_real_ip_from line.
GATEWAY_REAL_IP_FROM=""
saved_ifs=$IFS
IFS=", $(printf '\t')$newline"
for proxy in ${GATEWAY_TRUSTED_PROXIES:-}; do
    [ -n "$proxy" ] || continue  # "a, ,b" leaves empty fields between the commas
    is_address_or_range "$proxy" \
        || fail "GATEWAY_TRUSTED_PROXIES is invalid: '$proxy' is not an IP address or CIDR range"
    GATEWAY_REAL_IP_FROM="${GATEWAY_REAL_IP_FROM:+$GATEWAY_REAL_IP_FROM }set_real_ip_from $proxy;"
done
IFS=$saved_ifs

# NGINX's resolver, for the upstreams named by host name: GATEWAY_RESOLVER, else the
# nameservers of /etc/resolv.conf (in a pod, the cluster DNS).
valid=${GATEWAY_RESOLVER_VALID:-$default_resolver_valid}
digits=${valid%[smh]}
case $digits in
    '' | 0* | *[!0-9]*)
        fail "GATEWAY_RESOLVER_VALID is invalid: '$valid' is not a number of seconds, minutes or hours (e.g. 10s)" ;;
esac
resolver=""
IFS=", $(printf '\t')$newline"
for entry in ${GATEWAY_RESOLVER:-}; do
    [ -n "$entry" ] || continue
    resolver_entry "$entry" \
        || fail "GATEWAY_RESOLVER is invalid: '$entry' is not an IP address with an optional port"
    resolver="$resolver${resolver:+ }$server"
done
IFS=$saved_ifs
GATEWAY_RESOLVER_DIRECTIVE=""
if [ -n "$any_by_name" ]; then
    read_resolv_conf
    [ -n "$resolver" ] || resolver=$nameservers
    [ -n "$resolver" ] \
        || fail "GATEWAY_RESOLVER is not set and $resolv_conf names no nameserver: the gateway needs one to look up its upstreams"
    GATEWAY_RESOLVER_DIRECTIVE="resolver $resolver valid=$valid;"
fi

# The routes' map: a "<service> <target>;" line per routed service, in GATEWAY_SERVICES's
# order. NGINX's resolver knows no search list: a name without a dot gets what the system
# resolver would try first, the first search domain (in a pod: <namespace>.svc.<cluster
# domain>), unless ndots is 0 (Docker's embedded DNS answers bare service names).
GATEWAY_ROUTES=""
for service in $services; do
    eval "target=\$fleet_target_$service by_name=\$fleet_by_name_$service"
    [ -n "$target" ] || continue
    if [ -n "$by_name" ]; then
        split_port "$target"
        case $host in
            *.*) ;;
            *) [ -z "$search" ] || [ "$ndots" = 0 ] || host=$host.$search ;;
        esac
        target=$host$port
    fi
    GATEWAY_ROUTES="$GATEWAY_ROUTES${GATEWAY_ROUTES:+$newline        }$service $target;"
done

# The API docs: Swagger UI lists the OpenAPI document of every routed service, in the same
# order; its files are in two directories (absolute paths, which the template quotes: no
# quote, backslash, "$", ";", brace or "#" can reach NGINX, hence the short list of
# characters, spelled out as above).
GATEWAY_DOCS_CONFIG=""
for service in $services; do
    eval "target=\$fleet_target_$service"
    [ -n "$target" ] || continue
    GATEWAY_DOCS_CONFIG="$GATEWAY_DOCS_CONFIG${GATEWAY_DOCS_CONFIG:+,}{\"url\":\"/$service/v1/openapi.json\",\"name\":\"$service\"}"
done
GATEWAY_DOCS_CONFIG="{\"urls\":[$GATEWAY_DOCS_CONFIG]}"

# docs_root SETTING DEFAULT: sets $root to the setting's directory (DEFAULT when unset or
# empty) without its trailing slashes; fails on anything else than an absolute path of
# letters, digits, spaces and . _ / + @ : ~ -.
docs_root() {
    eval "root=\${$1:-}"
    [ -n "$root" ] || root=$2
    case $root in
        /*) ;;
        *) fail "$1 is invalid: '$root' is not an absolute path of letters, digits, spaces and . _ / + @ : ~ -" ;;
    esac
    case $root in
        *[!${upper}${lower}0123456789._/+@:~\ -]*)
            fail "$1 is invalid: '$root' is not an absolute path of letters, digits, spaces and . _ / + @ : ~ -" ;;
    esac
    while :; do
        case $root in
            */) root=${root%/} ;;
            *) break ;;
        esac
    done
}
docs_root GATEWAY_DOCS_DIR "$default_docs_dir"
GATEWAY_DOCS_ROOT=$root
docs_root GATEWAY_SWAGGER_UI_DIR "$default_swagger_ui_dir"
GATEWAY_SWAGGER_UI_ROOT=$root
set +f

export GATEWAY_REAL_IP_FROM GATEWAY_RESOLVER_DIRECTIVE GATEWAY_UPSTREAMS GATEWAY_ROUTES \
    GATEWAY_DOCS_CONFIG GATEWAY_DOCS_ROOT GATEWAY_SWAGGER_UI_ROOT
for name in $derived; do
    format="$format \${$name}"
done

conf="$GATEWAY_RUN_DIR/nginx.conf"
envsubst "$format" < "$template" > "$conf"
exec nginx -e stderr -c "$conf" "$@"
