#!/bin/sh
# Entrypoint of the gateway image (/usr/local/bin/fleet-gateway, gateway/Dockerfile).
#
# Refuses to start, with one line naming the setting and exit status 78 (EX_CONFIG), when a
# required setting is missing or GATEWAY_TRUSTED_PROXIES holds something that is not an IP
# address or CIDR range; renders nginx.conf.template with envsubst restricted to exactly the
# template's variables (NGINX's own $variables are left alone) into the writable run directory;
# then execs NGINX in the foreground as PID 1. Extra arguments go to nginx ("-t" only checks).
#
# fleet_shared.gateway renders the same file in Python; tests/gateway runs this script with
# BusyBox ash (the image's shell) and dash and checks that both agree with it, on the file and
# on which addresses they accept. Hence POSIX sh only: no arrays, no [[ ]], no regexes.
# docs/gateway.md describes every setting.
set -eu

template=/etc/nginx/fleet/nginx.conf.template

# Settings that must be set and non-empty (the image has defaults for all but *_SERVERS).
required="GATEWAY_LISTEN INVENTORY_SERVERS SHIPPING_SERVERS SUPPORT_SERVERS GATEWAY_RATE GATEWAY_BURST GATEWAY_READ_TIMEOUT GATEWAY_RUN_DIR GATEWAY_ACCESS_LOG GATEWAY_ERROR_LOG GATEWAY_WORKER_PROCESSES"
# Template variables the script computes from other settings.
derived="GATEWAY_REAL_IP_FROM"

fail() {
    echo "fleet-gateway: $*" >&2
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

format=""
for name in $required; do
    eval "value=\${$name:-}"
    [ -n "$value" ] || fail "required setting $name is not set"
    format="$format \${$name}"
done

# GATEWAY_TRUSTED_PROXIES: addresses or CIDR ranges separated by commas or white space; empty
# or unset trusts nobody. Each becomes one set_real_ip_from line.
GATEWAY_REAL_IP_FROM=""
newline='
'
set -f
saved_ifs=$IFS
IFS=", $(printf '\t')$newline"
for proxy in ${GATEWAY_TRUSTED_PROXIES:-}; do
    [ -n "$proxy" ] || continue  # "a, ,b" leaves empty fields between the commas
    is_address_or_range "$proxy" \
        || fail "GATEWAY_TRUSTED_PROXIES is invalid: '$proxy' is not an IP address or CIDR range"
    GATEWAY_REAL_IP_FROM="${GATEWAY_REAL_IP_FROM:+$GATEWAY_REAL_IP_FROM }set_real_ip_from $proxy;"
done
IFS=$saved_ifs
set +f
export GATEWAY_REAL_IP_FROM
for name in $derived; do
    format="$format \${$name}"
done

conf="$GATEWAY_RUN_DIR/nginx.conf"
envsubst "$format" < "$template" > "$conf"
exec nginx -e stderr -c "$conf" "$@"
