"""Closing an account from the console: offered on the account page, asked to be confirmed with
how the caller was verified, done by the same closing rule as the website's, audited with it."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from service.models import Account, AccountStatus, AuditEvent, OutboxMessage
from service.platform.extensions import db
from tests.formtools import csrf_token_in
from tests.support.test_support_console import (
    agent_client,  # noqa: F401 (fixture)
    make_agent,  # noqa: F401 (fixture)
    page_text,
)

URL = "/support/accounts/jane/close"


def close(browser: FlaskClient, **fields: str) -> object:
    token = csrf_token_in(page_text(browser.get(URL)))
    return browser.post(URL, data={"csrf_token": token, **fields})


def test_the_account_page_offers_to_close_and_asks_to_confirm(
    agent_client: FlaskClient, make_account: Callable[..., Account]  # noqa: F811
) -> None:
    make_account("jane")
    assert f'href="{URL}"' in page_text(agent_client.get("/support/accounts/jane"))
    form = page_text(agent_client.get(URL))
    assert 'name="verified_by"' in form and "This cannot be undone" in form


def test_closing_needs_the_callers_verification(
    app: Flask, agent_client: FlaskClient, make_account: Callable[..., Account]  # noqa: F811
) -> None:
    make_account("jane")
    refused = close(agent_client)
    assert refused.status_code == 400  # type: ignore[attr-defined]
    with app.app_context():
        account = db.session.scalar(select(Account))
        assert account is not None and account.status == AccountStatus.ACTIVE and account.username == "jane"
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.type == "account.closed")) is None


def test_an_agent_closes_an_account_with_the_closing_rule_audited_with_verification(
    app: Flask, agent_client: FlaskClient, make_account: Callable[..., Account]  # noqa: F811
) -> None:
    make_account("jane")
    done = close(agent_client, verified_by="callback", ticket="T-7", note="caller asked to leave")
    assert done.status_code == 302 and done.headers["Location"].endswith("/support")  # type: ignore[attr-defined]
    assert "The account is closed" in page_text(agent_client.get("/support"))
    with app.app_context():
        account = db.session.scalar(select(Account))
        assert account is not None and account.status == AccountStatus.CLOSED
        assert account.username.startswith("closed-")
        assert (account.email, account.password_hash) == (None, None)
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.type == "account.closed"))
        assert event is not None and event.actor == "agent:alice" and event.account_id == account.id
        assert event.details["verified_by"] == "callback"
        assert event.details["ticket"] == "T-7" and event.details["note"] == "caller asked to leave"
        notices = db.session.scalars(select(OutboxMessage.recipient)).all()
        assert "jane@example.com" in notices  # the notice to the address it had
    # The username no longer names it.
    assert agent_client.get("/support/accounts/jane").status_code == 404
