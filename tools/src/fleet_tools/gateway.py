"""Render the gateway's NGINX template (gateway/nginx.conf.template) for a local run.

The template is the one the container renders with envsubst at start-up; this module gives
the local fleet (`fleet_tools.plan`) and the tests the same rendering in Python. No image
imports it: the gateway image renders with its shell entrypoint, the service images never
route.

- ``render(template, values)`` replaces every ``${NAME}`` placeholder (upper-case names only)
  with ``values[NAME]`` and raises ``ValueError`` naming the first one that has no value.
  NGINX's own variables (``$request_id``, ``$host``, ...) are never touched.
- ``local_values(run_dir, listen, upstreams, ...)`` builds those values for NGINX running as a
  local process, with the pid file, temp directories and logs under ``run_dir``, and the API
  docs (/docs) served from the checkout's gateway/docs/ and the swagger-ui-bundle package.
- ``template_values(settings)`` turns the container's settings (its environment) into the
  template's values as the image's entrypoint does: for each service ``GATEWAY_SERVICES``
  lists, its ``<SERVICE>_SERVERS`` becomes its upstream block and its route's target,
  ``GATEWAY_TRUSTED_PROXIES`` the ``set_real_ip_from`` lines, and the resolver settings (or
  ``/etc/resolv.conf``) NGINX's ``resolver``.
- ``write_config(run_dir, values)`` writes ``run_dir/nginx.conf``; ``check_config(run_dir,
  conf)`` has NGINX check it (``nginx -t``); ``nginx_command(run_dir, conf)`` is the command
  line that runs it in the foreground. The local fleet runs exactly these.

A local run::

    values = local_values(run_dir, "127.0.0.1:8080", {"inventory": ["127.0.0.1:8111"],
                          "shipping": ["127.0.0.1:8121"], "support": ["127.0.0.1:8131"]})
    conf = write_config(run_dir, values)
    check_config(run_dir, conf)
    process = subprocess.Popen(nginx_command(run_dir, conf))

docs/gateway.md describes every setting and variable.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_DOCS_DIR",
    "DEFAULT_RESOLVER_VALID",
    "DEFAULT_SWAGGER_UI_DIR",
    "DERIVED_VARIABLES",
    "DOCS_DIR",
    "DOCS_PATH",
    "OPTIONAL_SETTINGS",
    "REQUIRED_SETTINGS",
    "RESOLVER",
    "RESOLVER_VALID",
    "RESOLV_CONF",
    "SERVICES_SETTING",
    "SETTINGS",
    "SWAGGER_UI_DIR",
    "TEMPLATE_PATH",
    "TEMPLATE_VARIABLES",
    "TRUSTED_PROXIES",
    "SystemResolver",
    "check_config",
    "docs_config",
    "local_values",
    "make_traversable",
    "nginx_command",
    "parse_resolver",
    "parse_services",
    "parse_trusted_proxies",
    "read_resolv_conf",
    "read_template",
    "real_ip_lines",
    "render",
    "server_lines",
    "server_setting",
    "swagger_ui_path",
    "template_values",
    "template_variables",
    "write_config",
]

#: gateway/nginx.conf.template in the repository checkout this package is installed from
#: (tools/src/fleet_tools/gateway.py -> four levels up is the repository root).
TEMPLATE_PATH: Path = Path(__file__).resolve().parents[3] / "gateway" / "nginx.conf.template"

#: Settings that must be set and non-empty (the image has a default for each); the template
#: takes them as they are.
REQUIRED_SETTINGS: frozenset[str] = frozenset(
    {
        "GATEWAY_LISTEN",
        "GATEWAY_RATE",
        "GATEWAY_BURST",
        "GATEWAY_READ_TIMEOUT",
        "GATEWAY_RUN_DIR",
        "GATEWAY_ACCESS_LOG",
        "GATEWAY_ERROR_LOG",
        "GATEWAY_WORKER_PROCESSES",
    }
)

#: The setting listing the services the gateway routes, each from /<service>/: names of
#: lower-case letters and digits, starting with a letter, at most 63 characters, separated by
#: commas or white space (``parse_services``). It has no default (it names the deployment's
#: services). For each name listed, ``server_setting(name)`` (``<SERVICE>_SERVERS``) must be
#: set too; a name not listed is not routed, and its prefix answers the gateway's 404 problem.
SERVICES_SETTING = "GATEWAY_SERVICES"

#: The setting naming the proxies whose X-Forwarded-For the gateway believes: IP addresses or
#: CIDR ranges separated by commas or white space. Empty or unset (the default) trusts nobody.
TRUSTED_PROXIES = "GATEWAY_TRUSTED_PROXIES"

#: The DNS servers that look up upstreams named by host name, as ``address[:port]`` entries
#: (IPv6 in brackets when a port follows). Unset or empty: the nameservers of /etc/resolv.conf,
#: which in a pod is the cluster DNS.
RESOLVER = "GATEWAY_RESOLVER"

#: How long NGINX uses an answer before looking the name up again (``valid=`` of ``resolver``).
RESOLVER_VALID = "GATEWAY_RESOLVER_VALID"
#: Short, so a Service that is deleted and created again (a new ClusterIP) is reached within
#: seconds; a lookup in the cluster DNS every 10 s per name and worker costs nothing.
DEFAULT_RESOLVER_VALID = "10s"

#: Where the system resolver's configuration is (the entrypoint reads the same file).
RESOLV_CONF: Path = Path("/etc/resolv.conf")

#: What every deployment gives the container, besides one ``server_setting(name)`` per
#: service it lists: the required settings, the list of services and the trusted proxies.
SETTINGS: frozenset[str] = REQUIRED_SETTINGS | {SERVICES_SETTING, TRUSTED_PROXIES}

#: Settings the container reads when they are set; their defaults are worked out at start
#: (the nameservers from /etc/resolv.conf, DEFAULT_RESOLVER_VALID), so deployments leave
#: them out.
#: Where the API docs' own files are (gateway/docs/: the page /docs and Swagger UI's
#: initializer), and Swagger UI's assets (the swagger-ui-bundle package's); unset or empty,
#: where the image keeps them. Absolute paths of letters, digits, spaces and ``._/+@:~-``.
DOCS_DIR = "GATEWAY_DOCS_DIR"
SWAGGER_UI_DIR = "GATEWAY_SWAGGER_UI_DIR"
DEFAULT_DOCS_DIR = "/usr/share/fleet-gateway/docs"
DEFAULT_SWAGGER_UI_DIR = "/usr/share/fleet-gateway/swagger-ui"
#: gateway/docs/ in the checkout, what a local run serves (the image copies it).
DOCS_PATH: Path = TEMPLATE_PATH.parent / "docs"

OPTIONAL_SETTINGS: frozenset[str] = frozenset({RESOLVER, RESOLVER_VALID, DOCS_DIR,
                                               SWAGGER_UI_DIR})

#: Template variables built from the settings rather than taken as they are: a list of
#: addresses is the operator's language, directives and blocks are NGINX's, and envsubst
#: cannot loop or branch.
DERIVED_VARIABLES: frozenset[str] = frozenset(
    {
        "GATEWAY_REAL_IP_FROM",
        "GATEWAY_RESOLVER_DIRECTIVE",
        "GATEWAY_UPSTREAMS",
        "GATEWAY_ROUTES",
        "GATEWAY_DOCS_CONFIG",
        "GATEWAY_DOCS_ROOT",
        "GATEWAY_SWAGGER_UI_ROOT",
    }
)

#: Every variable the template declares; the container's envsubst step uses the same list.
TEMPLATE_VARIABLES: frozenset[str] = REQUIRED_SETTINGS | DERIVED_VARIABLES

# The parts of an upstream block, fixed here and in the entrypoint (the template cannot hold a
# block whose presence depends on the settings). "zone" shares the passive health state
# (max_fails) between worker processes. keepalive keeps idle HTTP/1.1 connections to the api
# processes; the idle timeout stays below gunicorn's --keep-alive (2 s by default) so the
# gateway, never the upstream, closes an idle connection: otherwise a request sent just as
# gunicorn closes the connection fails, and a POST is not retried.
_BLOCK_INDENT = "        "
_BLOCK_SEPARATOR = "\n\n    "
# Between the "<service> <target>;" lines of the routes' map (inside the http context's map).
_ROUTE_SEPARATOR = "\n        "

# ${NAME} with an upper-case name: the template's own variables. NGINX variables are lower case
# ($request_id, ${request_id}), so they never match.
_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
_RATE = re.compile(r"^[1-9][0-9]*r/[sm]$")
_DURATION = re.compile(r"^[1-9][0-9]*(ms|s|m|h)?$")
# NGINX reads resolver's valid= in whole seconds (no "ms").
_SECONDS = re.compile(r"^[1-9][0-9]*[smh]?$")
# host:port, [v6]:port, a bare port or a unix: socket; no spaces or ";" that would end the
# directive early.
_ADDRESS = re.compile(r"^[^\s;{}#'\"]+$")
# What set_real_ip_from is given: an IPv4/IPv6 address with an optional decimal prefix length.
# ipaddress checks the rest; this shape rules out what it accepts and NGINX does not (a netmask
# after the slash, a "%zone", a prefix with leading zeros), and host names, which NGINX would
# look up in DNS at every start.
_PROXY_SHAPE = re.compile(r"^[0-9A-Fa-f:.]+(/(0|[1-9][0-9]{0,2}))?$")
_IP_SHAPE = re.compile(r"^[0-9A-Fa-f:.]+$")
_SEPARATORS = re.compile(r"[\s,]+")
# A service name: it becomes a path segment, part of an upstream block's name and, upper-cased,
# part of a setting's name (so no "-" or "_"); at most 63 characters, a DNS label (the
# template's map_hash_bucket_size holds that). The separators are exactly the entrypoint's
# (IFS), so both read a list alike.
_SERVICE = re.compile(r"[a-z][a-z0-9]{0,62}")
_SERVICE_SEPARATORS = re.compile(r"[ \t\n,]+")
_PORT = re.compile(r"^[1-9][0-9]{0,4}$")
# A DNS name as the services and Kubernetes write them (letters, digits, dots, hyphens), with
# a letter somewhere, so a mistyped IPv4 address (256.1.1.1) is refused rather than looked up.
_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")
_LETTER = re.compile(r"[A-Za-z]")
# A server parameter (weight=2, max_fails=1, fail_timeout=2s, backup, down, ...).
_PARAMETER = re.compile(r"^[A-Za-z0-9_=.:-]+$")
# A docs directory as the template quotes it (alias "..."): nothing NGINX would read as the end
# of the string, a variable or a block.
_DIRECTORY = re.compile(r"^/[A-Za-z0-9._/+@:~ -]*$")
# The gateway serves its API docs at /docs/, so no service may be routed there.
_RESERVED_SERVICES = frozenset({"docs"})


def template_variables(template: str) -> frozenset[str]:
    """The variables a template declares: every distinct ``${NAME}`` in it."""
    return frozenset(_PLACEHOLDER.findall(template))


def read_template(path: str | os.PathLike[str] = TEMPLATE_PATH) -> str:
    """The template's text (by default the repository's gateway/nginx.conf.template)."""
    return Path(path).read_text(encoding="utf-8")


def render(template: str, values: Mapping[str, str]) -> str:
    """Replace each ``${NAME}`` the template declares with ``values[NAME]``.

    Names in ``values`` that the template does not use are ignored, so a whole environment can
    be passed (``template_values(os.environ)``). A declared name without a value raises
    ``ValueError`` naming it.
    """
    missing = sorted(template_variables(template) - values.keys())
    if missing:
        raise ValueError(
            f"gateway template variable {missing[0]} has no value"
            + (f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else "")
        )
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def server_setting(service: str) -> str:
    """The setting holding a service's ``server ...;`` lines: ``<SERVICE>_SERVERS``."""
    return f"{service.upper()}_SERVERS"


