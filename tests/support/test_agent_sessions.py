"""Agents' console sessions live in their own table: signing out or disabling the agent ends
the rows (and every copy of the cookie with them), the audit trail plays no part, and the
table keeps only a SHA-256 of the secret the cookie carries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, select, update
from werkzeug.test import TestResponse

from service.console.session import COOKIE_NAME, COOKIE_PATH, SALT
from service.models import AgentSession, AuditEvent
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.platform.signing import serializer, sha256_hex
from service.support.agents import create_agent, disable_agent
from tests.formtools import csrf_token_in, post_form

AGENT_PASSWORD = "agent horse battery staple"


@pytest.fixture
def make_agent(app: Flask) -> Callable[[str], None]:
    def make(username: str) -> None:
        with app.app_context():
            create_agent(
                db.session, username=username, email=f"{username}@shop.example", password=AGENT_PASSWORD, now=utcnow()
            )
            db.session.commit()

    return make


def signed_in_browser(app: Flask, username: str = "alice") -> FlaskClient:
    browser = app.test_client()
    answer = post_form(browser, "/support/login", {"username": username, "password": AGENT_PASSWORD})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return browser


def agent_cookie(browser: FlaskClient) -> str:
    cookie = browser.get_cookie(COOKIE_NAME, path=COOKIE_PATH)
    assert cookie is not None
    return cookie.value


def replaying(app: Flask, cookie: str) -> FlaskClient:
    """Another browser holding a copy of an agent's cookie, and nothing else."""
    browser = app.test_client()
    browser.set_cookie(COOKIE_NAME, cookie, path=COOKIE_PATH)
    return browser


def is_signed_in(browser: FlaskClient) -> bool:
    answer: TestResponse = browser.get("/support")
    if answer.status_code == 302:
        assert answer.headers["Location"].endswith("/support/login")
        return False
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return True


def session_rows(app: Flask) -> list[AgentSession]:
    with app.app_context():
        rows = list(db.session.scalars(select(AgentSession).order_by(AgentSession.id)))
        for row in rows:
            db.session.expunge(row)
        return rows


def sign_out(browser: FlaskClient) -> None:
    token = csrf_token_in(browser.get("/support").get_data(as_text=True))
    assert browser.post("/support/logout", data={"csrf_token": token}).status_code == 302


def cookie_payload(app: Flask, cookie: str) -> Any:
    with app.app_context():
        return serializer(SALT).loads(cookie)


# --- signing out ------------------------------------------------------------------------------


def test_signing_out_ends_the_session_row_and_every_copy_of_the_cookie(
    app: Flask, make_agent: Callable[[str], None]
) -> None:
    make_agent("alice")
    browser = signed_in_browser(app)
    copied = agent_cookie(browser)
    [open_row] = session_rows(app)
    assert open_row.ended_at is None
    assert is_signed_in(replaying(app, copied))  # a copy works while the session lives

    sign_out(browser)

    [ended] = session_rows(app)
    assert ended.id == open_row.id
    assert ended.ended_at is not None and ended.ended_at >= ended.started_at
    assert not is_signed_in(browser)
    # The copy's signature is still good and it is not idle: only the table says it is over.
    assert not is_signed_in(replaying(app, copied))


def test_signing_out_ends_that_session_only(app: Flask, make_agent: Callable[[str], None]) -> None:
    make_agent("alice")
    desk, phone = signed_in_browser(app), signed_in_browser(app)
    sign_out(desk)
    rows = session_rows(app)
    assert [row.ended_at is not None for row in rows] == [True, False]
    assert is_signed_in(phone)


def test_a_session_ended_in_its_table_ends_for_its_cookie(app: Flask, make_agent: Callable[[str], None]) -> None:
    make_agent("alice")
    browser = signed_in_browser(app)
    with app.app_context():
        db.session.execute(update(AgentSession).values(ended_at=utcnow()))
        db.session.commit()
    assert not is_signed_in(browser)


def test_sessions_owe_nothing_to_the_audit_trail(app: Flask, make_agent: Callable[[str], None]) -> None:
    make_agent("alice")
    browser = signed_in_browser(app)
    with app.app_context():
        db.session.execute(delete(AuditEvent))
        db.session.commit()
    assert is_signed_in(browser)
    sign_out(browser)
    assert not is_signed_in(browser)


# --- disabling the agent ----------------------------------------------------------------------


def test_disabling_an_agent_ends_all_its_sessions_and_no_one_elses(
    app: Flask, make_agent: Callable[[str], None]
) -> None:
    make_agent("alice")
    make_agent("bob")
    alice_desk, alice_phone, bob = signed_in_browser(app), signed_in_browser(app), signed_in_browser(app, "bob")
    copied = agent_cookie(alice_desk)

    with app.app_context():
        assert disable_agent(db.session, "alice", now=utcnow())
        db.session.commit()

    ended = {(row.agent_id, row.ended_at is not None) for row in session_rows(app)}
    alice_id, bob_id = sorted({agent_id for agent_id, _ in ended})
    assert ended == {(alice_id, True), (bob_id, False)}
    assert len([row for row in session_rows(app) if row.agent_id == alice_id]) == 2
    for browser in (alice_desk, alice_phone, replaying(app, copied)):
        assert not is_signed_in(browser)
    assert is_signed_in(bob)


def test_disabling_over_the_cli_ends_the_sessions_too(app: Flask, make_agent: Callable[[str], None]) -> None:
    make_agent("alice")
    signed_in_browser(app)
    result = app.test_cli_runner().invoke(args=["agents", "disable", "alice"])
    assert result.exit_code == 0, result.output
    assert all(row.ended_at is not None for row in session_rows(app))


# --- what the cookie and the table hold -------------------------------------------------------


def test_the_table_keeps_only_a_hash_of_the_secret_the_cookie_carries(
    app: Flask, make_agent: Callable[[str], None]
) -> None:
    make_agent("alice")
    cookie = agent_cookie(signed_in_browser(app))
    payload = cookie_payload(app, cookie)
    assert isinstance(payload, dict) and set(payload) == {"s"}  # no row id, no agent name
    secret = payload["s"]
    assert isinstance(secret, str) and len(secret) >= 32

    [row] = session_rows(app)
    assert row.secret_hash == sha256_hex(secret)
    assert row.secret_hash not in cookie
    with app.app_context():
        cells = [
            str(value)
            for table in db.metadata.sorted_tables
            for stored in db.session.execute(select(table)).all()
            for value in stored
            if value is not None
        ]
    assert not [cell for cell in cells if secret in cell]


def test_a_cookie_made_from_the_stored_hash_is_refused(app: Flask, make_agent: Callable[[str], None]) -> None:
    """Someone who read the table (a backup, a replica) still cannot sign in as the agent."""
    make_agent("alice")
    browser = signed_in_browser(app)
    [row] = session_rows(app)
    with app.app_context():
        forged = serializer(SALT).dumps({"s": row.secret_hash})
    assert not is_signed_in(replaying(app, forged))
    assert is_signed_in(browser)
