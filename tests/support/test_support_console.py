"""The support console through the browser's eyes: signing in and out, the agent cookie,
finding a customer, confirming each action before it happens, CSRF, idle and disabled agents."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from typing import Any

import pyotp
import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from service import create_app
from service.accounts.throttle import account_throttle_key, sign_in_throttle
from service.models import Account, Agent, AuditEvent, OutboxMessage, PasswordReset
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.platform.sealing import open_sealed
from service.support import totp
from service.support.agents import create_agent
from tests.conftest import PRODUCTION_SERVICES
from tests.conftest import test_settings as settings_for
from tests.formtools import CSRF_VALUE as CSRF

MAX_FAILURES = 3
IDLE_MINUTES = 1
AGENT_PASSWORD = "agent horse battery staple"

# What each console action leaves in the trail, and the reset it creates (if any).
ACTION_EVENTS = {
    "reset-link": (["reset.requested", "reset.issued"], "link"),
    "temporary-password": (["reset.requested", "reset.issued"], "temporary_password"),
    "unlock": (["account.unlocked"], None),
}
ACTION_EVENT_TYPES = {"reset.requested", "reset.issued", "account.unlocked"}


@pytest.fixture
def app_settings() -> dict[str, Any]:
    return {"LOGIN_MAX_FAILURES": MAX_FAILURES, "AGENT_IDLE_MINUTES": IDLE_MINUTES}


@pytest.fixture
def make_agent(app: Flask) -> Callable[..., None]:
    def make(username: str = "alice", password: str | None = AGENT_PASSWORD) -> None:
        with app.app_context():
            create_agent(db.session, username=username, email=f"{username}@shop.example", password=password, now=utcnow())
            db.session.commit()

    return make


def csrf_token(client: FlaskClient, url: str) -> str:
    page = client.get(url)
    assert page.status_code == 200, page.get_data(as_text=True)
    match = CSRF.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on {url}"
    return match.group(1)


def sign_in(client: FlaskClient, username: str = "alice", password: str = AGENT_PASSWORD) -> TestResponse:
    token = csrf_token(client, "/support/login")
    return client.post("/support/login", data={"csrf_token": token, "username": username, "password": password})


@pytest.fixture
def agent_client(app: Flask, make_agent: Callable[..., None]) -> FlaskClient:
    """A browser with agent alice signed in."""
    make_agent("alice")
    browser = app.test_client()
    assert sign_in(browser).status_code == 302
    return browser


def page_text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def redirects_to_sign_in(response: TestResponse) -> bool:
    return response.status_code == 302 and response.headers["Location"].endswith("/support/login")


def agent_cookie(response: TestResponse) -> SimpleCookie:
    headers = [h for h in response.headers.getlist("Set-Cookie") if h.startswith("resetdesk_agent=")]
    assert len(headers) == 1, response.headers.getlist("Set-Cookie")
    cookie = SimpleCookie()
    cookie.load(headers[0])
    return cookie


def event_rows(app: Flask, username: str = "jane") -> list[tuple[str, str, str | None, dict[str, Any]]]:
    with app.app_context():
        rows = db.session.execute(
            select(AuditEvent.type, AuditEvent.actor, AuditEvent.ip, AuditEvent.details)
            .join(Account, AuditEvent.account_id == Account.id)
            .where(Account.username == username)
            .order_by(AuditEvent.id)
        ).all()
        return [tuple(row) for row in rows]


def count_rows(app: Flask, model: type) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def lock(app: Flask, username: str = "jane") -> None:
    with app.app_context():
        for _ in range(MAX_FAILURES):
            sign_in_throttle().record_failure(account_throttle_key(username))


def is_locked(app: Flask, username: str = "jane") -> bool:
    with app.app_context():
        return sign_in_throttle().is_locked(account_throttle_key(username))


# --- signing in -------------------------------------------------------------------------------


def test_the_console_sends_strangers_to_sign_in(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    for url in ("/support", "/support?q=jane", "/support/accounts/jane", "/support/accounts/jane/unlock"):
        assert redirects_to_sign_in(client.get(url)), url
    # A stranger's POST fails its CSRF check before anything else looks at it.
    assert client.post("/support/accounts/jane/unlock", data={}).status_code == 400
    assert [row[0] for row in event_rows(app)] == ["account.created"]


def test_an_agent_signs_in_and_reaches_the_console(client: FlaskClient, make_agent: Callable[..., None]) -> None:
    make_agent("alice")
    response = sign_in(client)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/support")
    home = client.get("/support")
    assert home.status_code == 200
    assert "Find a customer" in page_text(home)


def test_a_wrong_password_is_401_with_the_reason(
    app: Flask, client: FlaskClient, make_agent: Callable[..., None]
) -> None:
    make_agent("alice")
    for username, password in (("alice", "not the agent password"), ("nobody", AGENT_PASSWORD)):
        response = sign_in(client, username, password)
        assert response.status_code == 401
        assert "The username or password is wrong." in page_text(response)
        assert "resetdesk_agent=" not in " ".join(response.headers.getlist("Set-Cookie"))
    assert redirects_to_sign_in(client.get("/support"))
    # Without the form's CSRF token even the right password is refused.
    assert client.post("/support/login", data={"username": "alice", "password": AGENT_PASSWORD}).status_code == 400
    assert redirects_to_sign_in(client.get("/support"))


def test_an_agent_without_a_password_cannot_sign_in(client: FlaskClient, make_agent: Callable[..., None]) -> None:
    make_agent("alice", password=None)
    assert sign_in(client, "alice", "").status_code == 400
    assert sign_in(client, "alice", AGENT_PASSWORD).status_code == 401


def test_a_disabled_agent_cannot_sign_in(
    client: FlaskClient, runner: FlaskCliRunner, make_agent: Callable[..., None]
) -> None:
    make_agent("alice")
    assert runner.invoke(args=["agents", "disable", "alice"]).exit_code == 0
    response = sign_in(client)
    assert response.status_code == 401
    assert "The username or password is wrong." in page_text(response)
    assert redirects_to_sign_in(client.get("/support"))


def test_sign_in_is_throttled_after_too_many_wrong_passwords(
    client: FlaskClient, make_agent: Callable[..., None]
) -> None:
    make_agent("alice")
    for _ in range(MAX_FAILURES):
        assert sign_in(client, "alice", "not the agent password").status_code == 401
    throttled = sign_in(client, "alice", AGENT_PASSWORD)
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) > 0
    assert "Too many wrong passwords" in page_text(throttled)
    assert redirects_to_sign_in(client.get("/support"))


def test_signing_in_starts_a_new_csrf_token(app: Flask, make_agent: Callable[..., None]) -> None:
    """The sign-in page's token was handed out before anyone signed in: whoever saw that page
    (a shared browser, a planted cookie) must not hold the token of the agent's session."""
    make_agent("alice")
    browser = app.test_client()
    before = csrf_token(browser, "/support/login")
    assert browser.post("/support/login", data={"csrf_token": before, "username": "alice", "password": AGENT_PASSWORD}).status_code == 302
    after = csrf_token(browser, "/support")
    assert after != before
    # The old token opens no form of the session; the new one does.
    assert browser.post("/support/logout", data={"csrf_token": before}).status_code == 400
    assert browser.post("/support/logout", data={"csrf_token": after}).status_code == 302


