"""The rendered configuration passes ``nginx -t``; the Dockerfile renders it the same way."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from gateway_harness import (
    ENTRYPOINT,
    INVALID_PROXIES,
    INVALID_RESOLVER_VALID,
    INVALID_RESOLVERS,
    INVALID_SERVERS,
    INVALID_SERVICES,
    KUBERNETES_RESOLV_CONF,
    SHELLS,
    VALID_PROXIES,
    VALID_RESOLVERS,
    VALID_SERVERS,
    VALID_SERVICES,
    nginx_command,
    real_ip_from,
    rendered_routes,
    run_entrypoint,
    write_config,
)

from fleet_tools import gateway as gw

REPO = gw.TEMPLATE_PATH.parents[1]
DOCKERFILE = REPO / "gateway" / "Dockerfile"
HADOLINT = shutil.which("hadolint") or str(REPO / ".venv" / "bin" / "hadolint")

LOCAL_UPSTREAMS = {
    "inventory": ["127.0.0.1:8111", "127.0.0.1:8112"],
    "shipping": ["127.0.0.1:8121"],
    "support": ["127.0.0.1:8131"],
}


def nginx_test(run_dir: Path, conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(nginx_command(run_dir, conf, "-t"), capture_output=True, text=True,
                          timeout=30, check=False)


def test_local_rendering_passes_nginx_t(nginx_bin: str, run_dir: Path) -> None:
    values = gw.local_values(run_dir, "127.0.0.1:8080", LOCAL_UPSTREAMS)
    result = nginx_test(run_dir, write_config(run_dir, values))
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    # Every path NGINX writes is in the run directory.
    for temp in ("client_body_temp", "proxy_temp", "fastcgi_temp", "uwsgi_temp", "scgi_temp"):
        assert (run_dir / temp).is_dir()


def kubernetes_settings(run_dir: Path, **changes: str) -> dict[str, str]:
    """The settings the charts give the container (one Service name per upstream), with the
    pid file and temp files in ``run_dir``."""
    settings = {
        "GATEWAY_LISTEN": "8080",
        "GATEWAY_SERVICES": "inventory shipping support",
        "INVENTORY_SERVERS": "server inventory-api:8000;",
        "SHIPPING_SERVERS": "server shipping-api:8000;",
        "SUPPORT_SERVERS": "server support-api:8000;",
        "GATEWAY_RATE": "100r/s",
        "GATEWAY_BURST": "200",
        "GATEWAY_READ_TIMEOUT": "30s",
        "GATEWAY_RUN_DIR": str(run_dir),
        "GATEWAY_ACCESS_LOG": "/dev/stdout",
        "GATEWAY_ERROR_LOG": "stderr",
        "GATEWAY_WORKER_PROCESSES": "auto",
        "GATEWAY_TRUSTED_PROXIES": "10.244.0.0/16, fd00:10:244::/56",
    }
    return {**settings, **changes}


def test_kubernetes_shaped_rendering_passes_nginx_t(nginx_bin: str, run_dir: Path) -> None:
    # As the container renders it in a pod: Service names that do not exist here, looked up
    # through the cluster DNS from the pod's resolv.conf, so nothing is resolved at start.
    resolv_conf = run_dir / "resolv.conf"
    resolv_conf.write_text(KUBERNETES_RESOLV_CONF)
    values = gw.template_values(kubernetes_settings(run_dir), resolv_conf=resolv_conf)
    assert values["GATEWAY_RESOLVER_DIRECTIVE"] == "resolver 10.96.0.10 valid=10s;"
    assert values["GATEWAY_ROUTES"].split("\n")[0] == (
        "inventory inventory-api.fleet.svc.cluster.local:8000;")
    assert values["GATEWAY_UPSTREAMS"] == ""
    result = nginx_test(run_dir, write_config(run_dir, values))
    assert result.returncode == 0, result.stderr


def test_the_template_sets_what_the_contract_asks(nginx_bin: str) -> None:
    template = gw.read_template()
    for directive in (
        "server_tokens off;",
        "client_max_body_size 1m;",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "limit_req_status 429;",
        "proxy_read_timeout ${GATEWAY_READ_TIMEOUT};",
        "limit_req_zone $binary_remote_addr zone=fleet_per_client:10m rate=${GATEWAY_RATE};",
        "log_format fleet_json escape=json",
        "${GATEWAY_REAL_IP_FROM}",
        "real_ip_header X-Forwarded-For;",
        "real_ip_recursive on;",
    ):
        assert directive in template
    assert re.search(r"^\s*proxy_connect_timeout \d+s;", template, re.M)
    assert re.search(r"^\s*resolver_timeout \d+s;", template, re.M)
    assert "${GATEWAY_RESOLVER_DIRECTIVE}" in template
    # The one route passes to a variable (looked up while serving), never to a name fixed at
    # start.
    assert re.findall(r"^\s*proxy_pass\s([^;]*);", template, re.M) == ["http://$fleet_upstream"]
    # Addresses get upstream blocks with keep-alive (the local fleet's).
    rendered = gw.render(template, gw.local_values(Path("/tmp"), "8080", LOCAL_UPSTREAMS))
    assert len(re.findall(r"^\s*upstream \w+ \{", rendered, re.M)) == 3
    assert len(re.findall(r"^\s*keepalive 16;", rendered, re.M)) == 3
    assert len(re.findall(r"^\s*keepalive_timeout 1s;", rendered, re.M)) == 3
    assert not re.findall(r"^\s*resolver\s", rendered, re.M)  # addresses need none
    # Default retry semantics: never replay a POST/PATCH/LOCK that reached an upstream.
    (next_upstream,) = re.findall(r"^\s*proxy_next_upstream\s([^;]*);", template, re.M)
    assert "non_idempotent" not in next_upstream
    assert not re.search(r"^\s*user\s", template, re.M)


def test_the_template_routes_every_service_with_one_location() -> None:
    template = gw.read_template()
    locations = re.findall(r"^\s*location\s+(.*?)\s*\{", template, re.M)
    problems = [f"= /_problem/{status}" for status in re.findall(
        r"^\s*location = /_problem/(\d{3})", template, re.M)]
    assert locations == [
        "^~ /_problem/", *problems, "= /healthz",
        # The API docs: exact and ^~ prefix locations, so no regex location below sees /docs.
        "= /docs", "^~ /docs/", "= /docs/", "= /docs/swagger-config.json",
        "= /docs/swagger-initializer.js",
        '~ "^/docs/swagger-ui/([A-Za-z0-9_-][A-Za-z0-9._-]*\\.(?:css|js|png))$"',
        # Probes first: regex locations are tried in order.
        '~* "^/[^/]+/(?:livez|readyz|metrics)(?:[/.;]|$)"',
        '~ "^/(?<fleet_service>[a-z][a-z0-9]*)/"',
        "/",
    ]
    assert "map $fleet_service $fleet_upstream {" in template
    assert re.search(r"^\s*set \$fleet_prefix /\$fleet_service;$", template, re.M)
    assert 'rewrite "(?s)^/[a-z][a-z0-9]*(/.*)$" $1 break;' in template
    assert ("proxy_redirect ~^((?:https?://[^/]+)?)/v1/(.*)$ $1$fleet_prefix/v1/$2;"
            in template)


#: Today's services. The gateway's own files name none of them: a service is added to the
#: gateway by its settings alone (GATEWAY_SERVICES and <SERVICE>_SERVERS).
TODAYS_SERVICES = ("inventory", "shipping", "support")


@pytest.mark.parametrize("path", ["gateway/nginx.conf.template", "gateway/entrypoint.sh",
                                  "gateway/Dockerfile"])
def test_the_gateway_names_no_service(path: str) -> None:
    text = (REPO / path).read_text()
    for name in TODAYS_SERVICES:
        # "support" is also an English word ("does not support this request").
        found = re.findall(rf"(?i)\b{name}(?:[-_/]|\b(?! this))", text)
        assert not found, (path, name)


# --- Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_is_hadolint_clean() -> None:
    if not Path(HADOLINT).exists():
        pytest.fail("hadolint is not installed (make setup installs it)")
    result = subprocess.run([HADOLINT, str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def dockerfile_user() -> tuple[int, int]:
    """The uid and gid the image runs as (its last USER, numeric)."""
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE.read_text(), re.M)
    assert users, "the image names no user"
    match = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1])
    assert match, f"USER {users[-1]} is not numeric: the kubelet cannot check runAsNonRoot"
    return int(match.group(1)), int(match.group(2) or match.group(1))


def test_dockerfile_pins_its_base_and_runs_unprivileged() -> None:
    text = DOCKERFILE.read_text()
    # A stage that unpacks Swagger UI's assets, then NGINX's image: the one that runs.
    builder, base = re.findall(r"^FROM\s+(\S+)", text, re.M)
    # The bases may be build arguments; their defaults are what a plain build uses.
    arguments = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.M))
    base, builder = (re.sub(r"\$\{(\w+)\}", lambda m: arguments.get(m.group(1), m.group(0)),
                            name) for name in (base, builder.split()[0]))
    assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+-alpine(@sha256:[0-9a-f]{64})?", base), base
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", builder)
    uid, gid = dockerfile_user()
    # Clear of the base image's accounts and the usual host's (the charts say the same).
    assert uid >= 10000 and gid >= 10000
    assert "GATEWAY_RUN_DIR=/tmp" in text
    assert re.search(r"^STOPSIGNAL SIGQUIT$", text, re.M)


def test_dockerfile_installs_the_entrypoint() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^COPY entrypoint.sh /usr/local/bin/fleet-gateway$", text, re.M)
    assert ENTRYPOINT.stat().st_mode & 0o755 == 0o755  # COPY keeps the checkout's mode
    assert re.search(r'^ENTRYPOINT \["/usr/local/bin/fleet-gateway"\]$', text, re.M)
    # The image default trusts nobody.
    assert re.search(r'^\s+GATEWAY_TRUSTED_PROXIES=""$', text, re.M)


def script_list(name: str) -> set[str]:
    match = re.search(rf'^{name}="([^"]*)"$', ENTRYPOINT.read_text(), re.M)
    assert match, f"the entrypoint no longer sets {name}"
    return set(match.group(1).split())


def test_entrypoint_requires_the_settings_and_renders_the_template_variables() -> None:
    assert script_list("required") == gw.REQUIRED_SETTINGS
    assert script_list("derived") == gw.DERIVED_VARIABLES
    assert script_list("required") | script_list("derived") == gw.TEMPLATE_VARIABLES
    match = re.search(r"^default_resolver_valid=(\S+)$", ENTRYPOINT.read_text(), re.M)
    assert match and match.group(1) == gw.DEFAULT_RESOLVER_VALID


@pytest.fixture(params=sorted(SHELLS))
def shell(request: pytest.FixtureRequest) -> list[str]:
    argv = SHELLS[request.param]
    if shutil.which(argv[0]) is None:
        pytest.fail(f"{argv[0]} is not installed (make deps-system installs it)")
    return argv


@pytest.fixture
def envsubst() -> str:
    found = shutil.which("envsubst")
    if found is None:
        pytest.fail("envsubst is not installed (make deps-system installs it)")
    return found


def container_settings(run_dir: Path, **changes: str) -> dict[str, str]:
    """The settings a deployment gives the container, for a local NGINX in `run_dir`."""
    values = gw.local_values(run_dir, "127.0.0.1:8080", LOCAL_UPSTREAMS)
    names = gw.SETTINGS - {gw.TRUSTED_PROXIES} | {gw.server_setting(s) for s in LOCAL_UPSTREAMS}
    return {name: values[name] for name in names} | changes


@pytest.mark.parametrize("proxies", [None, "", "10.244.0.0/16", "127.0.0.2, fd00::/8\t10.0.0.1"])
def test_entrypoint_renders_like_the_python_renderer(
    nginx_bin: str, envsubst: str, shell: list[str], run_dir: Path, proxies: str | None
) -> None:
    settings = container_settings(run_dir)
    if proxies is not None:
        settings["GATEWAY_TRUSTED_PROXIES"] = proxies
    # Unrelated and nginx-looking environment variables must not leak into the file, and a
    # GATEWAY_REAL_IP_FROM in the environment is replaced, not believed.
    env = {**settings, "request_id": "LEAK", "host": "LEAK", "HOSTNAME": "LEAK",
           "GATEWAY_REAL_IP_FROM": "set_real_ip_from 0.0.0.0/0; # LEAK"}
    result = run_entrypoint(run_dir, env, "-t", shell=shell)
    assert result.returncode == 0, result.stderr
    rendered = (run_dir / "nginx.conf").read_text()
    assert rendered == gw.render(gw.read_template(), gw.template_values(settings))
    assert "LEAK" not in rendered


def test_entrypoint_accepts_the_addresses_the_python_renderer_accepts(
    nginx_bin: str, envsubst: str, shell: list[str], run_dir: Path
) -> None:
    settings = container_settings(run_dir, GATEWAY_TRUSTED_PROXIES=",".join(VALID_PROXIES))
    # NGINX takes every one of them, too.
    result = run_entrypoint(run_dir, settings, "-t", shell=shell)
    assert result.returncode == 0, result.stderr
    rendered = (run_dir / "nginx.conf").read_text()
    assert rendered == gw.render(gw.read_template(), gw.template_values(settings))
    assert real_ip_from(rendered) == VALID_PROXIES


def test_entrypoint_refuses_what_the_python_renderer_refuses(shell: list[str],
                                                             run_dir: Path) -> None:
    for entry in INVALID_PROXIES:
        settings = container_settings(run_dir, GATEWAY_TRUSTED_PROXIES=f"10.244.0.0/16 {entry}")
        result = run_entrypoint(run_dir, settings, shell=shell)
        assert result.returncode == 78, (entry, result.stderr)
        assert result.stderr == (f"fleet-gateway: GATEWAY_TRUSTED_PROXIES is invalid: '{entry}' "
                                 "is not an IP address or CIDR range\n")
        assert not (run_dir / "nginx.conf").exists()


@pytest.mark.parametrize("missing", ["GATEWAY_RATE", "GATEWAY_SERVICES", "SUPPORT_SERVERS"])
def test_entrypoint_names_a_missing_variable(run_dir: Path, missing: str) -> None:
    values = container_settings(run_dir)
    del values[missing]
    result = run_entrypoint(run_dir, values)
    assert result.returncode == 78
    assert result.stderr == f"fleet-gateway: required setting {missing} is not set\n"
    assert not (run_dir / "nginx.conf").exists()
    # The Python renderer says the same of the services' settings (render() names the others).
    if missing != "GATEWAY_RATE":
        with pytest.raises(ValueError) as error:
            gw.template_values(values)
        assert f"fleet-gateway: {error.value}\n" == result.stderr


# --- routes and the resolver: the entrypoint against the Python renderer -------------------


def write_resolv_conf(run_dir: Path, text: str) -> Path:
    path = run_dir / "resolv.conf"
    path.write_text(text)
    return path


def assert_renders_alike(run_dir: Path, settings: dict[str, str], shell: list[str],
                         resolv_conf: Path) -> str:
    """The entrypoint and the Python renderer make the same file, and NGINX takes it."""
    result = run_entrypoint(run_dir, settings, "-t", shell=shell, resolv_conf=resolv_conf)
    assert result.returncode == 0, result.stderr
    rendered = (run_dir / "nginx.conf").read_text()
    assert rendered == gw.render(gw.read_template(),
                                 gw.template_values(settings, resolv_conf=resolv_conf))
    return rendered


def assert_refused_alike(run_dir: Path, settings: dict[str, str], shell: list[str],
                         resolv_conf: Path, message: str) -> None:
    """Both refuse, with the same one line."""
    (run_dir / "nginx.conf").unlink(missing_ok=True)
    result = run_entrypoint(run_dir, settings, shell=shell, resolv_conf=resolv_conf)
    assert (result.returncode, result.stderr) == (78, f"fleet-gateway: {message}\n")
    assert not (run_dir / "nginx.conf").exists()
    with pytest.raises(ValueError) as error:
        gw.template_values(settings, resolv_conf=resolv_conf)
    assert str(error.value) == message


def test_entrypoint_routes_like_the_python_renderer(
    nginx_bin: str, envsubst: str, shell: list[str], run_dir: Path
) -> None:
    # No search domain: names are looked up as written (RESOLV_CONFS covers the search list).
    resolv_conf = write_resolv_conf(run_dir, "nameserver 10.96.0.10\n")
    for value, target in VALID_SERVERS:
        settings = kubernetes_settings(run_dir, INVENTORY_SERVERS=value)
        rendered = assert_renders_alike(run_dir, settings, shell, resolv_conf)
        assert rendered_routes(rendered).get("inventory", "") == target, value
        blocks = re.findall(r"^\s*upstream (\w+) \{", rendered, re.M)
        assert ("inventory" in blocks) == (target == "inventory"), value


def test_entrypoint_refuses_the_server_lines_the_python_renderer_refuses(
    shell: list[str], run_dir: Path
) -> None:
    resolv_conf = write_resolv_conf(run_dir, KUBERNETES_RESOLV_CONF)
    for value, detail in INVALID_SERVERS:
        settings = kubernetes_settings(run_dir, SUPPORT_SERVERS=value)
        assert_refused_alike(run_dir, settings, shell, resolv_conf,
                             f"SUPPORT_SERVERS is invalid: {detail}")
    settings = kubernetes_settings(run_dir, INVENTORY_SERVERS="", SHIPPING_SERVERS=" ",
                                   SUPPORT_SERVERS=";")
    assert_refused_alike(run_dir, settings, shell, resolv_conf,
                         "no service is routed: INVENTORY_SERVERS, SHIPPING_SERVERS and "
                         "SUPPORT_SERVERS are all empty")
    assert_refused_alike(run_dir, {**settings, "GATEWAY_SERVICES": "shipping,support"}, shell,
                         resolv_conf, "no service is routed: SHIPPING_SERVERS and "
                         "SUPPORT_SERVERS are all empty")
    assert_refused_alike(run_dir, {**settings, "GATEWAY_SERVICES": "support"}, shell,
                         resolv_conf, "no service is routed: SUPPORT_SERVERS is empty")


# --- the list of services: the entrypoint against the Python renderer -----------------------


def test_entrypoint_takes_the_service_lists_the_python_renderer_takes(
    nginx_bin: str, envsubst: str, shell: list[str], run_dir: Path
) -> None:
    resolv_conf = write_resolv_conf(run_dir, KUBERNETES_RESOLV_CONF)
    for value, services in VALID_SERVICES:
        settings = kubernetes_settings(run_dir, GATEWAY_SERVICES=value)
        # Every name listed has its servers: an address block for one, a name for the others.
        for number, service in enumerate(services):
            settings[gw.server_setting(service)] = (
                f"server 10.0.0.{number + 1}:8000;" if number == 0
                else f"server {service}-api:8000;")
        rendered = assert_renders_alike(run_dir, settings, shell, resolv_conf)
        assert rendered_routes(rendered) == {
            service: service if number == 0 else f"{service}-api.fleet.svc.cluster.local:8000"
            for number, service in enumerate(services)}, value
        assert re.findall(r"^\s*upstream (\w+) \{", rendered, re.M) == [services[0]], value


def test_entrypoint_refuses_the_service_lists_the_python_renderer_refuses(
    shell: list[str], run_dir: Path
) -> None:
    resolv_conf = write_resolv_conf(run_dir, KUBERNETES_RESOLV_CONF)
    for value, detail in INVALID_SERVICES:
        settings = kubernetes_settings(run_dir, GATEWAY_SERVICES=value)
        assert_refused_alike(run_dir, settings, shell, resolv_conf,
                             f"GATEWAY_SERVICES is invalid: {detail}")
    # A name listed without its servers stops the start; so does an empty list.
    settings = kubernetes_settings(run_dir, GATEWAY_SERVICES="inventory billing shipping")
    assert_refused_alike(run_dir, settings, shell, resolv_conf,
                         "required setting BILLING_SERVERS is not set")
    assert_refused_alike(run_dir, {**settings, "GATEWAY_SERVICES": ""}, shell, resolv_conf,
                         "required setting GATEWAY_SERVICES is not set")


def test_entrypoint_routes_only_the_services_listed(
    nginx_bin: str, envsubst: str, shell: list[str], run_dir: Path
) -> None:
    resolv_conf = write_resolv_conf(run_dir, KUBERNETES_RESOLV_CONF)
    # Support's setting is there but support is not listed: it is not read, even malformed.
    settings = kubernetes_settings(run_dir, GATEWAY_SERVICES="shipping billing",
                                   BILLING_SERVERS="server billing-api:8000;",
                                   SUPPORT_SERVERS="not a server line")
    rendered = assert_renders_alike(run_dir, settings, shell, resolv_conf)
    assert rendered_routes(rendered) == {
        "shipping": "shipping-api.fleet.svc.cluster.local:8000",
        "billing": "billing-api.fleet.svc.cluster.local:8000"}


#: resolv.conf files as pods, containers and hosts have them, and what the gateway takes from
#: each: the resolver directive and the name it looks up for "inventory-api".
RESOLV_CONFS = {
    "kubernetes": (KUBERNETES_RESOLV_CONF, "resolver 10.96.0.10 valid=10s;",
                   "inventory-api.fleet.svc.cluster.local"),
    # Docker's embedded DNS answers bare service names; it says so with ndots:0.
    "docker": ("# Generated by Docker Engine.\nnameserver 127.0.0.11\nsearch corp.example\n"
               "options ndots:0\n", "resolver 127.0.0.11 valid=10s;", "inventory-api"),
    "host": ("domain lan\nnameserver 192.168.1.1\nnameserver fd00::1\n",
             "resolver 192.168.1.1 [fd00::1] valid=10s;", "inventory-api.lan"),
    "last-search-wins": ("search a.example\nsearch b.example c.example\nnameserver 10.0.0.1",
                         "resolver 10.0.0.1 valid=10s;", "inventory-api.b.example"),
    "unusable-entries": ("; a comment\nnameserver fe80::1%eth0\nnameserver 10.0.0.2\n"
                         "search bad_domain\noptions ndots:x timeout:2\n",
                         "resolver 10.0.0.2 valid=10s;", "inventory-api"),
    "ndots-zero-padded": ("nameserver 10.0.0.3\nsearch s.example\noptions ndots:00\n",
                          "resolver 10.0.0.3 valid=10s;", "inventory-api"),
}


@pytest.mark.parametrize("case", sorted(RESOLV_CONFS))
def test_entrypoint_reads_resolv_conf_like_the_python_renderer(
    nginx_bin: str, envsubst: str, shell: list[str], run_dir: Path, case: str
) -> None:
    text, directive, name = RESOLV_CONFS[case]
    resolv_conf = write_resolv_conf(run_dir, text)
    rendered = assert_renders_alike(run_dir, kubernetes_settings(run_dir), shell, resolv_conf)
    assert re.findall(r"^\s*(resolver .*)$", rendered, re.M) == [directive]
    assert rendered_routes(rendered)["inventory"] == f"{name}:8000"
    # A name with a dot is taken as complete.
    settings = kubernetes_settings(run_dir, INVENTORY_SERVERS="server api.other:8000;")
    rendered = assert_renders_alike(run_dir, settings, shell, resolv_conf)
    assert rendered_routes(rendered)["inventory"] == "api.other:8000"


def test_entrypoint_takes_the_resolver_settings_like_the_python_renderer(
    nginx_bin: str, envsubst: str, shell: list[str], run_dir: Path
) -> None:
    resolv_conf = write_resolv_conf(run_dir, KUBERNETES_RESOLV_CONF)
    for value, servers in VALID_RESOLVERS:
        settings = kubernetes_settings(run_dir, GATEWAY_RESOLVER=value,
                                       GATEWAY_RESOLVER_VALID="5s")
        rendered = assert_renders_alike(run_dir, settings, shell, resolv_conf)
        assert f"resolver {servers} valid=5s;" in rendered
    for value in INVALID_RESOLVERS:
        settings = kubernetes_settings(run_dir, GATEWAY_RESOLVER=f"10.0.0.1 {value}")
        assert_refused_alike(run_dir, settings, shell, resolv_conf,
                             f"GATEWAY_RESOLVER is invalid: '{value}' is not an IP address "
                             "with an optional port")
    for value in INVALID_RESOLVER_VALID:
        settings = kubernetes_settings(run_dir, GATEWAY_RESOLVER_VALID=value)
        assert_refused_alike(run_dir, settings, shell, resolv_conf,
                             f"GATEWAY_RESOLVER_VALID is invalid: '{value}' is not a number of "
                             "seconds, minutes or hours (e.g. 10s)")


def test_entrypoint_needs_a_nameserver_only_for_names(
    nginx_bin: str, envsubst: str, shell: list[str], run_dir: Path
) -> None:
    missing = run_dir / "no-resolv.conf"
    assert_refused_alike(run_dir, kubernetes_settings(run_dir), shell, missing,
                         f"GATEWAY_RESOLVER is not set and {missing} names no nameserver: the "
                         "gateway needs one to look up its upstreams")
    # Addresses need no resolver; an empty setting is the same as none.
    settings = container_settings(run_dir, GATEWAY_RESOLVER="", GATEWAY_RESOLVER_VALID="")
    rendered = assert_renders_alike(run_dir, settings, shell, missing)
    assert "resolver " not in re.sub(r"#[^\n]*", "", rendered)


def test_nginx_t_reports_a_broken_value(nginx_bin: str, run_dir: Path) -> None:
    values = gw.local_values(run_dir, "127.0.0.1:8080", LOCAL_UPSTREAMS)
    values["GATEWAY_RATE"] = "fast"
    result = nginx_test(run_dir, write_config(run_dir, values))
    assert result.returncode != 0
    assert "fast" in result.stderr


def test_local_runner_needs_no_root_paths(nginx_bin: str, run_dir: Path) -> None:
    # Nothing outside the run directory is written: NGINX's compiled-in paths are all replaced.
    values = gw.local_values(run_dir, "127.0.0.1:8080", LOCAL_UPSTREAMS)
    rendered = re.sub(r"#[^\n]*", "", gw.render(gw.read_template(), values))
    absolute_paths = set(re.findall(r"(?<![\w$])(/(?:var|run|usr|etc)/\S*)", rendered))
    assert absolute_paths == set()
    assert os.fspath(run_dir) in rendered


# --- API docs -------------------------------------------------------------------------------

#: Docs directory settings, accepted (with the directory the template gets) and refused.
VALID_DOCS_DIRS = [
    ("/usr/share/fleet-gateway/docs/", "/usr/share/fleet-gateway/docs"),
    ("/srv/My Checkout@2/gateway/docs//", "/srv/My Checkout@2/gateway/docs"),
    ("/opt/venv/lib/python3.11/site-packages/swagger_ui_bundle/vendor/swagger-ui-4.15.5",
     "/opt/venv/lib/python3.11/site-packages/swagger_ui_bundle/vendor/swagger-ui-4.15.5"),
    ("/a+b:c~d", "/a+b:c~d"),
]
INVALID_DOCS_DIRS = ["docs", "./docs", "/srv/docs;", '/srv/"docs', "/srv/$docs", "/srv/{docs}",
                     "/srv/docs#x", "/srv/d\\ocs", "/srv/caf\u00e9", "/srv/a\tb", "/srv/a'b"]


def test_entrypoint_builds_the_docs_like_the_python_renderer(
    nginx_bin: str, envsubst: str, shell: list[str], run_dir: Path
) -> None:
    resolv_conf = write_resolv_conf(run_dir, "nameserver 10.96.0.10\n")
    # Unset, the image's own directories; the list is the routed services, in order.
    settings = container_settings(run_dir, GATEWAY_SERVICES="support billing inventory",
                                  BILLING_SERVERS="")
    rendered = assert_renders_alike(run_dir, settings, shell, resolv_conf)
    assert f'alias "{gw.DEFAULT_DOCS_DIR}/index.html";' in rendered
    assert f'alias "{gw.DEFAULT_SWAGGER_UI_DIR}/$1";' in rendered
    assert ("""return 200 '{"urls":[{"url":"/support/v1/openapi.json","name":"support"},"""
            """{"url":"/inventory/v1/openapi.json","name":"inventory"}]}';""") in rendered
    for value, directory in VALID_DOCS_DIRS:
        settings = container_settings(run_dir, GATEWAY_DOCS_DIR=value,
                                      GATEWAY_SWAGGER_UI_DIR=value)
        rendered = assert_renders_alike(run_dir, settings, shell, resolv_conf)
        assert f'alias "{directory}/swagger-initializer.js";' in rendered
        assert f'alias "{directory}/$1";' in rendered
    for name in ("GATEWAY_DOCS_DIR", "GATEWAY_SWAGGER_UI_DIR"):
        for value in INVALID_DOCS_DIRS:
            assert_refused_alike(run_dir, container_settings(run_dir, **{name: value}), shell,
                                 resolv_conf,
                                 f"{name} is invalid: '{value}' is not an absolute path of "
                                 "letters, digits, spaces and . _ / + @ : ~ -")


