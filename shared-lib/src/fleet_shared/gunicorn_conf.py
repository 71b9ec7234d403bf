"""gunicorn settings for every service api, read from the same environment as the app.

The master loads `ProcessSettings`, the part of every service's model that says how a
process runs (listen address, workers, threads, graceful timeout): the same defaults, the same
``<NAME>_FILE`` files and the same one-line error as the app. Not the service's whole model:
this module serves every service and knows none of their subclasses, and the master only binds
the socket and forks, so it has no use for the database URL or the JWT keys. The whole model is
loaded by ``<svc> api`` before it starts gunicorn, and again by each worker as it builds the app.
"""

from __future__ import annotations

import glob
import importlib
import os
from typing import Any

from gunicorn import glogging
from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

from fleet_shared.logs import JsonFormatter
from fleet_shared.settings import ConfigError, ProcessSettings, exit_on_config_error

try:
    _settings = ProcessSettings.load()
except ConfigError as error:
    # SystemExit passes through gunicorn's config loader, which would print a traceback for
    # any other exception.
    exit_on_config_error(error)

bind = f"{_settings.bind_host}:{_settings.port}"
workers = _settings.web_concurrency
threads = _settings.gunicorn_threads
worker_class = "gthread" if threads > 1 else "sync"
graceful_timeout = _settings.graceful_timeout
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
        # `<svc> api` names the process after the service (--name); without a name gunicorn
        # uses the app ("inventory.app:create_app()"), which starts with it too.
        service = str(cfg.proc_name).partition(".")[0]
        formatter = JsonFormatter(service, "gunicorn")
        for handler in self.error_log.handlers:
            handler.setFormatter(formatter)


logger_class = JsonLogger


def on_starting(server: Any) -> None:
    # Metrics files of a previous run would be summed into this one's. Only prometheus_client's
    # own files are removed: the directory may be shared (/dev/shm) with other programs.
    directory = _settings.prometheus_multiproc_dir
    if directory:
        os.makedirs(directory, exist_ok=True)
        for stale in glob.glob(os.path.join(directory, "*.db")):
            os.remove(stale)
    import_app_module(server.app.app_uri)


def import_app_module(app_uri: str | None) -> None:
    """Import the app's module (and so Flask, SQLAlchemy, the service's code) in the master,
    once, before it forks: each worker then only builds the app (`create_app()`: settings,
    pools, routes) instead of importing everything again, and the workers share the imported
    code's memory pages with the master. The app itself is not built here (no `preload_app`):
    its pools and threads must belong to the worker that uses them."""
    if app_uri:
        importlib.import_module(app_uri.partition(":")[0])


def child_exit(server: Any, worker: Any) -> None:
    if _settings.prometheus_multiproc_dir:
        GunicornInternalPrometheusMetrics.mark_process_dead_on_child_exit(worker.pid)


def worker_exit(server: Any, worker: Any) -> None:
    """A gracefully stopping worker flushes its buffered request metrics first."""
    extensions = getattr(getattr(worker, "wsgi", None), "extensions", {})
    metrics = extensions.get("fleet.metrics")
    if metrics is not None:
        metrics.flush()