# --- the agent cookie -------------------------------------------------------------------------


def test_the_agent_cookie_is_httponly_strict_and_scoped_to_support(
    client: FlaskClient, make_agent: Callable[..., None]
) -> None:
    make_agent("alice")
    cookie = agent_cookie(sign_in(client))["resetdesk_agent"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/support"
    assert not cookie["secure"]  # testing runs over http
    # Each page refreshes it with the same attributes.
    refreshed = agent_cookie(client.get("/support"))["resetdesk_agent"]
    assert (refreshed["httponly"], refreshed["samesite"], refreshed["path"]) == (True, "Strict", "/support")


@pytest.fixture
def production_app(database_url: str) -> Iterator[Flask]:
    app = create_app(settings_for(database_url, APP_ENV="production", PASSWORD_HASH_CHEAP=False, **PRODUCTION_SERVICES))
    with app.app_context():
        db.create_all()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_in_production_the_agent_cookie_is_also_secure(production_app: Flask) -> None:
    with production_app.app_context():
        create_agent(db.session, username="alice", email="alice@shop.example", password=AGENT_PASSWORD, now=utcnow())
        db.session.commit()
    browser = production_app.test_client()
    https = {"base_url": "https://localhost", "headers": {"Referer": "https://localhost/support/login"}}
    page = browser.get("/support/login", **https)
    token = CSRF.search(page_text(page)).group(1)
    response = browser.post(
        "/support/login", data={"csrf_token": token, "username": "alice", "password": AGENT_PASSWORD}, **https
    )
    assert response.status_code == 302, page_text(response)
    # Production asks for a code after the password; that step's cookie is as strict.
    pending = SimpleCookie()
    pending.load(next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("resetdesk_agent_pending=")))
    assert pending["resetdesk_agent_pending"]["secure"] is True
    assert pending["resetdesk_agent_pending"]["samesite"] == "Strict"
    page = browser.get("/support/login/code", **https)
    with production_app.app_context():
        agent = db.session.scalar(select(Agent))
        assert agent is not None
        code = pyotp.TOTP(open_sealed(totp.SEALING_PURPOSE, agent.totp_secret_sealed or "")).now()
    response = browser.post(
        "/support/login/code", data={"csrf_token": CSRF.search(page_text(page)).group(1), "code": code}, **https
    )
    assert response.status_code == 302, page_text(response)
    cookie = agent_cookie(response)["resetdesk_agent"]
    assert cookie["secure"] is True
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/support"