def parse_services(value: str | Iterable[str]) -> tuple[str, ...]:
    """The service names of a ``GATEWAY_SERVICES`` setting, checked and in the given order.

    ``value`` is the setting's text (names separated by commas or white space) or the names
    themselves. A name is a lower-case letter followed by up to 62 lower-case letters and
    digits; anything else, a name given twice, or no name at all raises ``ValueError`` saying
    so.
    """
    entries = _SERVICE_SEPARATORS.split(value) if isinstance(value, str) else list(value)
    services: list[str] = []
    for entry in entries:
        if not entry:
            continue
        if not _SERVICE.fullmatch(entry):
            raise ValueError(f"{SERVICES_SETTING} is invalid: '{entry}' is not a service name "
                             "(a lower-case letter, then up to 62 lower-case letters and digits)")
        if entry in _RESERVED_SERVICES:
            raise ValueError(f"{SERVICES_SETTING} is invalid: '{entry}' is reserved (the "
                             f"gateway serves its API docs at /{entry})")
        if entry in services:
            raise ValueError(f"{SERVICES_SETTING} is invalid: '{entry}' is listed twice")
        services.append(entry)
    if not services:
        raise ValueError(f"{SERVICES_SETTING} is invalid: it names no service")
    return tuple(services)


#: How long the local gateway skips a server after a failed request (``fail_timeout``), in
#: seconds; a rolling restart waits it out between api replicas (fleet_tools.restart).
GATEWAY_FAIL_TIMEOUT = 2.0


