"""Render the gateway's NGINX template (gateway/nginx.conf.template) for a local run.

The template is the one the container renders with envsubst at start-up; this module gives
the local runner and the tests the same rendering in Python:

- ``render(template, values)`` replaces every ``${NAME}`` placeholder (upper-case names only)
  with ``values[NAME]`` and raises ``ValueError`` naming the first one that has no value.
  NGINX's own variables (``$request_id``, ``$host``, ...) are never touched.
- ``local_values(run_dir, listen, upstreams, ...)`` builds those values for NGINX running as a
  local process, with the pid file, temp directories and logs under ``run_dir``.
- ``template_values(settings)`` turns the container's settings (its environment) into the
  template's values as the image's entrypoint does: the one setting that is not a template
  variable, ``GATEWAY_TRUSTED_PROXIES``, becomes the ``set_real_ip_from`` lines.
- ``write_config(run_dir, values)`` writes ``run_dir/nginx.conf``; ``nginx_command(run_dir,
  conf)`` is the command line that runs it in the foreground.

A local run::

    values = local_values(run_dir, "127.0.0.1:8080", {"inventory": ["127.0.0.1:8111"],
                          "shipping": ["127.0.0.1:8121"], "support": ["127.0.0.1:8131"]})
    conf = write_config(run_dir, values)
    subprocess.run(nginx_command(run_dir, conf, "-t"), check=True)
    process = subprocess.Popen(nginx_command(run_dir, conf))

docs/gateway.md describes every variable.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "REQUIRED_SETTINGS",
    "SERVICES",
    "SETTINGS",
    "TEMPLATE_PATH",
    "TEMPLATE_VARIABLES",
    "TRUSTED_PROXIES",
    "local_values",
    "nginx_command",
    "parse_trusted_proxies",
    "read_template",
    "real_ip_lines",
    "render",
    "server_lines",
    "template_values",
    "template_variables",
    "write_config",
]

#: gateway/nginx.conf.template in the repository checkout this package is installed from
#: (shared-lib/src/fleet_shared/gateway.py -> four levels up is the repository root).
TEMPLATE_PATH: Path = Path(__file__).resolve().parents[3] / "gateway" / "nginx.conf.template"

#: The services behind the gateway, each routed from /<service>/ to an upstream of that name.
SERVICES: tuple[str, ...] = ("inventory", "shipping", "support")

#: Every variable the template declares; the container's envsubst step uses the same list.
TEMPLATE_VARIABLES: frozenset[str] = frozenset(
    {
        "GATEWAY_LISTEN",
        "INVENTORY_SERVERS",
        "SHIPPING_SERVERS",
        "SUPPORT_SERVERS",
        "GATEWAY_RATE",
        "GATEWAY_BURST",
        "GATEWAY_READ_TIMEOUT",
        "GATEWAY_RUN_DIR",
        "GATEWAY_ACCESS_LOG",
        "GATEWAY_ERROR_LOG",
        "GATEWAY_WORKER_PROCESSES",
        "GATEWAY_REAL_IP_FROM",
    }
)

#: The setting naming the proxies whose X-Forwarded-For the gateway believes: IP addresses or
#: CIDR ranges separated by commas or white space. Empty or unset (the default) trusts nobody.
TRUSTED_PROXIES = "GATEWAY_TRUSTED_PROXIES"

#: What the container reads from its environment: the template's variables, except that the
#: ``set_real_ip_from`` lines (GATEWAY_REAL_IP_FROM) are built from GATEWAY_TRUSTED_PROXIES.
#: A list of addresses is the operator's language; a directive per address is NGINX's, and
#: envsubst cannot loop.
SETTINGS: frozenset[str] = (TEMPLATE_VARIABLES - {"GATEWAY_REAL_IP_FROM"}) | {TRUSTED_PROXIES}

#: Settings that must be set and non-empty (the image has defaults for all but *_SERVERS).
REQUIRED_SETTINGS: frozenset[str] = SETTINGS - {TRUSTED_PROXIES}

# ${NAME} with an upper-case name: the template's own variables. NGINX variables are lower case
# ($request_id, ${request_id}), so they never match.
_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
_RATE = re.compile(r"^[1-9][0-9]*r/[sm]$")
_DURATION = re.compile(r"^[1-9][0-9]*(ms|s|m|h)?$")
# host:port, [v6]:port, a bare port or a unix: socket; no spaces or ";" that would end the
# directive early.
_ADDRESS = re.compile(r"^[^\s;{}#'\"]+$")
# What set_real_ip_from is given: an IPv4/IPv6 address with an optional decimal prefix length.
# ipaddress checks the rest; this shape rules out what it accepts and NGINX does not (a netmask
# after the slash, a "%zone", a prefix with leading zeros), and host names, which NGINX would
# look up in DNS at every start.
_PROXY_SHAPE = re.compile(r"^[0-9A-Fa-f:.]+(/(0|[1-9][0-9]{0,2}))?$")
_PROXY_SEPARATORS = re.compile(r"[\s,]+")


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


def server_lines(
    addresses: Sequence[str], *, max_fails: int = 1, fail_timeout: str = "2s"
) -> str:
    """NGINX ``server`` lines for an upstream block, one per address.

    ``max_fails=1 fail_timeout=2s``: after one failed attempt a server is skipped for two
    seconds, so a stopped local replica costs one retried request, not one per request.
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
    entries = _PROXY_SEPARATORS.split(value) if isinstance(value, str) else list(value)
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