def test_the_image_carries_the_docs_where_the_entrypoint_looks() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(rf"^COPY docs/ {gw.DEFAULT_DOCS_DIR}/$", text, re.M)
    assert re.search(rf"^COPY --from=swagger-ui /swagger-ui/ {gw.DEFAULT_SWAGGER_UI_DIR}/$",
                     text, re.M)
    for name, default in (("default_docs_dir", gw.DEFAULT_DOCS_DIR),
                          ("default_swagger_ui_dir", gw.DEFAULT_SWAGGER_UI_DIR)):
        assert re.search(rf"^{name}={re.escape(default)}$", ENTRYPOINT.read_text(), re.M)
    # Every file the page loads from Swagger UI is one the image copies.
    page = (gw.DOCS_PATH / "index.html").read_text()
    for name in re.findall(r'"/docs/swagger-ui/([^"]+)"', page):
        assert re.search(rf"\s{re.escape(name)}[\s;]", text), name


def test_the_image_takes_the_locked_swagger_ui_bundle() -> None:
    """The same wheel as the local fleet's: uv.lock's version and hash."""
    lock = (REPO / "uv.lock").read_text()
    (package,) = re.findall(r'\[\[package\]\]\nname = "swagger-ui-bundle"\n(.*?)\n\n', lock,
                            re.S)
    version = re.search(r'^version = "([^"]+)"', package, re.M)
    wheel = re.search(r'-py3-none-any\.whl", hash = "sha256:([0-9a-f]{64})"', package)
    assert version and wheel
    text = DOCKERFILE.read_text()
    assert f"ARG SWAGGER_UI_BUNDLE_VERSION={version.group(1)}\n" in text
    assert f"ARG SWAGGER_UI_BUNDLE_SHA256={wheel.group(1)}\n" in text