# --- finding a customer -----------------------------------------------------------------------


def test_an_agent_finds_a_customer_and_sees_the_account_and_its_events(
    app: Flask, agent_client: FlaskClient, make_account: Callable[..., Account]
) -> None:
    make_account("jane", email="Jane@Example.com")
    make_account("john", email="john@example.com")

    by_username = page_text(agent_client.get("/support", query_string={"q": "JAN"}))
    assert 'href="/support/accounts/jane"' in by_username
    assert "/support/accounts/john" not in by_username
    by_email = page_text(agent_client.get("/support", query_string={"q": "jane@example.com"}))
    assert 'href="/support/accounts/jane"' in by_email
    none = page_text(agent_client.get("/support", query_string={"q": "zed"}))
    assert "No customer matches" in none

    account = agent_client.get("/support/accounts/jane")
    assert account.status_code == 200
    text = page_text(account)
    assert "<h1>jane</h1>" in text
    assert "Jane@Example.com" in text
    assert "not locked" in text
    assert "Account created" in text  # the trail is on the page, in words
    for action in ("reset-link", "temporary-password", "freeze", "email"):
        assert f'href="/support/accounts/jane/{action}"' in text
    # Only what can work is offered: the account is not locked, nor frozen.
    for action in ("unlock", "unfreeze"):
        assert f'href="/support/accounts/jane/{action}"' not in text
    assert "Sign-in is not locked." in text
    # Looking is audited, under the agent's name.
    assert ("support.viewed", "agent:alice", "127.0.0.1", {}) in event_rows(app)


