"""gunicorn settings for resetdesk: `gunicorn wsgi:app` started in this directory picks this file
up by itself (elsewhere: `-c path/to/gunicorn.conf.py`).

Every value can be overridden by an environment variable of the same meaning.
"""

import multiprocessing
import os
import shutil
import tempfile

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# Hashing a password is CPU work (argon2id, ~30 ms): one sync worker per core, plus one.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() + 1))
worker_class = "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# On SIGTERM, workers get this long to finish their requests (and the mail in flight).
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
max_requests = 10000
max_requests_jitter = 1000
# gunicorn's control socket (for `gunicornc`) is not used here; left on, it tries to make
# $HOME/.gunicorn as the image's home-less user and logs an ERROR at every start.
control_socket_disable = True
# gunicorn's own limit on the request line, at its highest: up to it an address too long gets
# the service's answer (a 414 in problem+json, or a page), past it gunicorn's plain page.
limit_request_line = 8190
accesslog = "-"
errorlog = "-"
# JSON access lines with the path's reset tokens replaced and no query string (see the class).
logger_class = "service.platform.accesslog.JsonAccessLogger"

# Metrics from every worker add up in one scrape when they share a directory.
_own_metrics_dir = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _own_metrics_dir = tempfile.mkdtemp(prefix="resetdesk-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _own_metrics_dir


def on_exit(server):
    """Remove the metrics directory this file made (one given from outside is left alone)."""
    if _own_metrics_dir:
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)


def worker_exit(server, worker):
    """Let the worker's inline mail dispatcher finish the message it is sending."""
    app = getattr(worker, "wsgi", None)
    dispatcher = getattr(app, "extensions", {}).get("resetdesk.dispatcher") if app else None
    if dispatcher is not None:
        dispatcher.stop(wait_seconds=graceful_timeout)


def child_exit(server, worker):
    """Forget a dead worker's live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
