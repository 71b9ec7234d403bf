"""Fixtures for the gateway tests: stub upstream servers and a real NGINX in front of them.

- ``upstream_stubs``: small HTTP servers (threads on ephemeral loopback ports) that record every
  request and can be told to be slow, to answer a given status and headers, to drop the
  connection without answering, or to go away.
- ``refused_address``: a loopback address where nothing listens.
- ``start_gateway``: renders gateway/nginx.conf.template with fleet_tools.gateway, checks it
  with ``nginx -t`` and starts NGINX on an ephemeral loopback port with a fresh run directory.
  It listens on 127.0.0.1, and every 127.x.y.z is this machine: a request sent from another
  loopback address (``source_address=("127.0.0.2", 0)``) is another client, or another proxy
  (``trusted_proxies=["127.0.0.2"]``).
  Everything it starts is stopped, and its run directory removed, when the test ends.
- ``gateway``: the usual gateway in front of ``upstream_stubs``: inventory has two servers,
  shipping one, support one live server and ``refused_address``.
- ``dns``: a DNS server on a loopback port (gateway_dns.DnsServer) answering A records from a
  dict the test changes; ``start_gateway(..., resolver=dns.address, resolver_valid="1s")``
  makes NGINX look upstreams' names up there.
- ``run_dir``: an empty run directory, removed afterwards.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from gateway_dns import DnsServer
from gateway_harness import (
    NGINX,
    READ_TIMEOUT,
    Gateway,
    StartGateway,
    StubUpstream,
    free_port,
    nginx_command,
    wait_until_listening,
    write_config,
)

from fleet_tools import gateway as gw


@pytest.fixture
def upstream_stubs() -> Iterator[dict[str, list[StubUpstream]]]:
    """Stub api servers per service: inventory two, shipping one, support one."""
    stubs = {
        "inventory": [StubUpstream("inventory-a"), StubUpstream("inventory-b")],
        "shipping": [StubUpstream("shipping")],
        "support": [StubUpstream("support")],
    }
    yield stubs
    for group in stubs.values():
        for stub in group:
            stub.stop()


@pytest.fixture
def refused_address() -> str:
    """A loopback address where nothing listens: connections to it are refused."""
    return f"127.0.0.1:{free_port()}"


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    """A DNS server on 127.0.0.1 with no records yet."""
    server = DnsServer()
    yield server
    server.stop()


@pytest.fixture
def nginx_bin() -> str:
    if NGINX is None:
        pytest.fail("nginx is not installed (make deps-system installs it)")
    return NGINX


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A fresh run directory under the system temp dir (reachable by NGINX's worker user)."""
    path = Path(tempfile.mkdtemp(prefix="fleet-gateway-"))
    path.chmod(0o711)  # mkdtemp makes it private; NGINX workers running as nobody must pass
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start_gateway(
    nginx_bin: str, upstream_stubs: dict[str, list[StubUpstream]]
) -> Iterator[StartGateway]:
    """Start NGINX rendered from the template; by default in front of ``upstream_stubs``."""
    started: list[Gateway] = []
    run_dirs: list[Path] = []

    def start(
        upstreams: Mapping[str, Sequence[str]] | None = None,
        *,
        rate: str = "1000r/s",
        burst: int = 1000,
        read_timeout: str = READ_TIMEOUT,
        trusted_proxies: str | Sequence[str] = (),
        resolver: str = "",
        resolver_valid: str | None = None,
    ) -> Gateway:
        if upstreams is None:
            upstreams = {name: [s.address for s in group] for name, group in upstream_stubs.items()}
        last_error: Exception | None = None
        for _attempt in range(3):  # the free port may be taken between asking and binding
            run = Path(tempfile.mkdtemp(prefix="fleet-gateway-"))
            run_dirs.append(run)
            port = free_port()
            # Names are looked up as written: no search domain of this machine's resolv.conf.
            values = gw.local_values(run, f"127.0.0.1:{port}", upstreams, rate=rate, burst=burst,
                                     read_timeout=read_timeout, trusted_proxies=trusted_proxies,
                                     resolver=resolver, resolver_valid=resolver_valid,
                                     resolv_conf=run / "no-resolv.conf")
            conf = write_config(run, values)
            check = subprocess.run(nginx_command(run, conf, "-t", "-q"), capture_output=True,
                                   timeout=30, check=False)
            assert check.returncode == 0, check.stderr.decode()
            with open(run / "nginx.stderr", "wb") as stderr:
                process = subprocess.Popen(
                    nginx_command(run, conf), stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
                )
            gateway = Gateway(port, run, values, process, upstream_stubs)
            started.append(gateway)
            try:
                wait_until_listening(process, port, run)
            except RuntimeError as exc:
                gateway.stop()
                last_error = exc
                if "Address already in use" in str(exc):
                    continue
                raise
            return gateway
        raise RuntimeError(f"could not start nginx: {last_error}")

    yield start
    for gateway in started:
        gateway.stop()
    for run in run_dirs:
        shutil.rmtree(run, ignore_errors=True)


@pytest.fixture
def gateway(
    start_gateway: StartGateway,
    upstream_stubs: dict[str, list[StubUpstream]],
    refused_address: str,
) -> Gateway:
    """NGINX in front of the stubs; support's second server refuses connections."""
    upstreams = {name: [s.address for s in group] for name, group in upstream_stubs.items()}
    upstreams["support"] = [*upstreams["support"], refused_address]
    return start_gateway(upstreams)