def test_a_missing_account_or_action_is_a_404_page(
    agent_client: FlaskClient, make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    response = agent_client.get("/support/accounts/nobody")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert agent_client.get("/support/accounts/nobody/unlock").status_code == 404
    assert agent_client.get("/support/accounts/jane/delete").status_code == 404


# --- actions: confirm first, then do ----------------------------------------------------------


@pytest.mark.parametrize("action", list(ACTION_EVENTS))
def test_each_action_asks_first_and_acts_only_on_a_confirmed_post(
    app: Flask, agent_client: FlaskClient, make_account: Callable[..., Account], action: str
) -> None:
    make_account("jane")
    lock(app)
    url = f"/support/accounts/jane/{action}"
    expected_events, reset_method = ACTION_EVENTS[action]

    confirm = agent_client.get(url)
    assert confirm.status_code == 200
    assert f'action="{url}"' in page_text(confirm)
    assert 'method="post"' in page_text(confirm)
    # Opening the confirmation page (twice, as a prefetching browser might) does nothing.
    agent_client.get(url)
    assert not ACTION_EVENT_TYPES & {row[0] for row in event_rows(app)}
    assert count_rows(app, PasswordReset) == 0
    assert count_rows(app, OutboxMessage) == 0
    assert is_locked(app)

    token = CSRF.search(page_text(confirm)).group(1)
    done = agent_client.post(url, data={"csrf_token": token, "ticket": "T-77", "note": "verified", "verified_by": "callback"})
    assert done.status_code == 302
    assert done.headers["Location"].endswith("/support/accounts/jane")
    action_rows = [row for row in event_rows(app) if row[0] in ACTION_EVENT_TYPES]
    assert [row[0] for row in action_rows] == expected_events
    assert all(row[1] == "agent:alice" and row[2] == "127.0.0.1" for row in action_rows)
    # The ticket and note the form asked for are on record, whichever the action.
    assert all(row[3]["ticket"] == "T-77" and row[3]["note"] == "verified" for row in action_rows)
    assert all(row[3]["verified_by"] == "callback" for row in action_rows)
    page = page_text(agent_client.get("/support/accounts/jane"))
    if reset_method is None:
        assert not is_locked(app)
        assert count_rows(app, PasswordReset) == 0
        assert "Sign-in is unlocked." in page
    else:
        assert is_locked(app)  # a reset does not unlock
        assert all(row[3]["method"] == reset_method for row in action_rows)
        with app.app_context():
            assert db.session.scalars(select(PasswordReset.method)).all() == [reset_method]
            assert db.session.scalars(select(OutboxMessage.recipient)).all() == ["jane@example.com"]
        assert "to j***@example.com" in page
        assert "(ticket T-77)" in page


@pytest.mark.parametrize("action", list(ACTION_EVENTS))
def test_an_action_posted_without_csrf_is_refused_and_does_nothing(
    app: Flask, agent_client: FlaskClient, make_account: Callable[..., Account], action: str
) -> None:
    make_account("jane")
    lock(app)
    url = f"/support/accounts/jane/{action}"
    agent_client.get(url)
    for data in ({}, {"csrf_token": "forged"}, {"csrf_token": ""}):
        response = agent_client.post(url, data=data)
        assert response.status_code == 400
    assert not ACTION_EVENT_TYPES & {row[0] for row in event_rows(app)}
    assert count_rows(app, PasswordReset) == 0
    assert count_rows(app, OutboxMessage) == 0
    assert is_locked(app)


def test_a_reset_for_an_account_without_email_says_so(
    app: Flask, agent_client: FlaskClient, make_account: Callable[..., Account]
) -> None:
    make_account("jane", email=None)
    url = "/support/accounts/jane/reset-link"
    assert "No email address on file" in page_text(agent_client.get("/support/accounts/jane"))
    token = csrf_token(agent_client, "/support/accounts/jane/freeze")
    for response in (
        agent_client.get(url, follow_redirects=True),
        agent_client.post(url, data={"csrf_token": token, "verified_by": "callback"}, follow_redirects=True),
    ):
        assert response.status_code == 200
        assert "No email address on file: change the email address first." in page_text(response)
    assert count_rows(app, PasswordReset) == 0


def test_what_an_agent_types_is_shown_as_text_not_markup(
    app: Flask, agent_client: FlaskClient, make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    url = "/support/accounts/jane/reset-link"
    token = csrf_token(agent_client, url)
    agent_client.post(
        url, data={"csrf_token": token, "ticket": '<script>alert("x")</script>', "note": "<b>n</b>", "verified_by": "callback"}
    )
    page = page_text(agent_client.get("/support/accounts/jane"))
    assert "<script>" not in page and "<b>n</b>" not in page and "&lt;b&gt;n&lt;/b&gt;" in page
    assert "(ticket &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;)" in page
    found = page_text(agent_client.get("/support", query_string={"q": "<b>jane"}))
    assert "<b>jane" not in found and "&lt;b&gt;jane" in found


@pytest.mark.parametrize(
    ("action", "field"), [("freeze", "reason"), ("freeze", "ticket"), ("reset-link", "ticket"), ("temporary-password", "note")]
)
def test_the_console_refuses_a_ticket_note_or_reason_of_more_than_one_line(
    app: Flask, agent_client: FlaskClient, make_account: Callable[..., Account], action: str, field: str
) -> None:
    make_account("jane")
    url = f"/support/accounts/jane/{action}"
    data = {"csrf_token": csrf_token(agent_client, url), "verified_by": "callback", "reason": "fraud call", field: "T-1\r\nBcc: x@evil.test"}
    response = agent_client.post(url, data=data)
    assert response.status_code == 400
    assert "Keep this on one line, without line breaks or control characters." in page_text(response)
    assert not {"account.frozen", "reset.requested", "account.unlocked"} & {row[0] for row in event_rows(app)}


@pytest.mark.parametrize("app_settings", [{"AGENT_RESETS_PER_HOUR": 1}], ids=["one-reset-an-hour"])
def test_the_console_says_when_the_hourly_quota_is_used_up(
    app: Flask, agent_client: FlaskClient, make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    url = "/support/accounts/jane/temporary-password"
    for _ in range(2):
        page = agent_client.post(
            url, data={"csrf_token": csrf_token(agent_client, url), "verified_by": "callback"}, follow_redirects=True
        )
        assert page.status_code == 200
    assert "You have sent 1 resets in the past hour" in page_text(page)
    assert count_rows(app, PasswordReset) == 1


# --- the session ends -------------------------------------------------------------------------


def test_signing_out_ends_the_session(app: Flask, agent_client: FlaskClient) -> None:
    page = agent_client.get("/support")
    token = CSRF.search(page_text(page)).group(1)
    response = agent_client.post("/support/logout", data={"csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/support/login")
    removed = agent_cookie(response)["resetdesk_agent"]
    assert removed.value == "" and removed["path"] == "/support"
    assert redirects_to_sign_in(agent_client.get("/support"))
    with app.app_context():
        signed_out = db.session.execute(
            select(AuditEvent.actor, AuditEvent.ip).where(AuditEvent.type == "agent.signed_out")
        ).all()
    assert [tuple(row) for row in signed_out] == [("agent:alice", "127.0.0.1")]


def test_a_copy_of_a_signed_out_cookie_is_refused(app: Flask, agent_client: FlaskClient) -> None:
    copied = agent_client.get_cookie("resetdesk_agent", path="/support").value
    token = CSRF.search(page_text(agent_client.get("/support"))).group(1)
    assert agent_client.post("/support/logout", data={"csrf_token": token}).status_code == 302
    # Someone who kept the cookie (a shared machine, a proxy log) gets nothing from it now.
    replay = app.test_client()
    replay.set_cookie("resetdesk_agent", copied, path="/support")
    assert redirects_to_sign_in(replay.get("/support"))
    # Signing in again starts a fresh session that works.
    assert sign_in(agent_client).status_code == 302
    assert agent_client.get("/support").status_code == 200


def test_signing_out_ends_only_that_session(app: Flask, agent_client: FlaskClient) -> None:
    other_desk = app.test_client()
    assert sign_in(other_desk).status_code == 302
    token = CSRF.search(page_text(agent_client.get("/support"))).group(1)
    agent_client.post("/support/logout", data={"csrf_token": token})
    assert other_desk.get("/support").status_code == 200


def test_signing_out_needs_a_post_with_csrf(agent_client: FlaskClient) -> None:
    assert agent_client.get("/support/logout").status_code == 405
    assert agent_client.post("/support/logout", data={}).status_code == 400
    assert agent_client.get("/support").status_code == 200  # still signed in


def test_an_idle_session_ends(agent_client: FlaskClient) -> None:
    start = datetime.now(UTC)
    # Activity keeps it alive: two pages 40 s apart outlast a one-minute idle limit.
    with time_machine.travel(start + timedelta(seconds=40), tick=False):
        assert agent_client.get("/support").status_code == 200
    with time_machine.travel(start + timedelta(seconds=80), tick=False):
        assert agent_client.get("/support").status_code == 200
    with time_machine.travel(start + timedelta(seconds=80 + IDLE_MINUTES * 60 + 60), tick=False):
        assert redirects_to_sign_in(agent_client.get("/support"))
        assert redirects_to_sign_in(agent_client.get("/support/accounts/jane"))


@pytest.mark.parametrize("app_settings", [{"AGENT_IDLE_MINUTES": 24 * 60}], ids=["idle-a-day"])
def test_a_session_ends_after_a_working_day_however_recent(agent_client: FlaskClient) -> None:
    start = datetime.now(UTC)
    with time_machine.travel(start + timedelta(hours=11, minutes=59), tick=False):
        assert agent_client.get("/support").status_code == 200
    # Active a minute ago, but signed in more than 12 hours ago.
    with time_machine.travel(start + timedelta(hours=12, minutes=1), tick=False):
        assert redirects_to_sign_in(agent_client.get("/support"))


def test_disabling_an_agent_ends_an_open_session_at_the_next_page(
    agent_client: FlaskClient, runner: FlaskCliRunner, make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    url = "/support/accounts/jane/freeze"
    token = csrf_token(agent_client, url)
    result = runner.invoke(args=["agents", "disable", "alice"])
    assert result.exit_code == 0, result.output
    assert redirects_to_sign_in(agent_client.get("/support"))
    assert redirects_to_sign_in(agent_client.post(url, data={"csrf_token": token}))
    listed = runner.invoke(args=["agents", "list"])
    assert "alice\talice@shop.example\tdisabled" in listed.output


@pytest.mark.parametrize("page_number", ["²", "99999999999999999999", "-3", "x"])
def test_odd_page_numbers_in_the_console_search_never_make_a_500(
    agent_client: FlaskClient, make_account: Callable[..., Account], page_number: str
) -> None:
    make_account("jane")
    assert agent_client.get("/support", query_string={"q": "j", "page": page_number}).status_code == 200


def test_a_failed_agent_sign_in_leaves_an_audit_event(app: Flask, client: FlaskClient, make_agent: Callable[..., None]) -> None:
    make_agent("alice")
    sign_in(client, "alice", "not the password at all")
    sign_in(client, "mallory", "not the password at all")
    with app.app_context():
        failed = db.session.scalars(
            select(AuditEvent).where(AuditEvent.type == "agent.sign_in_failed").order_by(AuditEvent.id)
        ).all()
    assert [(e.actor, e.details["known_agent"]) for e in failed] == [("agent:alice", True), ("agent:mallory", False)]


# --- the agent throttle: per agent and address; unlock and set-password -----------------------


def sign_in_from(client: FlaskClient, ip: str, username: str = "alice", password: str = AGENT_PASSWORD) -> TestResponse:
    environ = {"REMOTE_ADDR": ip}
    page = client.get("/support/login", environ_base=environ)
    token = CSRF.search(page.get_data(as_text=True)).group(1)
    return client.post(
        "/support/login", data={"csrf_token": token, "username": username, "password": password}, environ_base=environ
    )


def test_strangers_cannot_lock_an_agent_out_from_elsewhere(app: Flask, make_agent: Callable[..., None]) -> None:
    make_agent("alice")
    stranger, agent = app.test_client(), app.test_client()
    for _ in range(MAX_FAILURES):
        assert sign_in_from(stranger, "203.0.113.9", password="not the agent password").status_code == 401
    assert sign_in_from(stranger, "203.0.113.9").status_code == 429
    assert sign_in_from(agent, "192.0.2.20").status_code == 302


def test_agents_unlock_lifts_the_throttle_from_every_address(
    app: Flask, runner: FlaskCliRunner, make_agent: Callable[..., None]
) -> None:
    make_agent("alice")
    for ip in ("203.0.113.9", "203.0.113.10"):
        browser = app.test_client()
        for _ in range(MAX_FAILURES):
            sign_in_from(browser, ip, password="not the agent password")
        assert sign_in_from(browser, ip).status_code == 429
    result = runner.invoke(args=["agents", "unlock", "ALICE"])
    assert result.exit_code == 0, result.output
    for ip in ("203.0.113.9", "203.0.113.10"):
        assert sign_in_from(app.test_client(), ip).status_code == 302
    assert runner.invoke(args=["agents", "unlock", "nobody"]).exit_code != 0


def test_agents_set_password_lets_an_agent_created_without_one_sign_in(
    app: Flask, runner: FlaskCliRunner, make_agent: Callable[..., None]
) -> None:
    make_agent("alice", password=None)
    assert sign_in(app.test_client()).status_code == 401
    weak = runner.invoke(args=["agents", "set-password", "alice", "--password-stdin"], input="short\n")
    assert weak.exit_code != 0
    result = runner.invoke(args=["agents", "set-password", "alice", "--password-stdin"], input=AGENT_PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert sign_in(app.test_client()).status_code == 302
    missing = runner.invoke(args=["agents", "set-password", "nobody", "--password-stdin"], input=AGENT_PASSWORD + "\n")
    assert missing.exit_code != 0