def server_lines(
    addresses: Sequence[str], *, max_fails: int = 1, fail_timeout: str = "2s"
) -> str:
    """NGINX ``server`` lines for a service's setting, one per address.

    ``max_fails=1 fail_timeout=2s``: after one failed attempt a server is skipped for two
    seconds, so a stopped local replica costs one retried request, not one per request. An
    address with a host name gets no parameters: NGINX looks it up while serving, as the
    service's only server, and the parameters belong to an upstream block.
    """
    if not addresses:
        raise ValueError("an upstream needs at least one server address")
    if max_fails < 0:
        raise ValueError(f"max_fails must not be negative, got {max_fails}")
    _check(_DURATION, fail_timeout, "fail_timeout")
    lines = []
    for address in addresses:
        if not _ADDRESS.match(address):
            raise ValueError(f"invalid upstream server address {address!r}")
        if _address_kind(address) == "name":
            lines.append(f"server {address};")
        else:
            lines.append(f"server {address} max_fails={max_fails} fail_timeout={fail_timeout};")
    return " ".join(lines)


def parse_trusted_proxies(
    value: str | Iterable[str], name: str = TRUSTED_PROXIES
) -> tuple[str, ...]:
    """The addresses and ranges of a trusted-proxies setting, checked and in the given order.

    ``value`` is the setting's text (entries separated by commas or white space; empty means
    none) or the entries themselves. Each is an IPv4 or IPv6 address, or one with a prefix
    length (``10.244.0.0/16``, ``fd00::/8``); entries are kept as written, so this renders
    exactly what the image's entrypoint does. Anything else raises ``ValueError`` naming
    ``name`` and the entry.
    """
    entries = _SEPARATORS.split(value) if isinstance(value, str) else list(value)
    proxies = []
    for entry in entries:
        if not entry:
            continue
        if not _is_address_or_range(entry):
            raise ValueError(f"{name} is invalid: {entry!r} is not an IP address or CIDR range")
        proxies.append(entry)
    return tuple(proxies)


