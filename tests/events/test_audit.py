"""The audit trail: every support action leaves its event (type, actor, IP, account), events
are only ever added, and `flask audit export` writes them as JSON lines with filters."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import event, select

from service.access.apikeys import create_api_key
from service.accounts.throttle import account_throttle_key, sign_in_throttle
from service.models import Account, AuditEvent
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.platform.sealing import username_hash
from service.support.agents import create_agent
from tests.conftest import SmtpSink, run_dispatcher, smtp_settings
from tests.formtools import CSRF_VALUE as CSRF

AGENT_PASSWORD = "agent horse battery staple"
API_IP = "198.51.100.7"
CONSOLE_IP = "203.0.113.9"

# (type, actor, ip, account username, a subset of the details)
Event = tuple[str, str, str | None, str | None, dict[str, Any]]


@pytest.fixture
def app_settings(smtp: SmtpSink) -> dict[str, Any]:
    # The trail follows several resets of one account within the hour.
    return {"LOGIN_MAX_FAILURES": 3, "RESET_MAILS_PER_HOUR": 10, **smtp_settings(smtp)}


@pytest.fixture
def api(app: Flask) -> tuple[FlaskClient, dict[str, str]]:
    """A client calling from API_IP with the agent key named `helpdesk`."""
    with app.app_context():
        _key, presented = create_api_key(db.session, "helpdesk", "agent", now=utcnow())
        db.session.commit()
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = API_IP
    return client, {"Authorization": f"Bearer {presented}"}


@pytest.fixture
def console(app: Flask) -> FlaskClient:
    """A browser at CONSOLE_IP with agent alice signed in."""
    with app.app_context():
        create_agent(db.session, username="alice", email="alice@shop.example", password=AGENT_PASSWORD, now=utcnow())
        db.session.commit()
    browser = app.test_client()
    browser.environ_base["REMOTE_ADDR"] = CONSOLE_IP
    response = browser.post(
        "/support/login",
        data={"csrf_token": csrf_of(browser, "/support/login"), "username": "alice", "password": AGENT_PASSWORD},
    )
    assert response.status_code == 302
    return browser


def csrf_of(browser: FlaskClient, url: str) -> str:
    page = browser.get(url)
    assert page.status_code == 200
    return CSRF.search(page.get_data(as_text=True)).group(1)


def confirm(browser: FlaskClient, username: str, action: str, **fields: str) -> None:
    url = f"/support/accounts/{username}/{action}"
    token = csrf_of(browser, url)
    response = browser.post(url, data={"csrf_token": token, "verified_by": "callback", **fields})
    assert response.status_code == 302


class Trail:
    """Reads the events written since the last look."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.last_id = 0

    def new(self) -> list[Event]:
        with self.app.app_context():
            rows = db.session.scalars(
                select(AuditEvent).where(AuditEvent.id > self.last_id).order_by(AuditEvent.id)
            ).all()
            if rows:
                self.last_id = rows[-1].id
            return [
                (row.type, row.actor, row.ip, row.account.username if row.account else None, row.details)
                for row in rows
            ]


def assert_events(actual: list[Event], expected: list[Event]) -> None:
    """Same events in the same order; the expected details need only be a subset."""
    assert [event[:4] for event in actual] == [event[:4] for event in expected], actual
    for got, wanted in zip(actual, expected, strict=True):
        assert wanted[4].items() <= got[4].items(), (got, wanted)


def lock(client: FlaskClient, key: dict[str, str], username: str) -> None:
    for _ in range(3):
        client.post("/api/v1/auth/verify", json={"username": username, "password": "wrong wrong wrong"}, headers=key)


# --- every support action leaves its event ----------------------------------------------------


