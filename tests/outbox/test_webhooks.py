"""Webhooks to the website: queued in the outbox in the transaction of the change they report,
delivered by the dispatcher to a real HTTP receiver on loopback, signed the Standard Webhooks
way, retried with backoff after a failure and delivered once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from service import create_app
from service.models import Account, OutboxMessage
from service.outbox.queue import open_body
from service.platform.clock import utcnow
from service.platform.config import ConfigError, load_config
from service.platform.extensions import db
from tests.conftest import OTHER_STRONG_PASSWORD, STRONG_PASSWORD, run_dispatcher
from tests.conftest import test_settings as settings_for

# A Standard Webhooks secret: "whsec_" and the base64 of the key.
SIGNING_KEY = b"resetdesk-test-signing-key-32b!!"
SECRET = "whsec_" + base64.b64encode(SIGNING_KEY).decode()
NEW_PASSWORD = "amber kites circle slowly home"


class Receiver:
    """The website's webhook endpoint: records each request, answers from a script of statuses."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append(
                    {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                )
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", f"{receiver.url}/moved")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                receiver.requests.append({"path": self.path, "method": "GET"})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/resetdesk"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(request["body"]) for request in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    hook.thread.start()
    yield hook
    hook.stop()


@pytest.fixture
def app_settings(receiver: Receiver) -> dict[str, Any]:
    return {"WEBHOOK_URLS": (receiver.url,), "WEBHOOK_SECRET": SECRET}


def signature_is_valid(headers: dict[str, str], body: bytes, secret: str = SECRET) -> bool:
    """Check a request as a Standard Webhooks receiver would, without the service's code."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, candidate) for candidate in headers["webhook-signature"].split())


def assert_documented(client: FlaskClient, payload: dict[str, Any]) -> None:
    """The payload is what the API's own document promises for its event."""
    webhooks = client.get("/api/v1/openapi.json").get_json()["webhooks"]
    schema = webhooks[payload["type"]]["post"]["requestBody"]["content"]["application/json"]["schema"]
    jsonschema.validate(payload, schema)


def change_password(client: FlaskClient, key: dict[str, str], username: str = "jane") -> None:
    response = client.post(
        f"/api/v1/accounts/{username}/password",
        json={"current_password": STRONG_PASSWORD, "new_password": NEW_PASSWORD},
        headers=key,
    )
    assert response.status_code == 204, response.get_data(as_text=True)


def webhook_rows(app: Flask) -> list[OutboxMessage]:
    with app.app_context():
        rows = db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "webhook").order_by(OutboxMessage.id)
        ).all()
        db.session.expunge_all()
        return list(rows)


# --- queued with the change -------------------------------------------------------------------


def test_a_password_change_queues_a_webhook_before_any_dispatch(
    app: Flask, client: FlaskClient, client_key: dict[str, str], receiver: Receiver,
    make_account: Callable[..., Account],
) -> None:
    make_account("jane")
    change_password(client, client_key)
    rows = webhook_rows(app)
    assert len(rows) == 1
    row = rows[0]
    assert (row.recipient, row.subject, row.status, row.attempts) == (receiver.url, "password.changed", "pending", 0)
    with app.app_context():
        payload = json.loads(open_body(row.text_body))
    assert payload["type"] == "password.changed"
    assert payload["data"]["username"] == "jane"
    assert receiver.requests == []  # nothing is posted on the request's path


def test_the_webhook_is_written_in_the_same_transaction_as_the_change(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    log: list[tuple[str, str]] = []

    def on_execute(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        log.append(("sql", f"{statement.split('(')[0].strip()} {parameters!r}"))

    def on_commit(_conn: Any) -> None:
        log.append(("commit", ""))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)
    try:
        change_password(client, client_key)
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "commit", on_commit)

    def position(*needles: str) -> int:
        found = [i for i, (kind, text) in enumerate(log) if kind == "sql" and all(n in text for n in needles)]
        assert len(found) == 1, (needles, log)
        return found[0]

    changed = position("INSERT INTO audit_events", "password.changed")
    webhook = position("INSERT INTO outbox", "'webhook'")
    password = position("UPDATE accounts", "$argon2")
    first, last = min(changed, webhook, password), max(changed, webhook, password)
    assert ("commit", "") not in log[first:last], "the change and its webhook were committed apart"
    assert ("commit", "") in log[last:]