def real_ip_lines(proxies: str | Iterable[str]) -> str:
    """NGINX ``set_real_ip_from`` lines, one per trusted proxy; ``""`` for none.

    With none, ``real_ip_header`` in the template changes nothing: every client is its TCP peer.
    """
    return " ".join(f"set_real_ip_from {proxy};" for proxy in parse_trusted_proxies(proxies))


def parse_resolver(value: str | Iterable[str]) -> tuple[str, ...]:
    """The DNS servers of a ``GATEWAY_RESOLVER`` setting as NGINX's ``resolver`` takes them.

    Entries are separated by commas or white space: an IPv4 address with an optional port
    (``10.96.0.10``, ``127.0.0.1:5353``), or an IPv6 address, bare or in brackets with an
    optional port (``fd00::10``, ``[fd00::10]:53``); a bare IPv6 address gets its brackets.
    Host names are refused: they would have to be looked up at start, which is what the
    resolver is there to avoid. Anything else raises ``ValueError`` naming the entry.
    """
    entries = _SEPARATORS.split(value) if isinstance(value, str) else list(value)
    servers = []
    for entry in entries:
        if not entry:
            continue
        server = _resolver_entry(entry)
        if server is None:
            raise ValueError(f"{RESOLVER} is invalid: '{entry}' is not an IP address with an "
                             "optional port")
        servers.append(server)
    return tuple(servers)


@dataclass(frozen=True)
class SystemResolver:
    """What the gateway takes from /etc/resolv.conf: the nameservers (as NGINX's ``resolver``
    writes them), the first search domain, and ``ndots``."""

    nameservers: tuple[str, ...] = ()
    search: str = ""
    ndots: int = 1

    def qualify(self, host: str) -> str:
        """The name NGINX is to look up for ``host``.

        NGINX's resolver knows no search list, so a name without a dot gets what the system
        resolver would try first: the first search domain, unless ``ndots`` is 0 (Docker's
        embedded DNS, which answers bare service names). In a pod that turns the Service name
        ``inventory-api`` into ``inventory-api.<namespace>.svc.<cluster domain>``. A name with
        a dot is taken as complete.
        """
        if "." in host or not self.search or self.ndots < 1:
            return host
        return f"{host}.{self.search}"