def test_every_support_action_leaves_its_event(
    app: Flask,
    api: tuple[FlaskClient, dict[str, str]],
    console: FlaskClient,
    make_account: Callable[..., Account],
) -> None:
    make_account("jane", email="jane@example.com")
    trail = Trail(app)
    trail.new()  # what the set-up wrote: the account, the agent's sign-in
    client, key = api
    key_actor, agent_actor = "key:helpdesk", "agent:alice"

    # Through the API, with an agent key.
    assert client.get("/api/v1/support/accounts", query_string={"q": "jane@"}, headers=key).status_code == 200
    with app.app_context():
        searched_for = username_hash("jane@")
    assert_events(trail.new(), [("support.searched", key_actor, API_IP, None, {"query_hash": searched_for})])

    assert client.get("/api/v1/support/accounts/jane", headers=key).status_code == 200
    assert_events(trail.new(), [("support.viewed", key_actor, API_IP, "jane", {})])

    response = client.post(
        "/api/v1/support/accounts/jane/password-resets", json={"method": "link", "ticket": "T-1"}, headers=key
    )
    assert response.status_code == 202
    assert_events(trail.new(), [
        ("reset.requested", key_actor, API_IP, "jane", {"method": "link", "outcome": "issued", "ticket": "T-1"}),
        ("reset.issued", key_actor, API_IP, "jane", {"method": "link", "ticket": "T-1"}),
    ])

    response = client.post(
        "/api/v1/support/accounts/jane/password-resets", json={"method": "temporary_password"}, headers=key
    )
    assert response.status_code == 202
    assert_events(trail.new(), [
        ("reset.requested", key_actor, API_IP, "jane", {"method": "temporary_password"}),
        ("reset.issued", key_actor, API_IP, "jane", {"method": "temporary_password"}),
    ])

    assert client.post("/api/v1/support/accounts/jane/unlock", headers=key).status_code == 204
    assert_events(trail.new(), [("account.unlocked", key_actor, API_IP, "jane", {})])

    assert client.get("/api/v1/support/accounts/jane/events", headers=key).status_code == 200
    assert trail.new() == []  # reading the trail is not itself an event

    # Through the console, signed in as an agent. Each page that shows the account records a view.
    assert console.get("/support", query_string={"q": "JANE"}).status_code == 200
    with app.app_context():
        searched_for = username_hash("JANE")
    assert_events(trail.new(), [("support.searched", agent_actor, CONSOLE_IP, None, {"query_hash": searched_for})])

    assert console.get("/support/accounts/jane").status_code == 200
    assert_events(trail.new(), [("support.viewed", agent_actor, CONSOLE_IP, "jane", {})])

    confirm(console, "jane", "reset-link", note="called in")
    assert_events(trail.new(), [
        ("support.viewed", agent_actor, CONSOLE_IP, "jane", {}),  # the confirmation page
        ("support.viewed", agent_actor, CONSOLE_IP, "jane", {}),  # the confirmed POST
        ("reset.requested", agent_actor, CONSOLE_IP, "jane", {"method": "link", "note": "called in", "verified_by": "callback"}),
        ("reset.issued", agent_actor, CONSOLE_IP, "jane", {"method": "link", "note": "called in", "verified_by": "callback"}),
    ])

    confirm(console, "jane", "temporary-password")
    assert_events(trail.new(), [
        ("support.viewed", agent_actor, CONSOLE_IP, "jane", {}),
        ("support.viewed", agent_actor, CONSOLE_IP, "jane", {}),
        ("reset.requested", agent_actor, CONSOLE_IP, "jane", {"method": "temporary_password", "verified_by": "callback"}),
        ("reset.issued", agent_actor, CONSOLE_IP, "jane", {"method": "temporary_password", "verified_by": "callback"}),
    ])

    # The console offers Unlock only for a locked account.
    with app.app_context():
        for _ in range(app.config["LOGIN_MAX_FAILURES"]):
            sign_in_throttle().record_failure(account_throttle_key("jane"))
    confirm(console, "jane", "unlock")
    assert_events(trail.new(), [
        ("support.viewed", agent_actor, CONSOLE_IP, "jane", {}),
        ("support.viewed", agent_actor, CONSOLE_IP, "jane", {}),
        ("account.unlocked", agent_actor, CONSOLE_IP, "jane", {"verified_by": "callback"}),
    ])

    # Every event carries its time, close to now.
    with app.app_context():
        times = db.session.scalars(select(AuditEvent.at)).all()
    assert all(datetime.now(UTC) - timedelta(minutes=1) < at <= datetime.now(UTC) for at in times)


def test_an_agent_signing_in_and_a_refused_reset_are_recorded(
    app: Flask, api: tuple[FlaskClient, dict[str, str]], console: FlaskClient, make_account: Callable[..., Account]
) -> None:
    with app.app_context():
        signed_in = db.session.scalars(select(AuditEvent).where(AuditEvent.type == "agent.signed_in")).all()
        assert [(e.actor, e.ip) for e in signed_in] == [("agent:alice", CONSOLE_IP)]
    make_account("noemail", email=None)
    trail = Trail(app)
    trail.new()
    client, key = api
    response = client.post("/api/v1/support/accounts/noemail/password-resets", json={"method": "link"}, headers=key)
    assert response.status_code == 409
    # Nothing was sent, so nothing claims a reset was issued.
    assert "reset.issued" not in [event[0] for event in trail.new()]


