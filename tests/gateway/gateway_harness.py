"""Test harness for the gateway: stub upstream servers, a tiny HTTP client, a running NGINX.

Imported by conftest.py (fixtures) and the test modules (types and helpers). The module name
is unique on purpose: test directories without __init__.py share one import namespace.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

from fleet_tools import gateway as gw

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)

# The test gateway waits 1 s for an upstream, so timeouts are quick to provoke.
READ_TIMEOUT = "1s"


#: Entries of GATEWAY_TRUSTED_PROXIES: accepted, and refused (with why). test_gateway_render.py
#: checks them with the Python renderer, test_gateway_config.py with the image's entrypoint.
VALID_PROXIES = [
    "10.244.0.0/16", "10.0.0.1", "0.0.0.0/0", "255.255.255.254/32", "::ffff:255.255.255.255",
    "10.0.0.1/8",  # host bits after the prefix: NGINX ignores them (with a warning)
    "::", "::/0", "::1", "fd00::/8", "FD00:10:244::/56", "1:2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7::", "::1:2:3:4:5:6:7", "::ffff:192.0.2.1", "::ffff:192.0.2.0/120",
    "1:2:3:4:5:6:192.0.2.1", "2001:db8::/128",
]
INVALID_PROXIES = [
    "10.0.0.0/33",  # prefix too long for IPv4
    "fd00::/129",  # ... and for IPv6
    "10.0.0.0/",  # no prefix after the slash
    "10.0.0.0/08",  # leading zero in the prefix
    "10.0.0.0/8/8",
    "10.0.0.0/255.0.0.0",  # a netmask: ipaddress takes it, NGINX does not
    "10.0.0", "1.2.3.4.5", "256.1.1.1",
    "255.255.255.255", "255.255.255.255/32",  # INADDR_NONE: NGINX's parser takes it for an error
    "010.0.0.1",  # leading zero: octal to some parsers
    "fe80::1%eth0",  # a zone
    "1:2:3:4:5:6:7:8:9", "1::2::3", ":::", ":1::", "1::2:", "12345::",
    "1:2:3:4:5:6:7:192.0.2.1", "::ffff:192.0.2.256", "1.2.3.4::",
    "ingress-nginx", "localhost",  # host names: NGINX would look them up at every start
    "10.0.0.0/8;", "unix:",
]


#: <SVC>_SERVERS values, accepted: (value, what the route's location passes to: the upstream
#: block's name, the name looked up, or "" for not routed), and refused: (value, the detail
#: after "<SETTING> is invalid: "). test_gateway_render.py checks them with the Python renderer,
#: test_gateway_config.py with the image's entrypoint, word for word.
VALID_SERVERS = [
    ("server 127.0.0.1:8111 max_fails=1 fail_timeout=2s; server [::1]:8112 backup;", "inventory"),
    ("server unix:/run/api.sock;", "inventory"),
    ("server 10.0.0.1", "inventory"),  # the last ";" may be left out
    ("  server   inventory-api:8000  ;  ", "inventory-api:8000"),
    ("server inventory-api", "inventory-api"),
    ("server api.fleet.svc.cluster.local.:8000;", "api.fleet.svc.cluster.local.:8000"),
    ("", ""),
    (" ; ;", ""),
]
INVALID_SERVERS = [
    ("inventory-api:8000;",
     "'inventory-api:8000' is not a server line (server ADDRESS [PARAMETER...])"),
    ("server;", "'server' is not a server line (server ADDRESS [PARAMETER...])"),
    ("upstream x { server 10.0.0.1:80; }",
     "'upstream x { server 10.0.0.1:80' is not a server line (server ADDRESS [PARAMETER...])"),
    ("server 10.0.0.1:80 weight={2};", "'weight={2}' is not a server parameter"),
    ("server 10.0.0.1:99999;", "'10.0.0.1:99999' is not an IP address, unix socket or host name "
     "with an optional port"),
    ("server 10.0.0.1:08000;", "'10.0.0.1:08000' is not an IP address, unix socket or host name "
     "with an optional port"),
    ("server ::1:8000;", "'::1:8000' is not an IP address, unix socket or host name with an "
     "optional port"),
    ("server [::1:8000;", "'[::1:8000' is not an IP address, unix socket or host name with an "
     "optional port"),
    ("server [10.0.0.1]:80;", "'[10.0.0.1]:80' is not an IP address, unix socket or host name "
     "with an optional port"),
    ("server 256.1.1.1:80;", "'256.1.1.1:80' is not an IP address, unix socket or host name "
     "with an optional port"),
    ("server inventory_api:80;", "'inventory_api:80' is not an IP address, unix socket or host "
     "name with an optional port"),
    ("server -api:80;", "'-api:80' is not an IP address, unix socket or host name with an "
     "optional port"),
    ("server unix:;", "'unix:' is not an IP address, unix socket or host name with an optional "
     "port"),
    ("server a.example:80; server b.example:80;", "'a.example:80' is a host name, so it must be "
     "the only server, without parameters (NGINX looks it up while serving)"),
    ("server 10.0.0.1:80; server api:80;", "'api:80' is a host name, so it must be the only "
     "server, without parameters (NGINX looks it up while serving)"),
    ("server api:80 max_fails=1;", "'api:80' is a host name, so it must be the only server, "
     "without parameters (NGINX looks it up while serving)"),
]

#: GATEWAY_SERVICES values, accepted (with the services they name, in order) and refused (with
#: the detail after "GATEWAY_SERVICES is invalid: "). test_gateway_render.py checks them with
#: the Python renderer, test_gateway_config.py with the image's entrypoint, word for word.
VALID_SERVICES = [
    ("inventory shipping support", ("inventory", "shipping", "support")),
    ("inventory,shipping,support,billing", ("inventory", "shipping", "support", "billing")),
    (" billing ,\tinventory\n", ("billing", "inventory")),
    ("support,,inventory, ,", ("support", "inventory")),
    ("v2 a1b2", ("v2", "a1b2")),
    ("b" * 63, ("b" * 63,)),  # the longest name: a DNS label
]
_NOT_A_NAME = ("is not a service name (a lower-case letter, then up to 62 lower-case letters "
               "and digits)")
INVALID_SERVICES = [
    ("inventory Billing", f"'Billing' {_NOT_A_NAME}"),
    ("in-ventory", f"'in-ventory' {_NOT_A_NAME}"),  # <SERVICE>_SERVERS could not be named
    ("in_ventory", f"'in_ventory' {_NOT_A_NAME}"),
    ("2fa", f"'2fa' {_NOT_A_NAME}"),
    ("b" * 64, f"'{'b' * 64}' {_NOT_A_NAME}"),
    ("billing;", f"'billing;' {_NOT_A_NAME}"),
    ("inventory/v1", f"'inventory/v1' {_NOT_A_NAME}"),
    ("bill*", f"'bill*' {_NOT_A_NAME}"),  # no globbing either
    ("a\\tb", f"'a\\tb' {_NOT_A_NAME}"),  # a backslash is printed as it is
    ("caf\u00e9", f"'caf\u00e9' {_NOT_A_NAME}"),
    ("inventory shipping\r", f"'shipping\r' {_NOT_A_NAME}"),  # an env file with CRLF
    ("inventory shipping inventory", "'inventory' is listed twice"),
    ("inventory docs", "'docs' is reserved (the gateway serves its API docs at /docs)"),
    (" , ", "it names no service"),
]

#: GATEWAY_RESOLVER values, accepted (with the resolver directive's addresses) and refused.
VALID_RESOLVERS = [
    ("10.96.0.10", "10.96.0.10"),
    ("127.0.0.1:5353", "127.0.0.1:5353"),
    ("fd00::10", "[fd00::10]"),
    ("[fd00::10]:53, 10.0.0.1\t[::1]", "[fd00::10]:53 10.0.0.1 [::1]"),
]
INVALID_RESOLVERS = ["kube-dns.kube-system.svc", "10.0.0.1:0", "10.0.0.1:65536", "[10.0.0.1]",
                     "fe80::1%eth0", "[::1]53", "10.0.0.1:", ":53", "10.0.0.256"]
#: GATEWAY_RESOLVER_VALID values: NGINX's valid= takes whole seconds, minutes or hours.
INVALID_RESOLVER_VALID = ["0s", "10ms", "s", "1.5s", "10 s", "-1s", "10sec"]

#: A pod's /etc/resolv.conf (dnsPolicy ClusterFirst, namespace "fleet").
KUBERNETES_RESOLV_CONF = """search fleet.svc.cluster.local svc.cluster.local cluster.local
nameserver 10.96.0.10
options ndots:5
"""


def routes(values: Mapping[str, str]) -> dict[str, str]:
    """The routes' map of template values (GATEWAY_ROUTES): service -> what its route passes to
    (the upstream block's name or the host:port looked up), in order; a service that is not
    routed has no entry."""
    lines = [line.strip() for line in values["GATEWAY_ROUTES"].split("\n") if line.strip()]
    assert all(line.endswith(";") and len(line.split()) == 2 for line in lines), lines
    return dict(line.removesuffix(";").split() for line in lines)


def rendered_routes(rendered: str) -> dict[str, str]:
    """The routes' map of a rendered file, as ``routes`` gives it."""
    match = re.search(r"^\s*map \$fleet_service \$fleet_upstream \{\n(.*?)\n\s*\}", rendered,
                      re.M | re.S)
    assert match, "no routes' map in the rendered file"
    lines = [line.strip() for line in match.group(1).split("\n")]
    assert lines[0] == 'default "";'
    return routes({"GATEWAY_ROUTES": "\n".join(lines[1:])})


def real_ip_from(rendered: str) -> list[str]:
    """The addresses of the ``set_real_ip_from`` directives in a rendered file."""
    tokens = re.sub(r"#[^\n]*", "", rendered).replace(";", " ; ").split()
    return [tokens[i + 1] for i, token in enumerate(tokens) if token == "set_real_ip_from"]


def free_port() -> int:
    """A loopback port nothing listens on (at the time of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- HTTP client --------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header_values(self, name: str) -> list[str]:
        return self.headers.get_all(name) or []

    def header(self, name: str) -> str:
        """The one value of a header that must appear exactly once."""
        values = self.header_values(name)
        assert len(values) == 1, f"{name}: expected exactly one, got {values}"
        return values[0]


def http_request(
    port: int,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: Sequence[tuple[str, str]] = (),
    timeout: float = 10.0,
    source_address: tuple[str, int] | None = None,
) -> Response:
    """One request on a fresh connection, the path sent exactly as given."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                      source_address=source_address)
    try:
        skip_host = any(name.lower() == "host" for name, _ in headers)
        conn.putrequest(method, path, skip_host=skip_host, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return Response(resp.status, resp.msg, resp.read())
    finally:
        conn.close()


def assert_problem(response: Response, status: int) -> dict[str, Any]:
    """``response`` is an RFC 9457 problem document with this status, as the gateway makes them."""
    assert response.status == status, response.body
    assert response.header("Content-Type") == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert set(problem) == {"type", "title", "status", "detail"}
    assert problem["status"] == status
    assert str(problem["type"]).startswith("https://fleet.example/problems/")
    return problem


# --- stub upstreams -----------------------------------------------------------------------


@dataclass
class Recorded:
    """One request as an upstream saw it."""

    method: str
    path: str
    version: str
    headers: Message
    body: bytes
    peer_port: int

    def header_values(self, name: str) -> list[str]:
        return self.headers.get_all(name) or []


@dataclass
class Behaviour:
    """What a stub does with the next requests; change it from the test at any time."""

    status: int = 200
    delay: float = 0.0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None
    # Methods for which the stub reads the request and then closes the connection unanswered.
    drop_methods: frozenset[str] = frozenset()


class StubUpstream:
    """An HTTP/1.1 server recording requests; answers JSON by default.

    It listens on ``host`` (127.0.0.1; any 127.x.y.z is this machine) and ``port`` (by default
    one the system picks), so two stubs can share a port on two addresses, as a name that moves
    from one address to another does.
    """

    def __init__(self, name: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.name = name
        self.behaviour = Behaviour()
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server = _StubServer((host, port), _StubHandler)
        self._server.stub = self
        self.host = host
        self.port: int = self._server.server_address[1]
        self.address = f"{host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"stub-{name}", daemon=True,
        )
        self._thread.start()
        self.running = True

    def record(self, recorded: Recorded) -> None:
        with self._lock:
            self.requests.append(recorded)

    def requests_for(self, method: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.method == method]

    def stop(self) -> None:
        """Stop listening and cut every open connection: the server is down."""
        if not self.running:
            return
        self.running = False
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)

    def __repr__(self) -> str:
        return f"StubUpstream({self.name}, {self.address})"


class _StubServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    stub: StubUpstream

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a connection NGINX gave up on is expected in these tests


class _StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _StubServer
    timeout = 10

    def setup(self) -> None:
        super().setup()
        stub = self.server.stub
        with stub._lock:
            stub._connections.add(self.connection)

    def finish(self) -> None:
        stub = self.server.stub
        with stub._lock:
            stub._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        stub = self.server.stub
        behaviour = stub.behaviour
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        stub.record(Recorded(self.command, self.path, self.request_version, self.headers, body,
                             self.client_address[1]))
        if self.command in behaviour.drop_methods:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if behaviour.delay and stub._stopping.wait(behaviour.delay):
            self.close_connection = True
            return
        payload = behaviour.body
        if payload is None:
            payload = json.dumps(
                {"server": stub.name, "method": self.command, "path": self.path}
            ).encode()
        try:
            self.send_response(behaviour.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in behaviour.headers:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except OSError:
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


# --- the gateway --------------------------------------------------------------------------


@dataclass
class Gateway:
    """A running NGINX rendered from the template."""

    port: int
    run_dir: Path
    values: dict[str, str]
    process: subprocess.Popen[bytes]
    stubs: dict[str, list[StubUpstream]]

    @property
    def access_log(self) -> Path:
        return Path(self.values["GATEWAY_ACCESS_LOG"])

    @property
    def error_log(self) -> Path:
        return Path(self.values["GATEWAY_ERROR_LOG"])

    def request(self, method: str, path: str, **kwargs: Any) -> Response:
        return http_request(self.port, method, path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.request("GET", path, **kwargs)

    def access_entries(self) -> list[dict[str, Any]]:
        lines = self.access_log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def wait_for_access_entry(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        """The first access-log entry matching ``predicate`` (NGINX logs after responding)."""
        deadline = time.monotonic() + timeout
        while True:
            for entry in self.access_entries():
                if predicate(entry):
                    return entry
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching access-log entry in {self.access_entries()}")
            time.sleep(0.02)

    def stop(self) -> None:
        _stop_process(self.process)


class StartGateway(Protocol):
    def __call__(
        self,
        upstreams: Mapping[str, Sequence[str]] | None = None,
        *,
        rate: str = ...,
        burst: int = ...,
        read_timeout: str = ...,
        trusted_proxies: str | Sequence[str] = ...,
        resolver: str = ...,
        resolver_valid: str | None = ...,
    ) -> Gateway: ...


# --- the image's entrypoint -----------------------------------------------------------------

ENTRYPOINT = gw.TEMPLATE_PATH.parent / "entrypoint.sh"
#: Shells to run the entrypoint with: the image's (BusyBox ash on Alpine) and Debian's (dash).
SHELLS = {"busybox-ash": ["busybox", "ash"], "dash": ["sh"]}


def entrypoint_script(resolv_conf: Path | None = None) -> str:
    """The entrypoint, reading the repository's template (and ``resolv_conf`` in place of
    /etc/resolv.conf when given)."""
    script = ENTRYPOINT.read_text().replace("/etc/nginx/fleet/nginx.conf.template",
                                            str(gw.TEMPLATE_PATH))
    if resolv_conf is not None:
        script = script.replace("resolv_conf=/etc/resolv.conf", f"resolv_conf={resolv_conf}")
    return script


def entrypoint_argv(tmp: Path, *args: str, shell: Sequence[str] = ("sh",),
                    resolv_conf: Path | None = None) -> list[str]:
    """The command that runs the entrypoint (written to ``tmp``) with ``shell``."""
    path = tmp / "fleet-gateway"
    path.write_text(entrypoint_script(resolv_conf))
    return [*shell, str(path), *args]


def entrypoint_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` and a PATH that finds nginx and envsubst, nothing else from this process."""
    return {"PATH": f"{Path(NGINX or 'nginx').parent}:/usr/local/bin:/usr/bin:/bin", **env}


def run_entrypoint(tmp: Path, env: Mapping[str, str], *args: str,
                   shell: Sequence[str] = ("sh",),
                   resolv_conf: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The entrypoint's run, its output decoded as it is (text=True would turn a carriage
    return in a refused setting into a newline)."""
    result = subprocess.run(entrypoint_argv(tmp, *args, shell=shell, resolv_conf=resolv_conf),
                            env=entrypoint_env(env), capture_output=True, timeout=30,
                            check=False)
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(),
                                       result.stderr.decode())


def nginx_command(run_dir: Path, conf: Path, *extra: str) -> list[str]:
    assert NGINX is not None
    command: list[str] = gw.nginx_command(run_dir, conf, *extra, nginx=NGINX)
    return command


def write_config(run_dir: Path, values: Mapping[str, str]) -> Path:
    conf: Path = gw.write_config(run_dir, values)
    return conf


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()  # SIGTERM: NGINX's fast shutdown, master takes its workers with it
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its own session, started below
        process.wait(timeout=10)


def wait_until_listening(process: subprocess.Popen[bytes], port: int, run_dir: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"nginx exited with {process.returncode}: "
                + (run_dir / "nginx.stderr").read_text(errors="replace")
                + (run_dir / "error.log").read_text(errors="replace")
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if (run_dir / "nginx.pid").exists():
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError("nginx did not start listening within 10 s")


