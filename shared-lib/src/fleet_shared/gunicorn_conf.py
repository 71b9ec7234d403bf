"""gunicorn settings for every service api, read from the same environment as the app."""

from __future__ import annotations

import glob
import os
from typing import Any

from gunicorn import glogging
from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

from fleet_shared.logs import JsonFormatter

bind = f"{os.environ.get('BIND_HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread" if threads > 1 else "sync"
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "20"))
timeout = 30
# Longer than the gateway's upstream keepalive, so the gateway closes idle connections first.
keepalive = 75
accesslog = None  # the gateway writes the access log; the app logs writes
# The gateway bounds request lines (large_client_header_buffers, 8 KiB) and answers a longer one
# with a 414 problem document; gunicorn's own limit (4094) would refuse some it lets through,
# with an HTML page. Clients reach the apis only through the gateway.
limit_request_line = 0
# gunicorn 27's runtime control socket would be written under $HOME, which is read-only (or
# absent) in the container; the fleet manages processes with signals.
control_socket_disable = True
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None


class JsonLogger(glogging.Logger):
    """gunicorn's own messages as JSON lines, like the app's. (A logconfig_dict would do the
    same but also switch on gunicorn's access log, formatted on every request.)"""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        formatter = JsonFormatter(os.environ.get("FLEET_SERVICE", "fleet"), "gunicorn")
        for handler in self.error_log.handlers:
            handler.setFormatter(formatter)


logger_class = JsonLogger


def on_starting(server: Any) -> None:
    # Metrics files of a previous run would be summed into this one's. Only prometheus_client's
    # own files are removed: the directory may be shared (/dev/shm) with other programs.
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        for stale in glob.glob(os.path.join(directory, "*.db")):
            os.remove(stale)


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        GunicornInternalPrometheusMetrics.mark_process_dead_on_child_exit(worker.pid)


def worker_exit(server: Any, worker: Any) -> None:
    """A gracefully stopping worker flushes its buffered request metrics first."""
    extensions = getattr(getattr(worker, "wsgi", None), "extensions", {})
    metrics = extensions.get("fleet.metrics")
    if metrics is not None:
        metrics.flush()