def read_resolv_conf(path: str | os.PathLike[str] = RESOLV_CONF) -> SystemResolver:
    """The nameservers, first search domain and ndots of a resolv.conf; nothing if it is missing.

    As the C library reads it: the last ``search`` or ``domain`` line wins, so does the last
    ``ndots``; a nameserver that is not a plain IP address (an IPv6 address with a ``%zone``)
    is left out, as NGINX could not use it.
    """
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return SystemResolver()
    nameservers: list[str] = []
    search = ""
    ndots = 1
    for line in text.splitlines():
        words = line.split(None)
        if len(words) < 2:
            continue
        key, args = words[0], words[1:]
        if key == "nameserver" and _is_ip(args[0]):
            nameservers.append(f"[{args[0]}]" if ":" in args[0] else args[0])
        elif key in ("search", "domain"):
            search = args[0] if _is_host_name(args[0]) else ""
        elif key == "options":
            for option in args:
                digits = option.removeprefix("ndots:")
                if option.startswith("ndots:") and digits.isdigit() and digits.isascii():
                    ndots = int(digits)
    return SystemResolver(tuple(nameservers), search, ndots)


def template_values(
    settings: Mapping[str, str], *, resolv_conf: str | os.PathLike[str] = RESOLV_CONF
) -> dict[str, str]:
    """The template's values from the container's settings, as the image's entrypoint builds
    them: everything as given, plus the derived variables (DERIVED_VARIABLES).

    ``GATEWAY_SERVICES`` names the services (``parse_services``), and the ``<SERVICE>_SERVERS``
    of each must be set (``ValueError`` names a missing one), at least one non-empty. A service
    whose servers are all IP addresses or unix sockets gets an upstream block (keep-alive,
    retries on the other servers) named after it; one named by a host name is looked up while
    serving through NGINX's ``resolver`` (``GATEWAY_RESOLVER``, else the nameservers of
    ``resolv_conf``), so a name that does not resolve yet, or that moves to a new address,
    never stops or misleads the gateway. A service with no servers, like one not listed, is not
    routed. ``render(template, template_values(os.environ))`` is what the image renders.
    """
    if not settings.get(SERVICES_SETTING):
        raise ValueError(f"required setting {SERVICES_SETTING} is not set")
    services = parse_services(settings[SERVICES_SETTING])
    routes = {service: _route(settings, service) for service in services}
    if not any(route.target for route in routes.values()):
        names = [server_setting(service) for service in services]
        raise ValueError("no service is routed: " + (
            f"{names[0]} is empty" if len(names) == 1
            else f"{', '.join(names[:-1])} and {names[-1]} are all empty"))
    values = {**settings,
              "GATEWAY_REAL_IP_FROM": real_ip_lines(settings.get(TRUSTED_PROXIES, ""))}

    valid = settings.get(RESOLVER_VALID) or DEFAULT_RESOLVER_VALID
    if not _SECONDS.match(valid):
        raise ValueError(f"{RESOLVER_VALID} is invalid: '{valid}' is not a number of seconds, "
                         "minutes or hours (e.g. 10s)")
    resolver = parse_resolver(settings.get(RESOLVER, ""))
    system: SystemResolver | None = None
    values["GATEWAY_RESOLVER_DIRECTIVE"] = ""
    if any(route.by_name for route in routes.values()):
        system = read_resolv_conf(resolv_conf)
        resolver = resolver or system.nameservers
        if not resolver:
            raise ValueError(f"{RESOLVER} is not set and {os.fspath(resolv_conf)} names no "
                             "nameserver: the gateway needs one to look up its upstreams")
        values["GATEWAY_RESOLVER_DIRECTIVE"] = f"resolver {' '.join(resolver)} valid={valid};"

    blocks = []
    lines = []
    for service, route in routes.items():
        target = route.target
        if route.by_name:
            assert system is not None
            host, port = _split_port(target)
            target = system.qualify(host) + port
        elif route.servers:
            blocks.append(_upstream_block(service, route.servers))
        if target:
            lines.append(f"{service} {target};")
    values["GATEWAY_UPSTREAMS"] = _BLOCK_SEPARATOR.join(blocks)
    values["GATEWAY_ROUTES"] = _ROUTE_SEPARATOR.join(lines)
    values["GATEWAY_DOCS_CONFIG"] = docs_config(
        [service for service, route in routes.items() if route.target])
    values["GATEWAY_DOCS_ROOT"] = _docs_root(settings, DOCS_DIR, DEFAULT_DOCS_DIR)
    values["GATEWAY_SWAGGER_UI_ROOT"] = _docs_root(settings, SWAGGER_UI_DIR,
                                                   DEFAULT_SWAGGER_UI_DIR)
    return values