def template_values(settings: Mapping[str, str]) -> dict[str, str]:
    """The template's values from the container's settings, as the image's entrypoint builds
    them: everything as given, plus GATEWAY_REAL_IP_FROM from GATEWAY_TRUSTED_PROXIES (which may
    be missing). ``render(template, template_values(os.environ))`` is what the image renders.
    """
    return {**settings, "GATEWAY_REAL_IP_FROM": real_ip_lines(settings.get(TRUSTED_PROXIES, ""))}


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
) -> dict[str, str]:
    """Template values for NGINX run as a local process.

    ``run_dir``: directory for the pid file and temp directories, and by default the logs
    (``access.log``, ``error.log``). It is created if missing. When this runs as root, NGINX's
    worker processes run as the unprivileged default user (``nobody`` on Debian), so the
    directory is made traversable by others (``o+x``) and every directory above it must be
    too, or a ``ValueError`` says which one is not (``/tmp/...`` works; a pytest ``tmp_path``
    or anything under ``/root`` does not).

    ``listen``: ``host:port`` or ``port`` (e.g. ``"127.0.0.1:8080"``).
    ``upstreams``: addresses per service, exactly the keys ``inventory``, ``shipping`` and
    ``support``, e.g. ``{"inventory": ["127.0.0.1:8111", "127.0.0.1:8112"], ...}``.
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
    unknown = sorted(set(upstreams) - set(SERVICES))
    if unknown:
        raise ValueError(f"unknown service {unknown[0]!r} in upstreams (known: {SERVICES})")
    missing = [name for name in SERVICES if name not in upstreams]
    if missing:
        raise ValueError(f"no upstream servers given for service {missing[0]!r}")
    _check(_RATE, rate, "rate")
    if burst < 1:  # NGINX refuses burst=0
        raise ValueError(f"burst must be a positive number, got {burst}")
    _check(_DURATION, read_timeout, "read_timeout")
    if not (worker_processes == "auto" or (str(worker_processes).isdigit()
                                            and int(worker_processes) > 0)):
        raise ValueError(f"worker_processes must be a positive number or 'auto', got "
                         f"{worker_processes!r}")

    values = {
        "GATEWAY_LISTEN": listen,
        "GATEWAY_RATE": rate,
        "GATEWAY_BURST": str(burst),
        "GATEWAY_READ_TIMEOUT": read_timeout,
        "GATEWAY_RUN_DIR": str(run),
        "GATEWAY_ACCESS_LOG": str(access_log if access_log is not None else run / "access.log"),
        "GATEWAY_ERROR_LOG": str(error_log if error_log is not None else run / "error.log"),
        "GATEWAY_WORKER_PROCESSES": str(worker_processes),
        "GATEWAY_REAL_IP_FROM": real_ip_lines(trusted_proxies),
    }
    for name in SERVICES:
        try:
            lines = server_lines(upstreams[name], max_fails=max_fails, fail_timeout=fail_timeout)
        except ValueError as exc:
            raise ValueError(f"upstream {name}: {exc}") from None
        values[f"{name.upper()}_SERVERS"] = lines
    return values


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


def _make_reachable_by_workers(run: Path) -> None:
    """Let NGINX workers that dropped root reach their temp directories under ``run``."""
    mode = run.stat().st_mode
    if not mode & stat.S_IXOTH:
        run.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
    for parent in run.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            raise ValueError(
                f"gateway run directory {run} is not reachable by NGINX's worker user: "
                f"{parent} is not searchable by others (chmod o+x, or use a directory in /tmp)"
            )
