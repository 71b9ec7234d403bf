"""The client address behind a trusted proxy: the rate limit, the access log and the headers
sent upstream use the address a trusted proxy forwards, never one an untrusted peer claims.

Every 127.x.y.z is this machine, so the tests play each part from its own loopback address:
127.0.0.2 is the trusted proxy (an ingress controller's pod), 127.0.0.3 an untrusted peer (a
client reaching the gateway directly). The forwarded client addresses are documentation
addresses (RFC 5737, RFC 3849) that never connect themselves.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gateway_harness import Gateway, Response, StartGateway, assert_problem

from fleet_shared.fleetctl.console import CommandError
from fleet_tools import gateway as gw
from fleet_tools import plan
from fleet_tools.config import LocalConfig

PROXY = "127.0.0.2"
UNTRUSTED = "127.0.0.3"
CLIENT_A = "198.51.100.1"
CLIENT_B = "198.51.100.2"


def get(gateway: Gateway, peer: str, forwarded_for: str | None = None,
        request_id: str | None = None) -> Response:
    headers = []
    if forwarded_for is not None:
        headers.append(("X-Forwarded-For", forwarded_for))
    if request_id is not None:
        headers.append(("X-Request-ID", request_id))
    return gateway.get("/inventory/v1/products", headers=headers, source_address=(peer, 0))


def statuses(gateway: Gateway, peer: str, forwarded_for: str | None, count: int) -> list[int]:
    return [get(gateway, peer, forwarded_for).status for _ in range(count)]


@pytest.fixture
def limited(start_gateway: StartGateway) -> Gateway:
    """One request a minute and one more as burst per client, behind the proxy at PROXY."""
    return start_gateway(rate="1r/m", burst=1, trusted_proxies=[PROXY])


# --- the rate limit -------------------------------------------------------------------------


def test_each_forwarded_client_gets_its_own_budget(limited: Gateway) -> None:
    assert statuses(limited, PROXY, CLIENT_A, 2) == [200, 200]
    assert_problem(get(limited, PROXY, CLIENT_A), 429)
    # Same proxy, another client: a budget of its own.
    assert statuses(limited, PROXY, CLIENT_B, 2) == [200, 200]
    assert_problem(get(limited, PROXY, CLIENT_B), 429)
    # The proxy's own requests (no header) count for the proxy, not for its clients.
    assert statuses(limited, PROXY, None, 2) == [200, 200]


def test_an_untrusted_peers_forwarded_for_is_ignored(limited: Gateway) -> None:
    # Each request claims another client; the peer is the client all the same.
    assert get(limited, UNTRUSTED, CLIENT_A).status == 200
    assert get(limited, UNTRUSTED, CLIENT_B).status == 200
    assert_problem(get(limited, UNTRUSTED, "203.0.113.99"), 429)
    # Nothing was charged to the clients it named.
    assert get(limited, PROXY, CLIENT_A).status == 200
    assert get(limited, PROXY, CLIENT_B).status == 200


def test_a_client_behind_the_proxy_cannot_choose_its_address(limited: Gateway) -> None:
    # The proxy appends the address it saw (CLIENT_A) to whatever the client sent; the gateway
    # takes the last address that is not a trusted proxy, so what the client wrote never counts.
    spoofed = [f"203.0.113.{n}, {CLIENT_A}" for n in range(1, 4)]
    assert [get(limited, PROXY, chain).status for chain in spoofed] == [200, 200, 429]


def test_without_trusted_proxies_the_header_is_ignored(start_gateway: StartGateway) -> None:
    gateway = start_gateway(rate="1r/m", burst=1)
    assert get(gateway, PROXY, CLIENT_A).status == 200
    assert get(gateway, PROXY, CLIENT_B).status == 200
    assert get(gateway, PROXY, "203.0.113.99").status == 429


def test_a_chain_of_trusted_proxies_is_followed(start_gateway: StartGateway) -> None:
    # An edge load balancer (192.0.2.0/24) in front of the ingress (PROXY): the client is the
    # address before the last trusted hop, whichever proxy tier added it.
    gateway = start_gateway(rate="1r/m", burst=1, trusted_proxies=f"{PROXY}, 192.0.2.0/24")
    assert statuses(gateway, PROXY, f"{CLIENT_A}, 192.0.2.10", 2) == [200, 200]
    assert get(gateway, PROXY, f"{CLIENT_A}, 192.0.2.11").status == 429
    assert get(gateway, PROXY, f"{CLIENT_B}, 192.0.2.10").status == 200


# --- what is logged and sent upstream -------------------------------------------------------


def test_the_access_log_has_the_client_and_the_peer(limited: Gateway) -> None:
    get(limited, PROXY, CLIENT_A, request_id="realip-1")
    get(limited, UNTRUSTED, CLIENT_A, request_id="realip-2")
    get(limited, PROXY, "2001:db8::7", request_id="realip-3")
    forwarded = limited.wait_for_access_entry(lambda e: e["request_id"] == "realip-1")
    direct = limited.wait_for_access_entry(lambda e: e["request_id"] == "realip-2")
    ipv6 = limited.wait_for_access_entry(lambda e: e["request_id"] == "realip-3")
    assert (forwarded["client"], forwarded["peer"]) == (CLIENT_A, PROXY)
    assert (direct["client"], direct["peer"]) == (UNTRUSTED, UNTRUSTED)
    assert (ipv6["client"], ipv6["peer"]) == ("2001:db8::7", PROXY)


def test_upstream_headers_carry_the_client_and_the_whole_chain(limited: Gateway) -> None:
    get(limited, PROXY, CLIENT_A, request_id="via-proxy")
    get(limited, UNTRUSTED, CLIENT_A, request_id="direct")
    seen = {r.headers["X-Request-ID"]: r for stub in limited.stubs["inventory"]
            for r in stub.requests}
    via_proxy, direct = seen["via-proxy"], seen["direct"]
    # X-Real-IP is the client the gateway settled on; X-Forwarded-For keeps the hop that
    # connected to us rather than repeating the client.
    assert via_proxy.headers["X-Real-IP"] == CLIENT_A
    assert via_proxy.header_values("X-Forwarded-For") == [f"{CLIENT_A}, {PROXY}"]
    assert direct.headers["X-Real-IP"] == UNTRUSTED
    assert direct.header_values("X-Forwarded-For") == [f"{CLIENT_A}, {UNTRUSTED}"]


# --- a bad range is refused -------------------------------------------------------------------


@pytest.mark.parametrize("proxies", ["10.0.0.0/33", "10.0.0.0/8,ingress-nginx",
                                     "10.0.0.0/8; set_real_ip_from 0.0.0.0/0"])
def test_rendering_with_a_bad_range_is_refused(run_dir: Path, proxies: str) -> None:
    with pytest.raises(ValueError, match="^GATEWAY_TRUSTED_PROXIES is invalid: '"):
        gw.local_values(run_dir, "127.0.0.1:8080", {"inventory": ["127.0.0.1:1"]},
                        trusted_proxies=proxies)
    assert not (run_dir / "nginx.conf").exists()


# --- the local fleet ---------------------------------------------------------------------------


def test_the_local_fleet_renders_its_trusted_proxies(nginx_bin: str, run_dir: Path) -> None:
    config = LocalConfig.from_env({"FLEET_RUN_DIR": str(run_dir), "FLEET_NGINX": nginx_bin,
                                   "FLEET_GATEWAY_TRUSTED_PROXIES": f"{PROXY}, 10.244.0.0/16"})
    conf = plan.write_gateway_config(config)  # nginx -t included
    assert f"set_real_ip_from {PROXY}; set_real_ip_from 10.244.0.0/16;" in conf.read_text()


def test_the_local_fleet_names_a_bad_range(run_dir: Path) -> None:
    with pytest.raises(CommandError) as error:
        LocalConfig.from_env({"FLEET_RUN_DIR": str(run_dir),
                              "FLEET_GATEWAY_TRUSTED_PROXIES": "127.0.0.2/40"})
    assert str(error.value) == ("FLEET_GATEWAY_TRUSTED_PROXIES is invalid: '127.0.0.2/40' is not "
                                "an IP address or CIDR range")
    assert error.value.status == 2