def local_values(
    run_dir: str | os.PathLike[str],
    listen: str,
    upstreams: Mapping[str, Sequence[str]],
    rate: str = "100r/s",
    burst: int = 200,
    *,
    read_timeout: str = "30s",
    worker_processes: int | str = 1,
    access_log: str | os.PathLike[str] | None = None,
    error_log: str | os.PathLike[str] | None = None,
    max_fails: int = 1,
    fail_timeout: str = "2s",
    trusted_proxies: str | Iterable[str] = (),
    resolver: str | Iterable[str] = (),
    resolver_valid: str | None = None,
    resolv_conf: str | os.PathLike[str] = RESOLV_CONF,
    docs_dir: str | os.PathLike[str] = DOCS_PATH,
    swagger_ui_dir: str | os.PathLike[str] | None = None,
) -> dict[str, str]:
    """Template values for NGINX run as a local process (the settings and what
    ``template_values`` derives from them).

    ``run_dir``: directory for the pid file and temp directories, and by default the logs
    (``access.log``, ``error.log``). It is created if missing. When this runs as root, NGINX's
    worker processes run as the unprivileged default user (``nobody`` on Debian), so the
    directory is made traversable by others (``o+x``) and every directory above it must be
    too, or a ``ValueError`` says which one is not (``/tmp/...`` works; a pytest ``tmp_path``
    or anything under ``/root`` does not).

    ``listen``: ``host:port`` or ``port`` (e.g. ``"127.0.0.1:8080"``).
    ``upstreams``: addresses per service, the services the gateway routes (in this order, as
    ``GATEWAY_SERVICES``), e.g. ``{"inventory": ["127.0.0.1:8111", "127.0.0.1:8112"], ...}``;
    each name as ``parse_services`` takes it. An empty list leaves that service unrouted (its
    prefix answers 404, as for a name not given); at least one must have addresses. An address
    with a host name (``inventory.test:8111``) must be its service's only one and is looked up
    while serving, through ``resolver`` (``GATEWAY_RESOLVER``'s syntax; by default the
    nameservers of ``resolv_conf``), answers being used for ``resolver_valid`` (``"10s"`` by
    default).
    ``rate``/``burst``: the per-client rate limit (``"100r/s"``, 200).
    ``trusted_proxies``: peers whose ``X-Forwarded-For`` names the client (see
    ``parse_trusted_proxies()``); none by default, so every client is its TCP peer.
    """
    run = Path(run_dir).resolve()
    run.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        _make_reachable_by_workers(run)

    if not _ADDRESS.match(listen):
        raise ValueError(f"invalid listen address {listen!r}")
    services = parse_services(list(upstreams))
    _check(_RATE, rate, "rate")
    if burst < 1:  # NGINX refuses burst=0
        raise ValueError(f"burst must be a positive number, got {burst}")
    _check(_DURATION, read_timeout, "read_timeout")
    if not (worker_processes == "auto" or (str(worker_processes).isdigit()
                                            and int(worker_processes) > 0)):
        raise ValueError(f"worker_processes must be a positive number or 'auto', got "
                         f"{worker_processes!r}")

    settings = {
        "GATEWAY_LISTEN": listen,
        "GATEWAY_RATE": rate,
        "GATEWAY_BURST": str(burst),
        "GATEWAY_READ_TIMEOUT": read_timeout,
        "GATEWAY_RUN_DIR": str(run),
        "GATEWAY_ACCESS_LOG": str(access_log if access_log is not None else run / "access.log"),
        "GATEWAY_ERROR_LOG": str(error_log if error_log is not None else run / "error.log"),
        "GATEWAY_WORKER_PROCESSES": str(worker_processes),
        SERVICES_SETTING: " ".join(services),
        TRUSTED_PROXIES: " ".join(parse_trusted_proxies(trusted_proxies)),
    }
    servers = " ".join(parse_resolver(resolver))
    if servers:
        settings[RESOLVER] = servers
    if resolver_valid is not None:
        settings[RESOLVER_VALID] = resolver_valid
    # The docs from the checkout and the installed package, not from where the image has them.
    settings[DOCS_DIR] = os.fspath(docs_dir)
    settings[SWAGGER_UI_DIR] = os.fspath(swagger_ui_dir if swagger_ui_dir is not None
                                         else swagger_ui_path())
    for name in services:
        try:
            lines = (server_lines(upstreams[name], max_fails=max_fails, fail_timeout=fail_timeout)
                     if upstreams[name] else "")
        except ValueError as exc:
            raise ValueError(f"upstream {name}: {exc}") from None
        settings[server_setting(name)] = lines
    return template_values(settings, resolv_conf=resolv_conf)