def test_a_rolled_back_change_leaves_no_webhook(app: Flask, make_account: Callable[..., Account]) -> None:
    from service.accounts.changes import set_password

    make_account("jane")
    with app.app_context():
        account = db.session.scalar(select(Account).where(Account.username == "jane"))
        set_password(db.session, account, NEW_PASSWORD, actor="self", ip=None, now=utcnow(), via="change")
        db.session.flush()
        assert db.session.scalars(select(OutboxMessage.subject).where(OutboxMessage.kind == "webhook")).all() == [
            "password.changed"
        ]
        db.session.rollback()
    assert webhook_rows(app) == []


@pytest.mark.parametrize("app_settings", [{}], ids=["no-webhook-urls"])
def test_without_webhook_urls_nothing_is_queued(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    change_password(client, client_key)
    assert webhook_rows(app) == []


# --- delivered and signed ---------------------------------------------------------------------


def test_the_dispatcher_delivers_a_signed_password_changed_webhook(
    app: Flask, client: FlaskClient, client_key: dict[str, str], receiver: Receiver,
    make_account: Callable[..., Account],
) -> None:
    make_account("jane")
    change_password(client, client_key)
    run_dispatcher(app)

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    headers, body = request["headers"], request["body"]
    assert request["path"] == "/hooks/resetdesk"
    assert headers["content-type"] == "application/json"
    assert headers["webhook-signature"].startswith("v1,")
    assert signature_is_valid(headers, body)
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    # A receiver checking the signature refuses anything else.
    assert not signature_is_valid(headers, body.replace(b"jane", b"john"))
    assert not signature_is_valid(headers, body, secret="whsec_" + base64.b64encode(b"another key").decode())
    assert not signature_is_valid({**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 1)}, body)

    # The reference library, as receivers use it, accepts it and refuses a tampered body.
    assert Webhook(SECRET).verify(body, headers)["type"] == "password.changed"
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace(b"jane", b"john"), headers)

    payload = json.loads(body)
    assert_documented(client, payload)
    assert payload["id"] == headers["webhook-id"]
    assert payload["type"] == "password.changed"
    assert payload["data"]["username"] == "jane"
    verified = client.post(
        "/api/v1/auth/verify", json={"username": "jane", "password": NEW_PASSWORD}, headers=client_key
    ).get_json()
    assert payload["data"]["password_changed_at"] == verified["password_changed_at"]

    assert [row.status for row in webhook_rows(app)] == ["sent"]
    run_dispatcher(app)
    assert len(receiver.requests) == 1  # delivered once


def test_reset_requested_and_account_unlocked_are_sent_too(
    app: Flask, client: FlaskClient, make_key: Callable[[str], dict[str, str]], receiver: Receiver,
    make_account: Callable[..., Account],
) -> None:
    make_account("jane")
    agent_key = make_key("agent")
    assert client.post(
        "/api/v1/support/accounts/jane/password-resets", json={"method": "link"}, headers=agent_key
    ).status_code == 202
    assert client.post("/api/v1/support/accounts/jane/unlock", headers=agent_key).status_code == 204
    assert client.post("/api/v1/password-resets", json={"username": "jane"}).status_code == 202
    assert client.post("/api/v1/password-resets", json={"username": "nobody"}).status_code == 202
    client.get("/api/v1/support/accounts/jane", headers=agent_key)
    run_dispatcher(app)

    assert all(signature_is_valid(r["headers"], r["body"]) for r in receiver.requests)
    for request in receiver.requests:
        assert_documented(client, Webhook(SECRET).verify(request["body"], request["headers"]))
    sent = [(p["type"], p["data"]["username"], p["data"]["actor"]) for p in receiver.payloads()]
    assert sorted(sent) == sorted([
        ("reset.requested", "jane", "key:agent-0"),
        ("account.unlocked", "jane", "key:agent-0"),
        ("reset.requested", "jane", "self"),
    ])
    assert len({r["headers"]["webhook-id"] for r in receiver.requests}) == 3