# --- append-only ------------------------------------------------------------------------------


@pytest.fixture
def audit_writes(app: Flask) -> Iterator[list[str]]:
    """Every UPDATE or DELETE statement on audit_events the service sends to the database."""
    seen: list[str] = []

    def watch(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if re.match(r"\s*(UPDATE\s+audit_events|DELETE\s+FROM\s+audit_events)\b", statement, re.IGNORECASE):
            seen.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", watch)
    yield seen
    event.remove(engine, "before_cursor_execute", watch)


def last_mail(smtp: SmtpSink, recipient: str) -> str:
    """The text of the newest mail the SMTP sink received for an address."""
    return smtp.text_of(smtp.to(recipient)[-1])


def snapshot(app: Flask) -> dict[int, dict[str, Any]]:
    """Every audit row, every column, as stored."""
    with app.app_context():
        rows = db.session.execute(select(AuditEvent.__table__)).mappings().all()
        return {row["id"]: dict(row) for row in rows}


def test_audit_events_are_never_changed_or_deleted(
    app: Flask,
    api: tuple[FlaskClient, dict[str, str]],
    console: FlaskClient,
    runner: FlaskCliRunner,
    smtp: SmtpSink,
    client_key: dict[str, str],
    make_account: Callable[..., Account],
    audit_writes: list[str],
) -> None:
    client, key = api
    make_account("jane")
    make_account("john", email="john@example.com")
    # A full flow: locked, looked at, reset, mail delivered, unlocked, a link used.
    lock(client, client_key, "jane")
    client.get("/api/v1/support/accounts", query_string={"q": "j"}, headers=key)
    client.get("/api/v1/support/accounts/jane", headers=key)
    client.post("/api/v1/support/accounts/jane/password-resets", json={"method": "link"}, headers=key)
    confirm(console, "john", "temporary-password")
    confirm(console, "jane", "unlock")
    run_dispatcher(app)
    link = re.search(r"http://localhost(/reset-password/\S+)", last_mail(smtp, "jane@example.com")).group(1)
    customer = app.test_client()
    customer.get(link)
    form = customer.get("/reset-password/new").get_data(as_text=True)
    new_password = "violet lanterns drift over harbours"
    response = customer.post(
        "/reset-password/new",
        data={"csrf_token": CSRF.search(form).group(1), "new_password": new_password, "confirm_password": new_password},
    )
    assert response.status_code == 302
    run_dispatcher(app)
    before = snapshot(app)
    assert {row["type"] for row in before.values()} >= {
        "account.created", "sign_in.throttled", "support.searched", "support.viewed", "reset.requested",
        "reset.issued", "account.unlocked", "mail.sent", "password.changed", "agent.signed_in",
    }

    # More of everything, including what touches the same accounts, resets and mail again.
    temporary = re.search(r"\r?\n\r?\n {4}(\S+)\r?\n", last_mail(smtp, "john@example.com")).group(1)
    client.post("/api/v1/auth/verify", json={"username": "john", "password": temporary}, headers=client_key)
    client.post(
        "/api/v1/accounts/john/password",
        json={"current_password": temporary, "new_password": "quiet rivers remember everything"},
        headers=client_key,
    )
    client.post("/api/v1/password-resets", json={"username": "jane"})
    client.post("/api/v1/password-resets", json={"username": "nobody"})
    lock(client, client_key, "jane")
    client.post("/api/v1/support/accounts/jane/unlock", headers=key)
    confirm(console, "jane", "reset-link")
    run_dispatcher(app)
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=2)):
        run_dispatcher(app)
    assert runner.invoke(args=["audit", "export"]).exit_code == 0
    assert runner.invoke(args=["agents", "disable", "alice"]).exit_code == 0
    assert runner.invoke(args=["apikeys", "revoke", "helpdesk"]).exit_code == 0
    assert runner.invoke(args=["reset", "send", "jane"]).exit_code == 0

    after = snapshot(app)
    assert len(after) > len(before) + 10
    assert {event_id: after.get(event_id) for event_id in before} == before
    assert audit_writes == []


# --- flask audit export -----------------------------------------------------------------------


def export(runner: FlaskCliRunner, *args: str) -> list[dict[str, Any]]:
    result = runner.invoke(args=["audit", "export", *args])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture
