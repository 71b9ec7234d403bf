"""fleet_shared.gateway: the Python renderer of gateway/nginx.conf.template (no NGINX needed)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
from gateway_harness import INVALID_PROXIES, VALID_PROXIES

from fleet_shared import gateway as gw

UPSTREAMS = {
    "inventory": ["127.0.0.1:8111", "127.0.0.1:8112"],
    "shipping": ["127.0.0.1:8121"],
    "support": ["127.0.0.1:8131"],
}

DECLARED = {
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
    del values["SHIPPING_SERVERS"]
    with pytest.raises(ValueError, match="SHIPPING_SERVERS"):
        gw.render(gw.read_template(), values)


def test_render_accepts_the_environment_mapping() -> None:
    os.environ["FLEET_GATEWAY_TEST_X"] = "ok"
    try:
        assert gw.render("${FLEET_GATEWAY_TEST_X}", os.environ) == "ok"
    finally:
        del os.environ["FLEET_GATEWAY_TEST_X"]


def test_settings_are_the_template_variables_with_the_trusted_proxies_in_place_of_lines() -> None:
    assert gw.SETTINGS == (DECLARED - {"GATEWAY_REAL_IP_FROM"}) | {"GATEWAY_TRUSTED_PROXIES"}
    assert gw.REQUIRED_SETTINGS == gw.SETTINGS - {"GATEWAY_TRUSTED_PROXIES"}


def test_template_values_build_the_real_ip_lines_from_the_setting() -> None:
    settings = {"GATEWAY_RATE": "5r/s", "GATEWAY_TRUSTED_PROXIES": "10.244.0.0/16, fd00::/8"}
    assert gw.template_values(settings) == {
        **settings,
        "GATEWAY_REAL_IP_FROM": "set_real_ip_from 10.244.0.0/16; set_real_ip_from fd00::/8;",
    }
    # Unset and empty both trust nobody.
    assert gw.template_values({})["GATEWAY_REAL_IP_FROM"] == ""
    assert gw.template_values({"GATEWAY_TRUSTED_PROXIES": " , "})["GATEWAY_REAL_IP_FROM"] == ""
    with pytest.raises(ValueError, match="GATEWAY_TRUSTED_PROXIES is invalid: '10.0.0.0/33'"):
        gw.template_values({"GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8,10.0.0.0/33"})


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
    assert set(values) == DECLARED
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
    assert values["GATEWAY_REAL_IP_FROM"] == ""  # nobody is trusted unless named


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
        ({"upstreams": {"inventory": ["a:1"], "shipping": ["b:1"]}}, "support"),
        ({"upstreams": {**UPSTREAMS, "billing": ["c:1"]}}, "billing"),
        ({"upstreams": {**UPSTREAMS, "shipping": []}}, "shipping"),
        ({"upstreams": {**UPSTREAMS, "support": ["1.2.3.4:5; evil"]}}, "support"),
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
