"""A supervisor over stand-in processes, run as a script by the supervisor tests.

``python fleetctl_fake_fleet.py '<json plan>'``: the plan names each process, its port and,
optionally, its kind (``api`` unless said) and an exit status it fails with at once. Every
process belongs to the service ``fake``. Each stand-in serves 200 on every GET
(its probe) and exits 0 on SIGTERM, like the real api and worker.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

from fleet_tools.config import LocalConfig
from fleet_tools.plan import ProcessSpec
from fleet_tools.supervisor import Supervisor

STAND_IN = r"""
import http.server, signal, sys, threading
if len(sys.argv) > 2:
    print("configuration error: SOMETHING is required but not set", flush=True)
    raise SystemExit(int(sys.argv[2]))
class Probe(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Probe)
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
print("serving", flush=True)
server.serve_forever()
print("stopped", flush=True)
"""


def spec(config: LocalConfig, name: str, kind: str, port: int, fail: int | None) -> ProcessSpec:
    argv = [sys.executable, "-c", STAND_IN, str(port)] + ([str(fail)] if fail else [])
    return ProcessSpec(name=name, kind=kind, service=None if kind == "gateway" else "fake",
                       argv=argv, env={"PATH": "/usr/bin:/bin"}, port=port,
                       ready_url=f"http://127.0.0.1:{port}/readyz",
                       log_path=config.logs_dir / f"{name}.log", stop_signal=signal.SIGTERM,
                       stop_timeout=5.0, dirs=(config.run_dir / "metrics" / name,))


def main() -> None:
    plan = json.loads(sys.argv[1])
    config = LocalConfig.from_env()
    services = [spec(config, p["name"], p.get("kind", "api"), p["port"], p.get("fail"))
                for p in plan["processes"]]
    gateway = spec(config, "gateway", "gateway", plan["gateway"], None)
    Path(config.run_dir).mkdir(parents=True, exist_ok=True)
    raise SystemExit(Supervisor(config, services, gateway).run())


if __name__ == "__main__":
    main()