def docs_config(services: Iterable[str]) -> str:
    """Swagger UI's configuration (``GATEWAY_DOCS_CONFIG``): the OpenAPI document of each
    service, ``/<service>/v1/openapi.json``, named after it, in the given order."""
    urls = ",".join(f'{{"url":"/{service}/v1/openapi.json","name":"{service}"}}'
                    for service in services)
    return f'{{"urls":[{urls}]}}'


def swagger_ui_path() -> Path:
    """Swagger UI's assets as the swagger-ui-bundle package installed them."""
    import swagger_ui_bundle  # only a local run needs it (the image copies the assets)

    return Path(os.fspath(swagger_ui_bundle.swagger_ui_path))


def _docs_root(settings: Mapping[str, str], name: str, default: str) -> str:
    """A docs directory setting (``default`` when unset or empty), without trailing slashes."""
    directory = settings.get(name) or default
    if not _DIRECTORY.match(directory):
        raise ValueError(f"{name} is invalid: '{directory}' is not an absolute path of letters, "
                         "digits, spaces and . _ / + @ : ~ -")
    return directory.rstrip("/")


def write_config(run_dir: str | os.PathLike[str], values: Mapping[str, str],
                 template: str | None = None) -> Path:
    """Render the template (by default the repository's) to ``run_dir/nginx.conf``."""
    conf = Path(run_dir) / "nginx.conf"
    conf.write_text(render(read_template() if template is None else template, values),
                    encoding="utf-8")
    return conf


def nginx_command(run_dir: str | os.PathLike[str], conf: str | os.PathLike[str],
                  *extra: str, nginx: str = "nginx") -> list[str]:
    """The command that runs NGINX on a rendered file, in the foreground.

    ``-p`` keeps any relative path inside ``run_dir``; ``-e stderr`` replaces the compiled-in
    error log (``/var/log/nginx/error.log``, not writable for a user) that NGINX opens before
    it has read the file. Add ``"-t"`` to only check the file. Stop the process with SIGQUIT
    to let in-flight requests finish, or SIGTERM to stop at once.
    """
    return [nginx, "-p", f"{Path(run_dir)}/", "-e", "stderr", "-c", str(conf), *extra]


def check_config(run_dir: str | os.PathLike[str], conf: str | os.PathLike[str],
                 nginx: str = "nginx") -> None:
    """Have NGINX check a rendered file (``nginx -t``) as ``nginx_command`` would run it;
    ``ValueError`` with NGINX's own complaint, on one line, if it refuses it."""
    check = subprocess.run(nginx_command(run_dir, conf, "-t", "-q", nginx=nginx),
                           capture_output=True, text=True, timeout=30, check=False)
    if check.returncode != 0:
        raise ValueError(f"nginx rejects the rendered gateway configuration {conf}: "
                         f"{' '.join(check.stderr.split())}")


# --- routes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Route:
    """How one service is reached: ``target`` is what its location passes to ("" when it is
    not routed, the service's name for an upstream block of ``servers``, or the host:port that
    NGINX looks up while serving when ``by_name``)."""

    target: str = ""
    servers: tuple[str, ...] = ()
    by_name: bool = False


def _route(settings: Mapping[str, str], service: str) -> _Route:
    """The route a ``<SERVICE>_SERVERS`` setting asks for (the entrypoint's ``route``)."""
    setting = server_setting(service)
    if setting not in settings:
        raise ValueError(f"required setting {setting} is not set")
    servers: list[str] = []
    names: list[tuple[str, int]] = []
    for entry in settings[setting].split(";"):
        words = entry.split()
        if not words:
            continue
        if words[0] != "server" or len(words) < 2:
            raise ValueError(f"{setting} is invalid: '{' '.join(words)}' is not a server line "
                             "(server ADDRESS [PARAMETER...])")
        address, parameters = words[1], words[2:]
        kind = _address_kind(address)
        if kind is None:
            raise ValueError(f"{setting} is invalid: '{address}' is not an IP address, unix "
                             "socket or host name with an optional port")
        for parameter in parameters:
            if not _PARAMETER.match(parameter):
                raise ValueError(f"{setting} is invalid: '{parameter}' is not a server "
                                 "parameter")
        if kind == "name":
            names.append((address, len(parameters)))
        servers.append(" ".join(words[1:]))
    if names:
        name, count = names[0]
        if len(servers) > 1 or count:
            raise ValueError(f"{setting} is invalid: '{name}' is a host name, so it must be "
                             "the only server, without parameters (NGINX looks it up while "
                             "serving)")
        return _Route(target=name, by_name=True)
    if servers:
        return _Route(target=service, servers=tuple(servers))
    return _Route()


