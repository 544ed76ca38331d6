"""The console page for a call: focus in the search box, verification asked before any action,
lock and freeze shown prominently, only the actions that can work, the delivery state of
recent mail with "send again", and a trail in words with notes, page views kept apart."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from service.models import Account, OutboxMessage, OutboxStatus
from service.platform.extensions import db
from tests.conftest import SmtpSink, run_dispatcher, smtp_settings
from tests.support.test_support_console import (
    MAX_FAILURES,
    agent_client,  # noqa: F401 (fixture)
    event_rows,
    lock,
    make_agent,  # noqa: F401 (fixture)
    page_text,
)

CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


@pytest.fixture
def app_settings(smtp: SmtpSink) -> dict[str, Any]:
    return {**smtp_settings(smtp), "LOGIN_MAX_FAILURES": MAX_FAILURES}


def act(client: FlaskClient, action: str, **fields: str) -> Any:
    url = f"/support/accounts/jane/{action}"
    token = CSRF.search(page_text(client.get("/support"))).group(1)  # type: ignore[union-attr]
    return client.post(url, data={"csrf_token": token, **fields}, follow_redirects=True)


def test_the_search_box_has_the_focus(agent_client: FlaskClient) -> None:  # noqa: F811
    page = page_text(agent_client.get("/support"))
    assert re.search(r'<input type="search" id="q"[^>]* autofocus', page)


def test_no_action_without_saying_how_the_caller_was_verified(
    app: Flask, agent_client: FlaskClient, make_account: Callable[..., Account]  # noqa: F811
) -> None:
    make_account("jane")
    form = page_text(agent_client.get("/support/accounts/jane/reset-link"))
    assert 'name="verified_by"' in form and "Called back on the number on file" in form
    for fields in ({}, {"verified_by": "telepathy"}):
        response = act(agent_client, "reset-link", **fields)
        assert response.status_code == 400
    assert [row[0] for row in event_rows(app) if row[0] != "support.viewed"] == ["account.created"]


def test_a_locked_account_says_how_many_failures_and_when_it_lifts(
    app: Flask, agent_client: FlaskClient, make_account: Callable[..., Account]  # noqa: F811
) -> None:
    make_account("jane")
    lock(app)
    page = page_text(agent_client.get("/support/accounts/jane"))
    assert 'class="alert alert-warning" id="locked"' in page
    assert f"{MAX_FAILURES} wrong passwords in the last 15 minutes; it lifts by itself at" in page
    assert 'href="/support/accounts/jane/unlock"' in page
    done = act(agent_client, "unlock", verified_by="date_of_birth", note="caller read the order")
    assert 'class="alert alert-success"' in page_text(done)
    assert 'id="locked"' not in page_text(done)
    assert "note: caller read the order" in page_text(done)
    assert "verified: Confirmed the date of birth" in page_text(done)


def test_freeze_and_unfreeze_from_the_console(
    app: Flask, agent_client: FlaskClient, make_account: Callable[..., Account]  # noqa: F811
) -> None:
    make_account("jane")
    assert act(agent_client, "freeze", verified_by="callback").status_code == 400  # a reason is needed
    page = page_text(act(agent_client, "freeze", verified_by="callback", reason="caller says: not me"))
    assert 'id="frozen"' in page and "Reason: caller says: not me" in page
    assert 'href="/support/accounts/jane/reset-link"' not in page
    assert "The account is frozen: unfreeze it first." in page
    assert 'href="/support/accounts/jane/unfreeze"' in page
    page = page_text(act(agent_client, "unfreeze", verified_by="order_number"))
    assert 'id="frozen"' not in page and 'href="/support/accounts/jane/reset-link"' in page
    frozen = [row for row in event_rows(app) if row[0] == "account.frozen"]
    assert frozen[0][3] == {"reason": "caller says: not me", "verified_by": "callback"}


def test_change_the_email_from_the_console(
    app: Flask, agent_client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink  # noqa: F811
) -> None:
    make_account("jane", email=None)
    page = page_text(agent_client.get("/support/accounts/jane"))
    assert "No email address on file: change the email address first." in page
    assert act(agent_client, "email", verified_by="callback", email="not an address").status_code == 400
    page = page_text(act(agent_client, "email", verified_by="callback", email="jane@example.org"))
    assert "Sent a confirmation link to j***@example.org." in page
    assert "waiting for confirmation: jane@example.org" in page
    run_dispatcher(app)
    assert len(smtp.to("jane@example.org")) == 1


def test_recent_mail_shows_where_each_message_stands_and_offers_send_again(
    app: Flask, agent_client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink  # noqa: F811
) -> None:
    make_account("jane")
    page = page_text(act(agent_client, "reset-link", verified_by="callback"))
    assert 'class="state state-queued"' in page
    run_dispatcher(app)
    page = page_text(agent_client.get("/support/accounts/jane"))
    assert 'class="state state-sent"' in page
    with app.app_context():
        db.session.execute(
            update(OutboxMessage).values(status=OutboxStatus.PENDING, attempts=2, last_error="451 mailbox busy")
        )
        db.session.commit()
    page = page_text(agent_client.get("/support/accounts/jane"))
    assert 'class="state state-retrying"' in page and "server said: 451 mailbox busy" in page
    assert "Send again" in page
    with app.app_context():
        db.session.execute(update(OutboxMessage).values(status=OutboxStatus.FAILED, last_error="550 no such user"))
        db.session.commit()
    page = page_text(agent_client.get("/support/accounts/jane"))
    assert 'class="state state-failed"' in page and "server said: 550 no such user" in page
    with app.app_context():
        assert db.session.scalars(select(OutboxMessage.recipient)).all() == ["jane@example.com"]


def test_the_trail_is_in_words_and_page_views_are_apart(
    app: Flask, agent_client: FlaskClient, make_account: Callable[..., Account]  # noqa: F811
) -> None:
    make_account("jane")
    for _ in range(3):
        agent_client.get("/support/accounts/jane")
    page = page_text(agent_client.get("/support/accounts/jane"))
    trail = page.split('<table class="trail">')[1].split("</table>")[0]
    assert "Account created" in trail
    assert "account.created" not in trail
    assert "Account opened in the console" not in trail
    assert "Opened in the console" in page
    french = page_text(agent_client.get("/support/accounts/jane", headers={"Accept-Language": "fr"}))
    assert "Compte créé" in french