# --- retried ----------------------------------------------------------------------------------


def test_a_failed_delivery_is_retried_after_the_backoff_and_delivered_once(
    app: Flask, client: FlaskClient, client_key: dict[str, str], receiver: Receiver,
    make_account: Callable[..., Account],
) -> None:
    make_account("jane")
    receiver.statuses = [500, 200]
    change_password(client, client_key)
    start = datetime.now(UTC)

    run_dispatcher(app)
    assert len(receiver.requests) == 1
    [row] = webhook_rows(app)
    assert (row.status, row.attempts) == ("pending", 1)
    assert "500" in row.last_error
    assert row.next_attempt_at > start

    run_dispatcher(app)  # not due yet
    assert len(receiver.requests) == 1

    with time_machine.travel(start + timedelta(seconds=31)):
        run_dispatcher(app)
    assert len(receiver.requests) == 2
    [row] = webhook_rows(app)
    assert (row.status, row.attempts) == ("sent", 2)
    first, second = receiver.requests
    assert first["body"] == second["body"]
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
    assert signature_is_valid(second["headers"], second["body"])

    with time_machine.travel(start + timedelta(hours=3)):
        run_dispatcher(app)
    assert len(receiver.requests) == 2


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_and_the_webhook_stays_queued(
    app: Flask, client: FlaskClient, client_key: dict[str, str], receiver: Receiver,
    make_account: Callable[..., Account], status: int,
) -> None:
    """Followed, a 301-303 turns the POST into a GET without its body: a 200 there would have
    counted a webhook the website never got as delivered. The operator moves WEBHOOK_URLS."""
    make_account("jane")
    receiver.statuses = [status]
    change_password(client, client_key)
    run_dispatcher(app)
    assert [request["path"] for request in receiver.requests] == ["/hooks/resetdesk"]
    [row] = webhook_rows(app)
    assert (row.status, row.attempts) == ("pending", 1)
    assert str(status) in row.last_error


def test_an_unreachable_receiver_keeps_the_webhook_queued(
    app: Flask, client: FlaskClient, client_key: dict[str, str], receiver: Receiver,
    make_account: Callable[..., Account],
) -> None:
    make_account("jane")
    receiver.stop()
    change_password(client, client_key)
    run_dispatcher(app)
    [row] = webhook_rows(app)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error


# --- what the website reads -------------------------------------------------------------------


def test_verify_answers_when_the_password_last_changed(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    created = make_account("jane")
    verify = "/api/v1/auth/verify"
    before = client.post(verify, json={"username": "jane", "password": STRONG_PASSWORD}, headers=client_key).get_json()
    assert datetime.fromisoformat(before["password_changed_at"]) == created.password_changed_at
    change_password(client, client_key)
    after = client.post(verify, json={"username": "jane", "password": NEW_PASSWORD}, headers=client_key).get_json()
    assert datetime.fromisoformat(after["password_changed_at"]) > created.password_changed_at
    wrong = client.post(verify, json={"username": "jane", "password": OTHER_STRONG_PASSWORD}, headers=client_key)
    assert "password_changed_at" not in wrong.get_json()


# --- configuration ----------------------------------------------------------------------------


def test_webhook_urls_without_a_secret_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET"):
        create_app(settings_for(f"sqlite:///{tmp_path / 'x.db'}", WEBHOOK_URLS=("http://127.0.0.1:9/",)))
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET"):
        load_config({"APP_ENV": "testing", "WEBHOOK_URLS": "http://127.0.0.1:9/hooks"}, instance_path=tmp_path)
    settings = load_config(
        {"APP_ENV": "testing", "WEBHOOK_URLS": "http://127.0.0.1:9/a, https://example.com/b", "WEBHOOK_SECRET": SECRET},
        instance_path=tmp_path,
    )
    assert settings["WEBHOOK_URLS"] == ("http://127.0.0.1:9/a", "https://example.com/b")
