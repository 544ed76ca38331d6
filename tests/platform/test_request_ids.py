"""Request ids: every answer carries X-Request-ID, a plain incoming id is kept (and lands in the
request's audit events and log lines), anything else is replaced; logs are JSON in production."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from service import create_app
from service.models import AuditEvent
from service.platform.config import load_config
from service.platform.extensions import db
from service.platform.logs import JsonFormatter, RequestIdFilter
from tests.conftest import PRODUCTION_SERVICES
from tests.conftest import test_settings as settings_for

PRODUCTION_ENVIRON = {name: str(value) for name, value in PRODUCTION_SERVICES.items()}

HEADER = "X-Request-ID"
FRESH_ID = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
def app_settings() -> dict[str, Any]:
    return {"RATELIMIT_RESET_PER_IP": "1/minute"}


def csrf_less_form_post(client: FlaskClient) -> TestResponse:
    return client.post("/reset-password", data={"username": "jane"})


ANSWERS = {
    "health": lambda c: c.get("/healthz"),
    "readiness": lambda c: c.get("/readyz"),
    "page": lambda c: c.get("/reset-password"),
    "static": lambda c: c.get("/static/" + next(p.name for p in (Path(__file__).resolve().parents[2] / "static").iterdir())),
    "metrics": lambda c: c.get("/metrics"),
    "accepted": lambda c: c.post("/api/v1/password-resets", json={"username": "jane"}),
    "not-found": lambda c: c.get("/no-such-page"),
    "api-not-found": lambda c: c.get("/api/v1/no-such-call"),
    "method-not-allowed": lambda c: c.delete("/healthz"),
    "malformed-json": lambda c: c.post("/api/v1/auth/verify", data="{", content_type="application/json"),
    "unauthorized": lambda c: c.post("/api/v1/auth/verify", json={"username": "a", "password": "b"}),
    "too-large": lambda c: c.post("/api/v1/accounts", data="x" * 70_000, content_type="application/json"),
    "untrusted-host": lambda c: c.get("/healthz", headers={"Host": "evil.example"}),
    "csrf-refused": csrf_less_form_post,
}


@pytest.mark.parametrize("send", ANSWERS.values(), ids=ANSWERS.keys())
def test_every_answer_carries_a_request_id(client: FlaskClient, send: Any) -> None:
    response = send(client)
    response.close()
    assert FRESH_ID.match(response.headers.get(HEADER, "")), (response.status_code, dict(response.headers))


def test_a_rate_limited_answer_carries_a_request_id(client: FlaskClient) -> None:
    client.post("/api/v1/password-resets", json={"username": "jane"})
    refused = client.post("/api/v1/password-resets", json={"username": "jane"})
    assert refused.status_code == 429
    assert FRESH_ID.match(refused.headers.get(HEADER, ""))


def test_each_request_gets_its_own_id(client: FlaskClient) -> None:
    ids = {client.get("/healthz").headers[HEADER] for _ in range(5)}
    assert len(ids) == 5


@pytest.mark.parametrize("incoming", ["abc-123", "req.2024_01.x", "A" * 64, "7f9c2ba4-e88f-4c6a-8a6d-5b8c6f1d2e3a"])
def test_a_plain_incoming_id_is_echoed(client: FlaskClient, incoming: str) -> None:
    assert client.get("/healthz", headers={HEADER: incoming}).headers[HEADER] == incoming


@pytest.mark.parametrize(
    "incoming",
    ["has space", "A" * 65, 'quo"te', "semi;colon", "<script>", "a\tb", "ünïcode", "{\"json\":1}"],
    ids=["space", "too-long", "quote", "semicolon", "angle-brackets", "tab", "non-ascii", "json"],
)
def test_a_malformed_incoming_id_is_replaced_by_a_fresh_one(client: FlaskClient, incoming: str) -> None:
    answered = client.get("/healthz", headers={HEADER: incoming}).headers[HEADER]
    assert answered != incoming
    assert FRESH_ID.match(answered)


def test_an_empty_incoming_id_is_replaced(client: FlaskClient) -> None:
    assert FRESH_ID.match(client.get("/healthz", headers={HEADER: ""}).headers[HEADER])


def test_the_request_id_lands_in_the_audit_event_of_its_request(
    app: Flask, client: FlaskClient, client_key: dict[str, str]
) -> None:
    response = client.post(
        "/api/v1/accounts", json={"username": "newcomer", "email": "newcomer@example.com"},
        headers={**client_key, HEADER: "trace-4711"},
    )
    assert response.status_code == 201
    assert response.headers[HEADER] == "trace-4711"
    with app.app_context():
        [event] = db.session.scalars(select(AuditEvent).where(AuditEvent.type == "account.created")).all()
    assert event.request_id == "trace-4711"


def test_a_replaced_id_is_the_one_in_the_audit_event(app: Flask, client: FlaskClient, client_key: dict[str, str]) -> None:
    response = client.post(
        "/api/v1/accounts", json={"username": "newcomer", "email": "newcomer@example.com"},
        headers={**client_key, HEADER: "not a plain id"},
    )
    assert response.status_code == 201
    with app.app_context():
        [event] = db.session.scalars(select(AuditEvent).where(AuditEvent.type == "account.created")).all()
    assert event.request_id == response.headers[HEADER] != "not a plain id"


def test_events_written_outside_a_request_have_no_request_id(app: Flask, runner: Any) -> None:
    result = runner.invoke(args=["users", "create", "clijane", "clijane@example.com"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        [event] = db.session.scalars(select(AuditEvent).where(AuditEvent.type == "account.created")).all()
    assert event.request_id is None


# --- JSON logs --------------------------------------------------------------------------------


def log_record(message: str, exc_info: Any = None) -> logging.LogRecord:
    return logging.LogRecord("service.example", logging.WARNING, __file__, 1, message, (), exc_info)


def test_the_json_formatter_writes_one_object_with_time_level_logger_message_and_request_id() -> None:
    record = log_record('mail 7 not sent: "quoted"\nsecond line')
    record.request_id = "trace-1"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert set(entry) == {"time", "level", "logger", "message", "request_id"}
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "service.example"
    assert entry["message"] == 'mail 7 not sent: "quoted"\nsecond line'
    assert entry["request_id"] == "trace-1"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$", entry["time"])


def test_the_json_formatter_adds_the_exception_when_there_is_one() -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        record = log_record("it failed", exc_info=sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert "ValueError: broken" in entry["exception"]
    assert "Traceback" in entry["exception"]
    assert entry["request_id"] is None


def test_the_request_id_filter_gives_records_the_current_request_id(app: Flask) -> None:
    record = log_record("x")
    RequestIdFilter().filter(record)
    assert record.request_id is None
    with app.test_request_context("/healthz", headers={HEADER: "trace-2"}):
        app.preprocess_request()
        RequestIdFilter().filter(record)
    assert record.request_id == "trace-2"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"APP_ENV": "production", "SECRET_KEY": "k" * 40, "PUBLIC_BASE_URL": "https://account.example.com", **PRODUCTION_ENVIRON}, "json"),
        ({"APP_ENV": "development", "SECRET_KEY": "k" * 40}, "text"),
        ({"APP_ENV": "testing"}, "text"),
        ({"APP_ENV": "development", "SECRET_KEY": "k" * 40, "LOG_FORMAT": "json"}, "json"),
        (
            {"APP_ENV": "production", "SECRET_KEY": "k" * 40, "PUBLIC_BASE_URL": "https://a.example.com", "LOG_FORMAT": "text", **PRODUCTION_ENVIRON},
            "text",
        ),
    ],
    ids=["production", "development", "testing", "development-asks-json", "production-asks-text"],
)
def test_the_log_format_is_json_in_production_and_text_elsewhere(environ: dict[str, str], expected: str) -> None:
    assert load_config(environ, instance_path="/nonexistent")["LOG_FORMAT"] == expected


@pytest.fixture
def root_logging() -> Iterator[None]:
    """configure_logging replaces the root handlers; put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers, root.level = handlers, level


def test_a_production_app_logs_json_lines_with_the_request_id(
    root_logging: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # As under gunicorn: no handler anywhere before the app configures its own (pytest's on the
    # root would keep Flask from adding its text handler to the app's logger).
    logging.getLogger().handlers = []
    app = create_app(
        settings_for(
            f"sqlite:///{tmp_path / 'p.db'}",
            APP_ENV="production", PASSWORD_HASH_CHEAP=False, SECRET_KEY="k" * 40, PUBLIC_BASE_URL="http://localhost",
            **PRODUCTION_SERVICES,
        )
    )

    @app.get("/log-something")
    def log_something() -> str:
        logging.getLogger("service.example").warning("something to say")
        return "ok"

    try:
        response = app.test_client().get("/log-something", headers={HEADER: "trace-prod-1"})
        assert response.status_code == 200
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert sum("something to say" in line for line in lines) == 1, lines  # written once
        entries = [json.loads(line) for line in lines]  # every line is JSON
        [entry] = [entry for entry in entries if entry["message"] == "something to say"]
        assert entry["request_id"] == "trace-prod-1"
        assert entry["level"] == "WARNING"
    finally:
        with app.app_context():
            db.engine.dispose()
