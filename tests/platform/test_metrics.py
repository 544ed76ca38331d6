"""Prometheus metrics at /metrics: requests by endpoint and status, resets, deliveries, throttled
sign-ins, and the outbox's depth and oldest message; summed over gunicorn's workers; off with
METRICS_ENABLED=false."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from service import create_app
from service.models import Account
from service.outbox.mail import RenderedEmail
from service.outbox.queue import queue_email
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.platform.metrics import ServiceMetrics
from tests.conftest import OTHER_STRONG_PASSWORD, PRODUCTION_SERVICES, SmtpSink, run_dispatcher, smtp_settings
from tests.conftest import test_settings as settings_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

MAX_FAILURES = 2
PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture
def app_settings(smtp: SmtpSink, request: pytest.FixtureRequest) -> dict[str, Any]:
    return {**smtp_settings(smtp), "LOGIN_MAX_FAILURES": MAX_FAILURES, **getattr(request, "param", {})}


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text page, by name and labels."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def scrape(client: FlaskClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return parse(response.get_data(as_text=True))


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def ask_reset(client: FlaskClient, username: str = "jane") -> None:
    assert client.post("/api/v1/password-resets", json={"username": username}).status_code == 202


def queue_mail(app: Flask, how_many: int, *, age: timedelta) -> None:
    with app.app_context():
        created = utcnow() - age
        for number in range(how_many):
            email = RenderedEmail(subject=f"Note {number}", text_body="Hello.\n", html_body=None)
            queue_email(db.session, f"c{number}@example.com", email, account_id=None, now=created)
        db.session.commit()


def test_requests_are_counted_by_endpoint_method_and_status(client: FlaskClient) -> None:
    client.get("/healthz")
    client.get("/healthz")
    client.get("/no-such-page")
    client.delete("/healthz")
    samples = scrape(client)
    assert value(samples, "resetdesk_http_requests_total", endpoint="health.healthz", method="GET", status="200") == 2
    assert value(samples, "resetdesk_http_requests_total", endpoint="unmatched", method="GET", status="404") == 1
    # Routing failed, so no endpoint: 404s and 405s are "unmatched" rather than one label per path.
    assert value(samples, "resetdesk_http_requests_total", endpoint="unmatched", method="DELETE", status="405") == 1
    assert value(samples, "resetdesk_http_request_duration_seconds_count", endpoint="health.healthz") == 2


def test_a_scrape_is_itself_counted_by_the_next_one(client: FlaskClient) -> None:
    scrape(client)
    samples = scrape(client)
    assert value(samples, "resetdesk_http_requests_total", endpoint="serve_metrics", method="GET", status="200") == 1


def test_a_self_service_reset_request_is_counted_with_its_method(client: FlaskClient) -> None:
    assert value(scrape(client), "resetdesk_resets_requested_total", method="link", requested_by="self") is None
    ask_reset(client, "jane")
    ask_reset(client, "nobody-by-this-name")  # counted alike: the count says nothing of accounts
    assert value(scrape(client), "resetdesk_resets_requested_total", method="link", requested_by="self") == 2


@pytest.mark.parametrize("app_settings", [{"RESET_METHOD": "temporary_password"}], indirect=True)
def test_the_reset_counter_names_the_configured_method(client: FlaskClient) -> None:
    ask_reset(client)
    samples = scrape(client)
    assert value(samples, "resetdesk_resets_requested_total", method="temporary_password", requested_by="self") == 1
    assert value(samples, "resetdesk_resets_requested_total", method="link", requested_by="self") is None


def test_a_delivered_email_is_counted_as_sent(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account("jane")
    ask_reset(client, "jane")
    run_dispatcher(app)
    assert len(smtp.to("jane@example.com")) == 1
    samples = scrape(client)
    assert value(samples, "resetdesk_outbox_deliveries_total", kind="email", outcome="sent") == 1
    assert value(samples, "resetdesk_outbox_deliveries_total", kind="email", outcome="retried") is None
    assert value(samples, "resetdesk_outbox_depth", status="sent") == 1
    assert value(samples, "resetdesk_outbox_depth", status="pending") == 0


def test_an_email_refused_while_smtp_is_down_is_counted_as_retried(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account("jane")
    smtp.stop()
    ask_reset(client, "jane")
    run_dispatcher(app)
    samples = scrape(client)
    assert value(samples, "resetdesk_outbox_deliveries_total", kind="email", outcome="retried") == 1
    assert value(samples, "resetdesk_outbox_deliveries_total", kind="email", outcome="sent") is None
    assert value(samples, "resetdesk_outbox_depth", status="pending") == 1


def test_throttled_sign_ins_are_counted(client: FlaskClient, client_key: dict[str, str]) -> None:
    body = {"username": "jane", "password": OTHER_STRONG_PASSWORD}
    for _ in range(MAX_FAILURES):
        assert client.post("/api/v1/auth/verify", json=body, headers=client_key).status_code == 401
    assert value(scrape(client), "resetdesk_sign_ins_throttled_total") == 0
    assert client.post("/api/v1/auth/verify", json=body, headers=client_key).status_code == 429
    assert client.post("/api/v1/auth/verify", json=body, headers=client_key).status_code == 429
    assert value(scrape(client), "resetdesk_sign_ins_throttled_total") == 2


def test_outbox_depth_and_oldest_age_reflect_queued_mail(app: Flask, client: FlaskClient) -> None:
    samples = scrape(client)
    assert value(samples, "resetdesk_outbox_depth", status="pending") == 0
    assert value(samples, "resetdesk_outbox_oldest_age_seconds") == 0

    queue_mail(app, 3, age=timedelta(minutes=5))
    samples = scrape(client)
    assert value(samples, "resetdesk_outbox_depth", status="pending") == 3
    assert 300 <= value(samples, "resetdesk_outbox_oldest_age_seconds") < 360

    run_dispatcher(app)
    samples = scrape(client)
    assert value(samples, "resetdesk_outbox_depth", status="pending") == 0
    assert value(samples, "resetdesk_outbox_depth", status="sent") == 3
    assert value(samples, "resetdesk_outbox_oldest_age_seconds") == 0


def test_each_app_counts_only_its_own_requests(client: FlaskClient, tmp_path: Path) -> None:
    client.get("/healthz")
    other = create_app(settings_for(f"sqlite:///{tmp_path / 'other.db'}"))
    with other.app_context():
        db.create_all()
    try:
        samples = scrape(other.test_client())
        assert value(samples, "resetdesk_http_requests_total", endpoint="health.healthz", method="GET", status="200") is None
    finally:
        with other.app_context():
            db.engine.dispose()


@pytest.mark.parametrize("app_settings", [{"METRICS_ENABLED": False}], indirect=True)
def test_with_metrics_disabled_there_is_no_metrics_page(client: FlaskClient) -> None:
    client.get("/healthz")
    assert client.get("/metrics").status_code == 404


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.slow
def test_under_gunicorn_one_scrape_adds_up_every_workers_counts(tmp_path: Path) -> None:
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {
        name: setting
        for name, setting in os.environ.items()
        if not name.startswith(("TEST_", "DATABASE_", "MAIL_", "RATELIMIT_", "SECRET_", "PUBLIC_", "FLASK_", "PROMETHEUS_"))
    }
    env.update(
        APP_ENV="development", SECRET_KEY="metrics-test-secret-key-0123456789",
        DATABASE_URL=f"sqlite:///{tmp_path / 'm.db'}", OUTBOX_DISPATCH="external",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), PYTHONDONTWRITEBYTECODE="1",
    )
    upgrade_env = {name: setting for name, setting in env.items() if name != "PROMETHEUS_MULTIPROC_DIR"}
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"],
        cwd=PROJECT, env=upgrade_env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "wsgi:app"],
            cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert server.poll() is None, log_path.read_text()
            try:
                if http_get(f"{base}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "gunicorn did not answer within 20 s"
            time.sleep(0.1)

        # Both workers have loaded the app (each makes its counter file then) ...
        while len(list(metrics_dir.glob("counter_*.db"))) < 2:
            assert time.monotonic() < deadline, "the second worker did not load the app within 20 s"
            time.sleep(0.1)
        # ... and both answer some of a few bursts of concurrent requests (each worker makes its
        # histogram file at its first answer).
        sent = 0
        for _burst in range(5):
            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(lambda _: http_get(f"{base}/healthz")[0], range(60)))
            assert statuses == [200] * 60
            sent += 60
            if len(list(metrics_dir.glob("histogram_*.db"))) == 2:
                break
        assert len(list(metrics_dir.glob("histogram_*.db"))) == 2, "one worker answered every request"

        status, text = http_get(f"{base}/metrics")
        assert status == 200
        samples = parse(text)
        assert value(samples, "resetdesk_http_requests_total", endpoint="health.healthz", method="GET", status="200") == sent
        assert value(samples, "resetdesk_outbox_depth", status="pending") == 0
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


def test_in_production_metrics_need_the_metrics_token(database_url: str) -> None:
    """The outbox gauges move when a reset is issued: read freely, they would tell an existing
    username from a missing one. In production only METRICS_TOKEN may read them."""
    base = {"APP_ENV": "production", "PASSWORD_HASH_CHEAP": False, "PUBLIC_BASE_URL": "http://localhost", **PRODUCTION_SERVICES}
    closed_app = create_app(settings_for(database_url, **base))
    guarded_app = create_app(settings_for(database_url, **base, METRICS_TOKEN="scrape-me-0123456789"))
    try:
        closed = closed_app.test_client()
        assert closed.get("/metrics").status_code == 404
        assert closed.get("/metrics", headers={"Authorization": "Bearer anything"}).status_code == 404

        guarded = guarded_app.test_client()
        assert guarded.get("/metrics").status_code == 404
        assert guarded.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 404
        answer = guarded.get("/metrics", headers={"Authorization": "Bearer scrape-me-0123456789"})
        assert answer.status_code == 200 and "resetdesk_http_requests_total" in answer.get_data(as_text=True)
    finally:
        for app in (closed_app, guarded_app):
            with app.app_context():
                db.engine.dispose()


# --- the outbox workers' own port ---------------------------------------------------------------


def test_worker_metrics_bind_loopback_by_default_and_honour_the_token(database_url: str) -> None:
    from service.platform.config import DEFAULTS
    from service.platform.metrics import serve_worker_metrics

    assert DEFAULTS["WORKER_METRICS_HOST"] == "127.0.0.1"
    app = create_app(settings_for(database_url, METRICS_TOKEN="scrape-me-0123456789"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = serve_worker_metrics(app, port)
    assert server is not None
    try:
        assert server.server_address[0] == "127.0.0.1"
        url = f"http://127.0.0.1:{port}/metrics"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=5)
        assert refused.value.code == 404
        refused.value.close()
        with pytest.raises(urllib.error.HTTPError) as wrong:
            urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": "Bearer wrong"}), timeout=5)
        assert wrong.value.code == 404
        wrong.value.close()
        request = urllib.request.Request(url, headers={"Authorization": "Bearer scrape-me-0123456789"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert "resetdesk_outbox_deliveries" in answer.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        with app.app_context():
            db.engine.dispose()


def test_a_metric_s_child_is_looked_up_once_and_is_prometheus_own() -> None:
    metrics = ServiceMetrics()
    child = metrics.child("requests", ("health.healthz", "GET", "200"))
    assert child is metrics.child("requests", ("health.healthz", "GET", "200"))
    assert child is metrics.requests.labels("health.healthz", "GET", "200")
    assert metrics.child("requests", ("health.healthz", "GET", "404")) is not child
    assert metrics.child("throttled") is metrics.throttled  # no labels: the metric itself