def history(app: Flask, make_account: Callable[..., Account], api: tuple[FlaskClient, dict[str, str]]) -> None:
    """Old's account from the start of 2024, jane's from mid-2024, and support work on jane now."""
    with time_machine.travel(datetime(2024, 1, 1, tzinfo=UTC), tick=False):
        make_account("old", email="old@example.com")
    with time_machine.travel(datetime(2024, 6, 1, 12, 30, tzinfo=UTC), tick=False):
        make_account("jane")
    client, key = api
    client.get("/api/v1/support/accounts/jane", headers=key)
    client.post("/api/v1/support/accounts/jane/password-resets", json={"method": "link"}, headers=key)


def test_audit_export_writes_every_event_as_a_json_line_oldest_first(
    app: Flask, runner: FlaskCliRunner, history: None
) -> None:
    events = export(runner)
    assert [(e["type"], e["account"]) for e in events] == [
        ("account.created", "old"),
        ("account.created", "jane"),
        ("api_key.created", None),  # the helpdesk key, made by the `api` fixture
        ("support.viewed", "jane"),
        ("reset.requested", "jane"),
        ("reset.issued", "jane"),
    ]
    for line in events:
        assert set(line) >= {"id", "at", "type", "account", "actor", "ip", "details"}
    assert events[0]["at"] == "2024-01-01T00:00:00+00:00"
    assert events[3]["actor"] == "key:helpdesk" and events[3]["ip"] == API_IP
    assert events[5]["details"]["method"] == "link"
    with app.app_context():
        # Every event once, in time order (the key's event was written first but happened later).
        assert [e["id"] for e in events] == list(
            db.session.scalars(select(AuditEvent.id).order_by(AuditEvent.at, AuditEvent.id))
        )
        assert sorted(e["id"] for e in events) == list(db.session.scalars(select(AuditEvent.id).order_by(AuditEvent.id)))


def test_audit_export_since_keeps_events_at_or_after_the_time(runner: FlaskCliRunner, history: None) -> None:
    assert [e["account"] for e in export(runner, "--since", "2024-01-01")] == ["old", "jane", None, "jane", "jane", "jane"]
    assert [e["account"] for e in export(runner, "--since", "2024-01-01T00:00:01")] == ["jane", None] + ["jane"] * 3
    assert [e["account"] for e in export(runner, "--since", "2024-06-01T12:30:00")] == ["jane", None] + ["jane"] * 3
    assert [e["type"] for e in export(runner, "--since", "2024-06-01T12:30:01")] == [
        "api_key.created", "support.viewed", "reset.requested", "reset.issued",
    ]
    assert export(runner, "--since", (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")) == []


def test_audit_export_account_keeps_that_accounts_events(runner: FlaskCliRunner, history: None) -> None:
    jane = export(runner, "--account", "JANE")
    assert [e["type"] for e in jane] == ["account.created", "support.viewed", "reset.requested", "reset.issued"]
    assert {e["account"] for e in jane} == {"jane"}
    both = export(runner, "--account", "jane", "--since", "2024-06-02")
    assert [e["type"] for e in both] == ["support.viewed", "reset.requested", "reset.issued"]
    assert [e["type"] for e in export(runner, "--account", "old")] == ["account.created"]


def test_audit_export_streams_a_trail_longer_than_one_batch(
    app: Flask, runner: FlaskCliRunner, make_account: Callable[..., Account]
) -> None:
    ids = [make_account(name, email=f"{name}@example.com").id for name in ("amy", "bob", "cal")]
    start = datetime(2025, 3, 1, tzinfo=UTC)
    with app.app_context():
        db.session.add_all(
            AuditEvent(at=start + timedelta(seconds=n), type="support.viewed", actor="key:bulk",
                       ip="192.0.2.1", account_id=ids[n % 3], details={"n": n})
            for n in range(1200)
        )
        db.session.commit()
    events = [e for e in export(runner, "--since", "2025-01-01") if e["actor"] == "key:bulk"]
    assert [e["details"]["n"] for e in events] == list(range(1200))
    assert [e["account"] for e in events[:4]] == ["amy", "bob", "cal", "amy"]
    bob = export(runner, "--account", "bob", "--since", "2025-01-01")
    assert sorted(e["type"] for e in bob) == ["account.created"] + ["support.viewed"] * 400


def test_audit_export_of_an_unknown_account_fails(runner: FlaskCliRunner, history: None) -> None:
    result = runner.invoke(args=["audit", "export", "--account", "nobody"])
    assert result.exit_code != 0
    assert "No account named 'nobody'" in result.output
    assert result.stdout.strip() == ""


def test_audit_export_refuses_a_bad_date(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["audit", "export", "--since", "last tuesday"])
    assert result.exit_code != 0
