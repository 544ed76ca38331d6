"""Prometheus metrics at /metrics: requests, resets, mail, throttling, breached-password checks and the outbox.

Under gunicorn, set PROMETHEUS_MULTIPROC_DIR (gunicorn.conf.py does) so that every worker's
counts add up in one scrape.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from flask import Flask, Response, abort, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    make_wsgi_app,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector


class ServiceMetrics:
    """The counters of one app; registered in a registry of its own, not the global one."""

    def __init__(self) -> None:
        self.requests = Counter(
            "resetdesk_http_requests", "Requests answered, by endpoint and status.",
            ["endpoint", "method", "status"], registry=None,
        )
        self.latency = Histogram(
            "resetdesk_http_request_duration_seconds", "Time to answer, by endpoint.", ["endpoint"],
            registry=None, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.resets = Counter(
            "resetdesk_resets_requested", "Resets asked for, by method and by whom.", ["method", "requested_by"],
            registry=None,
        )
        self.mail = Counter(
            "resetdesk_outbox_deliveries", "Delivery attempts, by kind and outcome (sent, retried, failed).",
            ["kind", "outcome"], registry=None,
        )
        self.throttled = Counter(
            "resetdesk_sign_ins_throttled", "Sign-in attempts refused by the throttle.", registry=None
        )
        self.pwned_checks = Counter(
            "resetdesk_pwned_password_checks",
            "New passwords checked against the breached-password range API, by outcome (breached, "
            "not_breached; timeout, unreachable and bad_answer let the password through).",
            ["outcome"], registry=None,
        )

        # Each (metric, labels) child, looked up once: `labels()` checks and locks on every call.
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}

    def all(self) -> list[Collector]:
        return [self.requests, self.latency, self.resets, self.mail, self.throttled, self.pwned_checks]

    def child(self, metric: str, labels: tuple[str, ...] = ()) -> Any:
        """The metric (an attribute's name) for these label values, ready to `inc` or `observe`."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            collector = getattr(self, metric)
            # Two threads may both get here; labels() hands both the same child.
            found = self._children[key] = collector.labels(*labels) if labels else collector
        return found


def reader_allowed(app_env: str, token: str, authorization: str) -> bool:
    """Open on a laptop and under tests; in production, a `Bearer METRICS_TOKEN` is required
    (and without a token set, nobody may read them over HTTP). Set, the token is always required."""
    if app_env != "production" and not token:
        return True
    scheme, _, presented = authorization.partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(presented.strip(), token)


def metrics_reader_allowed(app_env: str, token: str) -> bool:
    """Whether this request may read /metrics (see `reader_allowed`)."""
    return reader_allowed(app_env, token, request.headers.get("Authorization", ""))


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def guarded_metrics_app(registry: CollectorRegistry, *, app_env: str, token: str) -> WsgiApp:
    """A WSGI app serving the registry to readers `reader_allowed` lets in, 404 to anyone else."""
    metrics_app = make_wsgi_app(registry)

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not reader_allowed(app_env, token, environ.get("HTTP_AUTHORIZATION", "")):
            start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
            return [b"Not Found\n"]
        return metrics_app(environ, start_response)  # type: ignore[no-any-return]

    return guarded


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes every few seconds: not worth a line
        pass


def serve_worker_metrics(app: Flask, port: int, host: str = "127.0.0.1") -> WSGIServer | None:
    """Serve this process's metrics on their own port (an outbox worker has no web routes), on
    loopback unless told otherwise, and to METRICS_TOKEN holders as /metrics is."""
    registry = app.extensions.get("resetdesk.metrics_registry")
    if registry is None or not port:
        return None
    guarded = guarded_metrics_app(registry, app_env=app.config["APP_ENV"], token=app.config["METRICS_TOKEN"])
    server = make_server(host, port, guarded, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
    return server


def register_metrics(app: Flask) -> None:
    """Count every request and serve /metrics."""
    if not app.config["METRICS_ENABLED"]:
        return
    metrics = ServiceMetrics()
    app.extensions["resetdesk.metrics"] = metrics
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        for collector in metrics.all():
            registry.register(collector)
    app.extensions["resetdesk.metrics_registry"] = registry

    @app.before_request
    def start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def observe(response: Response) -> Response:
        endpoint = request.endpoint or "unmatched"
        metrics.child("requests", (endpoint, request.method, str(response.status_code))).inc()
        if "request_started" in g:
            metrics.child("latency", (endpoint,)).observe(time.perf_counter() - g.request_started)
        return response

    @app.get("/metrics")
    def serve_metrics() -> Response:
        # The outbox gauges move when a reset is issued, so whoever can read them can tell an
        # existing username from a missing one: in production only a holder of METRICS_TOKEN can.
        if not metrics_reader_allowed(app.config["APP_ENV"], app.config["METRICS_TOKEN"]):
            abort(404)
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
