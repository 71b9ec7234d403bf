"""fleet_tools.gateway: the Python renderer of gateway/nginx.conf.template (no NGINX needed)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
from gateway_harness import (
    INVALID_PROXIES,
    INVALID_RESOLVER_VALID,
    INVALID_RESOLVERS,
    INVALID_SERVERS,
    INVALID_SERVICES,
    KUBERNETES_RESOLV_CONF,
    VALID_PROXIES,
    VALID_RESOLVERS,
    VALID_SERVERS,
    VALID_SERVICES,
    routes,
)

from fleet_tools import gateway as gw

UPSTREAMS = {
    "inventory": ["127.0.0.1:8111", "127.0.0.1:8112"],
    "shipping": ["127.0.0.1:8121"],
    "support": ["127.0.0.1:8131"],
}

DECLARED = {
    "GATEWAY_LISTEN",
    "GATEWAY_RATE",
    "GATEWAY_BURST",
    "GATEWAY_READ_TIMEOUT",
    "GATEWAY_RUN_DIR",
    "GATEWAY_ACCESS_LOG",
    "GATEWAY_ERROR_LOG",
    "GATEWAY_WORKER_PROCESSES",
    "GATEWAY_REAL_IP_FROM",
    "GATEWAY_RESOLVER_DIRECTIVE",
    "GATEWAY_UPSTREAMS",
    "GATEWAY_ROUTES",
    "GATEWAY_DOCS_CONFIG",
    "GATEWAY_DOCS_ROOT",
    "GATEWAY_SWAGGER_UI_ROOT",
}
SERVERS = {"INVENTORY_SERVERS", "SHIPPING_SERVERS", "SUPPORT_SERVERS"}


def settings_for(run_dir: Path, **changes: str) -> dict[str, str]:
    """Container settings for the local upstreams (every one an address)."""
    values = gw.local_values(run_dir, "127.0.0.1:8080", UPSTREAMS)
    names = gw.SETTINGS | {gw.server_setting(service) for service in UPSTREAMS}
    return {**{name: values[name] for name in names}, **changes}


def test_template_path_is_the_repository_template() -> None:
    assert gw.TEMPLATE_PATH.is_file()
    assert gw.TEMPLATE_PATH.parts[-2:] == ("gateway", "nginx.conf.template")


def test_template_declares_exactly_the_contract_variables() -> None:
    template = gw.read_template()
    assert gw.template_variables(template) == DECLARED
    assert gw.TEMPLATE_VARIABLES == DECLARED


def test_template_uses_no_bare_upper_case_variables() -> None:
    # envsubst would replace "$GATEWAY_X" as well as "${GATEWAY_X}"; the Python renderer only
    # knows the braced form, so the template must not use the bare one.
    assert not re.findall(r"\$[A-Z][A-Z0-9_]*", gw.read_template())


def test_render_substitutes_declared_variables_only() -> None:
    template = "a ${FOO}; b ${BAR_2}; nginx $request_id ${request_id} $FOO_not; end ${FOO}"
    out = gw.render(template, {"FOO": "1", "BAR_2": "two", "UNUSED": "x"})
    assert out == "a 1; b two; nginx $request_id ${request_id} $FOO_not; end 1"


def test_render_does_not_resubstitute_values() -> None:
    assert gw.render("${A} ${B}", {"A": "${B}", "B": "b"}) == "${B} b"


def test_render_names_a_missing_variable() -> None:
    with pytest.raises(ValueError, match="GATEWAY_RATE"):
        gw.render("rate=${GATEWAY_RATE};", {})


def test_render_of_the_template_names_the_first_missing_variable(tmp_path: Path) -> None:
    values = gw.local_values(Path("/tmp"), "127.0.0.1:8080", UPSTREAMS)
    del values["GATEWAY_ROUTES"]
    with pytest.raises(ValueError, match="GATEWAY_ROUTES"):
        gw.render(gw.read_template(), values)


def test_render_accepts_the_environment_mapping() -> None:
    os.environ["FLEET_GATEWAY_TEST_X"] = "ok"
    try:
        assert gw.render("${FLEET_GATEWAY_TEST_X}", os.environ) == "ok"
    finally:
        del os.environ["FLEET_GATEWAY_TEST_X"]


def test_settings_and_template_variables() -> None:
    required = DECLARED - gw.DERIVED_VARIABLES
    assert gw.REQUIRED_SETTINGS == required
    assert {gw.server_setting(service) for service in UPSTREAMS} == SERVERS
    assert gw.server_setting("billing") == "BILLING_SERVERS"
    # What every deployment sets, besides a server setting per service it lists; the resolver
    # settings are worked out at start when unset.
    assert gw.SETTINGS == required | {"GATEWAY_SERVICES", "GATEWAY_TRUSTED_PROXIES"}
    assert gw.OPTIONAL_SETTINGS == {"GATEWAY_RESOLVER", "GATEWAY_RESOLVER_VALID",
                                    "GATEWAY_DOCS_DIR", "GATEWAY_SWAGGER_UI_DIR"}
    assert gw.TEMPLATE_VARIABLES == required | gw.DERIVED_VARIABLES


@pytest.mark.parametrize(("value", "services"), VALID_SERVICES)
def test_parse_services(value: str, services: tuple[str, ...]) -> None:
    assert gw.parse_services(value) == services


@pytest.mark.parametrize(("value", "detail"), INVALID_SERVICES)
def test_parse_services_names_what_is_wrong(value: str, detail: str) -> None:
    with pytest.raises(ValueError) as error:
        gw.parse_services(value)
    assert str(error.value) == f"GATEWAY_SERVICES is invalid: {detail}"


def test_the_services_routed_are_the_ones_listed(run_dir: Path) -> None:
    # A fourth service needs its name in the list and its servers, nothing else.
    settings = settings_for(run_dir, GATEWAY_SERVICES="billing, inventory support",
                            BILLING_SERVERS="server 127.0.0.1:8141;")
    values = gw.template_values(settings)
    # In the list's order; shipping is not listed, so its setting is not read (its prefix
    # answers 404), even when it is malformed.
    assert routes(values) == {"billing": "billing", "inventory": "inventory",
                              "support": "support"}
    blocks = values["GATEWAY_UPSTREAMS"].split("\n\n    ")
    assert [block.split()[1] for block in blocks] == ["billing", "inventory", "support"]
    settings["SHIPPING_SERVERS"] = "not a server line"
    assert gw.template_values(settings) == {**values, "SHIPPING_SERVERS": "not a server line"}


def test_template_values_need_the_list_of_services(run_dir: Path) -> None:
    settings = settings_for(run_dir)
    for value in (None, ""):
        if value is None:
            del settings["GATEWAY_SERVICES"]
        else:
            settings["GATEWAY_SERVICES"] = value
        with pytest.raises(ValueError, match="^required setting GATEWAY_SERVICES is not set$"):
            gw.template_values(settings)
    settings["GATEWAY_SERVICES"] = "inventory Shipping"
    with pytest.raises(ValueError, match="^GATEWAY_SERVICES is invalid: 'Shipping' is not a "):
        gw.template_values(settings)


def test_template_values_build_the_real_ip_lines_from_the_setting(run_dir: Path) -> None:
    settings = settings_for(run_dir, GATEWAY_RATE="5r/s",
                            GATEWAY_TRUSTED_PROXIES="10.244.0.0/16, fd00::/8")
    values = gw.template_values(settings)
    assert {name: values[name] for name in settings} == settings
    assert values["GATEWAY_REAL_IP_FROM"] == (
        "set_real_ip_from 10.244.0.0/16; set_real_ip_from fd00::/8;")
    # Unset and empty both trust nobody.
    del settings["GATEWAY_TRUSTED_PROXIES"]
    assert gw.template_values(settings)["GATEWAY_REAL_IP_FROM"] == ""
    settings["GATEWAY_TRUSTED_PROXIES"] = " , "
    assert gw.template_values(settings)["GATEWAY_REAL_IP_FROM"] == ""
    settings["GATEWAY_TRUSTED_PROXIES"] = "10.0.0.0/8,10.0.0.0/33"
    with pytest.raises(ValueError, match="GATEWAY_TRUSTED_PROXIES is invalid: '10.0.0.0/33'"):
        gw.template_values(settings)


def test_template_values_need_every_listed_server_setting(run_dir: Path) -> None:
    settings = settings_for(run_dir)
    del settings["SHIPPING_SERVERS"]
    with pytest.raises(ValueError, match="^required setting SHIPPING_SERVERS is not set$"):
        gw.template_values(settings)
    # A name listed without its servers is a mistake, not a service left out.
    settings = settings_for(run_dir, GATEWAY_SERVICES="inventory shipping support billing")
    with pytest.raises(ValueError, match="^required setting BILLING_SERVERS is not set$"):
        gw.template_values(settings)


def test_addresses_get_an_upstream_block_with_keepalive(run_dir: Path) -> None:
    values = gw.template_values(settings_for(run_dir))
    assert routes(values) == {"inventory": "inventory", "shipping": "shipping",
                              "support": "support"}
    assert values["GATEWAY_ROUTES"] == ("inventory inventory;\n        shipping shipping;\n"
                                        "        support support;")
    blocks = values["GATEWAY_UPSTREAMS"].split("\n\n    ")
    assert [block.split()[1] for block in blocks] == ["inventory", "shipping", "support"]
    assert blocks[0] == (
        "upstream inventory {\n"
        "        zone upstream_inventory 64k;\n"
        "        server 127.0.0.1:8111 max_fails=1 fail_timeout=2s;\n"
        "        server 127.0.0.1:8112 max_fails=1 fail_timeout=2s;\n"
        "        keepalive 16;\n"
        "        keepalive_timeout 1s;\n"
        "    }")
    # Addresses need no resolver.
    assert values["GATEWAY_RESOLVER_DIRECTIVE"] == ""


@pytest.mark.parametrize(("value", "target"), VALID_SERVERS)
def test_server_settings_give_the_route_target(run_dir: Path, value: str, target: str) -> None:
    resolv_conf = run_dir / "resolv.conf"
    resolv_conf.write_text("nameserver 10.96.0.10\n")
    values = gw.template_values(settings_for(run_dir, INVENTORY_SERVERS=value),
                                resolv_conf=resolv_conf)
    assert routes(values).get("inventory", "") == target
    assert ("upstream inventory {" in values["GATEWAY_UPSTREAMS"]) == (target == "inventory")
    named = target not in ("", "inventory")
    assert bool(values["GATEWAY_RESOLVER_DIRECTIVE"]) == named


@pytest.mark.parametrize(("value", "detail"), INVALID_SERVERS)
def test_server_settings_are_checked(run_dir: Path, value: str, detail: str) -> None:
    with pytest.raises(ValueError) as error:
        gw.template_values(settings_for(run_dir, SUPPORT_SERVERS=value))
    assert str(error.value) == f"SUPPORT_SERVERS is invalid: {detail}"


def test_a_service_with_no_servers_is_not_routed_but_one_must_be(run_dir: Path) -> None:
    values = gw.template_values(settings_for(run_dir, SUPPORT_SERVERS=""))
    assert list(routes(values)) == ["inventory", "shipping"]
    assert "upstream support" not in values["GATEWAY_UPSTREAMS"]
    with pytest.raises(ValueError, match="^no service is routed: INVENTORY_SERVERS, "
                                         "SHIPPING_SERVERS and SUPPORT_SERVERS are all empty$"):
        gw.template_values(settings_for(run_dir, INVENTORY_SERVERS="", SHIPPING_SERVERS="",
                                        SUPPORT_SERVERS=""))
    with pytest.raises(ValueError, match="^no service is routed: SHIPPING_SERVERS and "
                                         "SUPPORT_SERVERS are all empty$"):
        gw.template_values(settings_for(run_dir, GATEWAY_SERVICES="shipping support",
                                        SHIPPING_SERVERS="", SUPPORT_SERVERS=""))
    with pytest.raises(ValueError, match="^no service is routed: SUPPORT_SERVERS is empty$"):
        gw.template_values(settings_for(run_dir, GATEWAY_SERVICES="support",
                                        SUPPORT_SERVERS=" ; "))


def test_names_are_looked_up_through_the_pods_nameserver(run_dir: Path) -> None:
    resolv_conf = run_dir / "resolv.conf"
    resolv_conf.write_text(KUBERNETES_RESOLV_CONF)
    settings = settings_for(run_dir, INVENTORY_SERVERS="server inventory-api:8000;",
                            SHIPPING_SERVERS="server shipping-api.other.svc.cluster.local:8000;")
    values = gw.template_values(settings, resolv_conf=resolv_conf)
    assert values["GATEWAY_RESOLVER_DIRECTIVE"] == "resolver 10.96.0.10 valid=10s;"
    # A bare Service name gets the pod's namespace domain; a name with a dot is complete.
    assert routes(values) == {"inventory": "inventory-api.fleet.svc.cluster.local:8000",
                              "shipping": "shipping-api.other.svc.cluster.local:8000",
                              "support": "support"}
    # The settings win over resolv.conf.
    settings.update(GATEWAY_RESOLVER="127.0.0.1:5353", GATEWAY_RESOLVER_VALID="2s")
    values = gw.template_values(settings, resolv_conf=resolv_conf)
    assert values["GATEWAY_RESOLVER_DIRECTIVE"] == "resolver 127.0.0.1:5353 valid=2s;"
    # Without a nameserver anywhere the gateway could look nothing up.
    del settings["GATEWAY_RESOLVER"]
    with pytest.raises(ValueError, match="GATEWAY_RESOLVER is not set and .* names no "
                                         "nameserver"):
        gw.template_values(settings, resolv_conf=run_dir / "missing")


def test_read_resolv_conf(run_dir: Path) -> None:
    path = run_dir / "resolv.conf"
    path.write_text(KUBERNETES_RESOLV_CONF)
    system = gw.read_resolv_conf(path)
    assert system == gw.SystemResolver(("10.96.0.10",), "fleet.svc.cluster.local", 5)
    assert system.qualify("api") == "api.fleet.svc.cluster.local"
    assert system.qualify("api.other") == "api.other"
    assert gw.SystemResolver(("10.0.0.1",), "x.example", 0).qualify("api") == "api"
    assert gw.read_resolv_conf(run_dir / "missing") == gw.SystemResolver()
    path.write_text("nameserver fd00::10\nnameserver fe80::1%eth0\nnameserver bogus")
    assert gw.read_resolv_conf(path).nameservers == ("[fd00::10]",)


@pytest.mark.parametrize(("value", "servers"), VALID_RESOLVERS)
def test_parse_resolver(value: str, servers: str) -> None:
    assert " ".join(gw.parse_resolver(value)) == servers


@pytest.mark.parametrize("entry", INVALID_RESOLVERS)
def test_parse_resolver_names_the_entry(entry: str) -> None:
    with pytest.raises(ValueError) as error:
        gw.parse_resolver(f"10.0.0.1, {entry}")
    assert str(error.value) == (f"GATEWAY_RESOLVER is invalid: '{entry}' is not an IP address "
                                "with an optional port")


@pytest.mark.parametrize("valid", INVALID_RESOLVER_VALID)
def test_resolver_valid_is_whole_seconds_minutes_or_hours(run_dir: Path, valid: str) -> None:
    with pytest.raises(ValueError, match=f"^GATEWAY_RESOLVER_VALID is invalid: '{valid}'"):
        gw.template_values(settings_for(run_dir, GATEWAY_RESOLVER_VALID=valid))


@pytest.mark.parametrize("entry", VALID_PROXIES)
def test_parse_trusted_proxies_accepts_addresses_and_ranges(entry: str) -> None:
    assert gw.parse_trusted_proxies(entry) == (entry,)


@pytest.mark.parametrize("entry", INVALID_PROXIES)
def test_parse_trusted_proxies_names_the_setting_and_the_entry(entry: str) -> None:
    with pytest.raises(ValueError) as error:
        gw.parse_trusted_proxies(f"10.244.0.0/16, {entry}")
    assert str(error.value) == (f"GATEWAY_TRUSTED_PROXIES is invalid: {entry!r} is not an IP "
                                "address or CIDR range")


def test_parse_trusted_proxies_splits_on_commas_and_white_space() -> None:
    assert gw.parse_trusted_proxies(" 10.0.0.0/8,fd00::/8\n\t127.0.0.2 ,, ") == (
        "10.0.0.0/8", "fd00::/8", "127.0.0.2")
    assert gw.parse_trusted_proxies(["10.0.0.0/8", "127.0.0.2"]) == ("10.0.0.0/8", "127.0.0.2")
    assert gw.parse_trusted_proxies("") == ()
    with pytest.raises(ValueError, match="FLEET_X is invalid: 'x'"):
        gw.parse_trusted_proxies("x", "FLEET_X")


def test_rendered_template_keeps_nginx_variables(run_dir: Path) -> None:
    values = gw.local_values(run_dir, "127.0.0.1:8080", UPSTREAMS)
    out = gw.render(gw.read_template(), values)
    assert "${" not in out.replace("${name}", "")  # nothing of ours left
    for nginx_variable in ("$request_id", "$http_x_request_id", "$binary_remote_addr",
                           "$realip_remote_addr", "$upstream_addr", "$status"):
        assert nginx_variable in out


def test_local_values_builds_every_variable(run_dir: Path) -> None:
    values = gw.local_values(run_dir, "127.0.0.1:8080", UPSTREAMS, rate="5r/s", burst=7,
                             read_timeout="2s", worker_processes=2)
    assert set(values) == DECLARED | SERVERS | {"GATEWAY_SERVICES", "GATEWAY_TRUSTED_PROXIES",
                                                "GATEWAY_DOCS_DIR", "GATEWAY_SWAGGER_UI_DIR"}
    assert values["GATEWAY_SERVICES"] == "inventory shipping support"
    assert values["GATEWAY_LISTEN"] == "127.0.0.1:8080"
    assert values["GATEWAY_RATE"] == "5r/s"
    assert values["GATEWAY_BURST"] == "7"
    assert values["GATEWAY_READ_TIMEOUT"] == "2s"
    assert values["GATEWAY_WORKER_PROCESSES"] == "2"
    assert values["GATEWAY_RUN_DIR"] == str(run_dir.resolve())
    assert values["GATEWAY_ACCESS_LOG"] == str(run_dir.resolve() / "access.log")
    assert values["GATEWAY_ERROR_LOG"] == str(run_dir.resolve() / "error.log")
    assert values["INVENTORY_SERVERS"] == (
        "server 127.0.0.1:8111 max_fails=1 fail_timeout=2s; "
        "server 127.0.0.1:8112 max_fails=1 fail_timeout=2s;"
    )
    assert values["SUPPORT_SERVERS"] == "server 127.0.0.1:8131 max_fails=1 fail_timeout=2s;"
    assert routes(values)["support"] == "support"
    assert values["GATEWAY_REAL_IP_FROM"] == ""  # nobody is trusted unless named
    assert values["GATEWAY_RESOLVER_DIRECTIVE"] == ""  # addresses need no resolver


def test_local_values_with_a_name_and_a_service_left_out(run_dir: Path) -> None:
    values = gw.local_values(run_dir, "8080", {**UPSTREAMS, "shipping": ["shipping.test:8121"],
                                               "support": []},
                             resolver="127.0.0.1:5353", resolver_valid="1s",
                             resolv_conf=run_dir / "missing")
    # A name has no parameters: they belong to an upstream block.
    assert values["SHIPPING_SERVERS"] == "server shipping.test:8121;"
    assert values["SUPPORT_SERVERS"] == ""
    assert routes(values) == {"inventory": "inventory", "shipping": "shipping.test:8121"}
    assert values["GATEWAY_RESOLVER_DIRECTIVE"] == "resolver 127.0.0.1:5353 valid=1s;"


def test_local_values_route_the_services_given(run_dir: Path) -> None:
    values = gw.local_values(run_dir, "8080", {"billing": ["127.0.0.1:8141"],
                                               "inventory": ["127.0.0.1:8111"]})
    assert values["GATEWAY_SERVICES"] == "billing inventory"
    assert values["BILLING_SERVERS"] == "server 127.0.0.1:8141 max_fails=1 fail_timeout=2s;"
    assert "SHIPPING_SERVERS" not in values
    assert routes(values) == {"billing": "billing", "inventory": "inventory"}


def test_local_values_renders_the_trusted_proxies(run_dir: Path) -> None:
    values = gw.local_values(run_dir, "127.0.0.1:8080", UPSTREAMS,
                             trusted_proxies="127.0.0.2, 10.244.0.0/16")
    assert values["GATEWAY_REAL_IP_FROM"] == (
        "set_real_ip_from 127.0.0.2; set_real_ip_from 10.244.0.0/16;")


def test_local_values_creates_the_run_dir(run_dir: Path) -> None:
    target = run_dir / "nested" / "gateway"
    gw.local_values(target, "8080", UPSTREAMS)
    assert target.is_dir()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root's workers change user")
def test_local_values_as_root_makes_the_run_dir_reachable(run_dir: Path) -> None:
    target = run_dir / "private"
    target.mkdir(mode=0o700)
    gw.local_values(target, "8080", UPSTREAMS)
    assert target.stat().st_mode & stat.S_IXOTH


@pytest.mark.skipif(os.geteuid() != 0, reason="only root's workers change user")
def test_local_values_as_root_refuses_an_unreachable_run_dir(run_dir: Path) -> None:
    locked = run_dir / "locked"
    locked.mkdir(mode=0o700)
    with pytest.raises(ValueError, match="not reachable"):
        gw.local_values(locked / "gateway", "8080", UPSTREAMS)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"upstreams": {**UPSTREAMS, "Billing": ["c:1"]}}, "^GATEWAY_SERVICES is invalid: "
                                                           "'Billing' is not a service name"),
        ({"upstreams": {"in-ventory": ["c:1"]}}, "'in-ventory' is not a service name"),
        ({"upstreams": {}}, "^GATEWAY_SERVICES is invalid: it names no service$"),
        ({"upstreams": {"inventory": [], "shipping": [], "support": []}}, "no service is routed"),
        ({"upstreams": {**UPSTREAMS, "support": ["1.2.3.4:5; evil"]}}, "support"),
        ({"upstreams": {**UPSTREAMS, "support": ["a.test:1", "b.test:1"]}}, "only server"),
        ({"resolver": "ns.example"}, "GATEWAY_RESOLVER"),
        ({"resolver_valid": "100ms"}, "GATEWAY_RESOLVER_VALID"),
        ({"rate": "100"}, "rate"),
        ({"burst": 0}, "burst"),
        ({"read_timeout": "soon"}, "read_timeout"),
        ({"worker_processes": "many"}, "worker_processes"),
        ({"listen": "127.0.0.1:80; listen 81"}, "listen"),
        ({"trusted_proxies": "10.0.0.0/33"}, "GATEWAY_TRUSTED_PROXIES"),
        ({"trusted_proxies": ["10.0.0.0/8; allow all"]}, "GATEWAY_TRUSTED_PROXIES"),
    ],
)
def test_local_values_rejects_bad_input(
    run_dir: Path, change: dict[str, object], message: str
) -> None:
    kwargs: dict[str, Any] = {"listen": "127.0.0.1:8080", "upstreams": UPSTREAMS, **change}
    with pytest.raises(ValueError, match=message):
        gw.local_values(run_dir, **kwargs)
