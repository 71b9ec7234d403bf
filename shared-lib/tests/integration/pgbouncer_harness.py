"""A real PgBouncer in transaction pooling mode in front of the tests' PostgreSQL, started from
a configuration of its own on a free loopback port (a module name of its own: test directories
without __init__.py share one import namespace)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from fleet_tools.testing import PG_ADMIN_URL

START_TIMEOUT = 10.0


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/local/bin/pgbouncer") if os.path.exists(p)),
        None)
    if found is None:
        pytest.fail("pgbouncer is not installed: `make deps-system` (apt-get install pgbouncer)")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass(frozen=True)
class Bouncer:
    port: int
    log: Path

    def url(self, database_url: str) -> str:
        """The same database, user and password, through this PgBouncer."""
        parts = urlsplit(database_url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials \
            else f"127.0.0.1:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@contextmanager
def running_pgbouncer(pool_size: int = 2, ignore_startup_parameters: str = ""
                      ) -> Iterator[Bouncer]:
    """PgBouncer as the charts run it (``pool_mode = transaction``), with `pool_size` server
    connections per database and user: fewer than the clients, so consecutive transactions of
    one client meet different server connections, and one server connection serves several
    clients. `ignore_startup_parameters` can reproduce a misconfiguration."""
    upstream = urlsplit(PG_ADMIN_URL)
    user = upstream.username or "postgres"
    directory = Path(tempfile.mkdtemp(prefix="fleet-pgbouncer-"))
    directory.chmod(0o755)  # PgBouncer drops root for `nobody`, who must read its config
    port = free_port()
    (directory / "userlist.txt").write_text(f'"{user}" ""\n')
    (directory / "pgbouncer.ini").write_text(f"""\
[databases]
* = host={upstream.hostname or "127.0.0.1"} port={upstream.port or 5432}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
pool_mode = transaction
auth_type = trust
auth_file = {directory / "userlist.txt"}
default_pool_size = {pool_size}
max_client_conn = 500
ignore_startup_parameters = {ignore_startup_parameters}
""")
    for path in directory.iterdir():
        path.chmod(0o644)
    log = directory / "pgbouncer.log"
    argv = [pgbouncer_binary()]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]  # it refuses to run as root
    argv.append(str(directory / "pgbouncer.ini"))
    with open(log, "wb") as output:
        process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    bouncer = Bouncer(port, log)
    try:
        _wait_until_ready(process, bouncer)
        yield bouncer
    finally:
        process.send_signal(signal.SIGINT)  # shut down, closing every connection
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        shutil.rmtree(directory, ignore_errors=True)


def _wait_until_ready(process: subprocess.Popen[bytes], bouncer: Bouncer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    probe = bouncer.url(PG_ADMIN_URL)
    while True:
        if process.poll() is not None:
            pytest.fail(f"pgbouncer exited with status {process.returncode}: "
                        f"{bouncer.log.read_text(errors='replace').strip()}")
        try:
            with psycopg.connect(probe, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                pytest.fail(f"pgbouncer did not accept connections within {START_TIMEOUT}s: "
                            f"{bouncer.log.read_text(errors='replace').strip()}")
            time.sleep(0.05)