def _upstream_block(service: str, servers: Sequence[str]) -> str:
    """The upstream block of a service whose servers are all addresses (see _BLOCK_INDENT)."""
    lines = [f"upstream {service} {{", f"{_BLOCK_INDENT}zone upstream_{service} 64k;"]
    lines += [f"{_BLOCK_INDENT}server {server};" for server in servers]
    lines += [f"{_BLOCK_INDENT}keepalive 16;", f"{_BLOCK_INDENT}keepalive_timeout 1s;", "    }"]
    return "\n".join(lines)


def _split_port(address: str) -> tuple[str, str]:
    """``("host", ":port")`` or ``("host", "")``."""
    host, colon, port = address.rpartition(":")
    return (host, f":{port}") if colon else (address, "")


def _address_kind(address: str) -> str | None:
    """``"static"`` for an IP address or unix socket (used as it is), ``"name"`` for a host
    name (looked up while serving), each with an optional port; None for anything else."""
    if address.startswith("unix:"):
        return "static" if len(address) > len("unix:") and _ADDRESS.match(address) else None
    if address.startswith("["):
        inner, bracket, rest = address[1:].partition("]")
        if bracket and _is_ip(inner) and ":" in inner \
                and (not rest or (rest[0] == ":" and _is_port(rest[1:]))):
            return "static"
        return None
    host, port = _split_port(address)
    if port and not _is_port(port[1:]):
        return None
    if _is_ip(host) and ":" not in host:
        return "static"
    if _is_host_name(host):
        return "name"
    return None


def _resolver_entry(entry: str) -> str | None:
    """A ``GATEWAY_RESOLVER`` entry as NGINX takes it (bare IPv6 bracketed), or None."""
    if entry.startswith("["):
        inner, bracket, rest = entry[1:].partition("]")
        if bracket and ":" in inner and _is_ip(inner) \
                and (not rest or (rest[0] == ":" and _is_port(rest[1:]))):
            return entry
        return None
    if ":" in entry and _is_ip(entry):
        return f"[{entry}]"
    host, port = _split_port(entry)
    if _is_ip(host) and ":" not in host and (not port or _is_port(port[1:])):
        return entry
    return None


def _is_host_name(text: str) -> bool:
    return bool(_HOST_NAME.match(text) and _LETTER.search(text))


def _is_port(text: str) -> bool:
    return bool(_PORT.match(text)) and int(text) <= 65535


def _is_ip(text: str) -> bool:
    """An IPv4 or IPv6 address as the entrypoint's is_ipv4/is_ipv6 accept it."""
    if not _IP_SHAPE.match(text):
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_address_or_range(entry: str) -> bool:
    # NGINX's IPv4 parser returns 255.255.255.255 as its error value (INADDR_NONE), so it
    # refuses that address, with any prefix; it is no proxy's address anyway.
    if not _PROXY_SHAPE.match(entry) or entry.split("/")[0] == "255.255.255.255":
        return False
    try:
        # strict=False: host bits after the prefix (10.0.0.1/8) are allowed, as NGINX allows
        # them (it warns and ignores them).
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True


def _check(pattern: re.Pattern[str], value: str, name: str) -> None:
    if not pattern.match(value):
        raise ValueError(f"invalid {name} {value!r}")


def make_traversable(directory: Path) -> None:
    """Let others pass through `directory` (``o+x``) when running as root: NGINX started as
    root drops its workers to an unprivileged user, which must reach the temp directories
    under its run directory."""
    if os.geteuid() != 0:
        return
    mode = directory.stat().st_mode
    if not mode & stat.S_IXOTH:
        directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _make_reachable_by_workers(run: Path) -> None:
    """Let NGINX workers that dropped root reach their temp directories under ``run``."""
    make_traversable(run)
    for parent in run.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            raise ValueError(
                f"gateway run directory {run} is not reachable by NGINX's worker user: "
                f"{parent} is not searchable by others (chmod o+x, or use a directory in /tmp)"
            )
