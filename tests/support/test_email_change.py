"""An agent changes a caller's email: the new address confirms by a link (GET shows a button,
POST confirms), only then is it the account's email; the old address is told; audit and webhooks."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from service.models import Account, AuditEvent, EmailChange, OutboxKind, OutboxMessage
from service.platform.clock import utcnow
from service.platform.extensions import db
from tests.conftest import SmtpSink, run_dispatcher, smtp_settings

Headers = dict[str, str]
URL = "/api/v1/support/accounts/jane"
LINK = re.compile(r"http://localhost(/confirm-email/\S+)")
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
WEBHOOK_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def app_settings(smtp: SmtpSink) -> dict[str, Any]:
    return {**smtp_settings(smtp), "WEBHOOK_URLS": ("http://127.0.0.1:9/hook",), "WEBHOOK_SECRET": WEBHOOK_SECRET}


@pytest.fixture
def agent_key(make_key: Callable[[str], Headers], make_account: Callable[..., Account]) -> Headers:
    make_account("jane", email="jane@example.com")
    return make_key("agent")


def stored(app: Flask) -> Account:
    with app.app_context():
        account = db.session.scalar(select(Account).where(Account.username == "jane"))
        assert account is not None
        db.session.expunge(account)
        return account


def confirmation_path(app: Flask, smtp: SmtpSink, address: str) -> str:
    run_dispatcher(app)
    [mail] = smtp.to(address)
    match = LINK.search(SmtpSink.text_of(mail))
    assert match is not None
    return match.group(1)


def confirm(client: FlaskClient, path: str) -> Any:
    page = client.get(path, follow_redirects=True)
    assert page.status_code == 200, page.get_data(as_text=True)
    csrf = CSRF.search(page.get_data(as_text=True))
    assert csrf is not None
    return client.post("/confirm-email", data={"csrf_token": csrf.group(1)})


def event_types(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent.type).order_by(AuditEvent.id)))


def webhooks(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(OutboxMessage.subject).where(OutboxMessage.kind == OutboxKind.WEBHOOK)))


def test_the_new_address_becomes_the_email_only_once_confirmed(
    app: Flask, client: FlaskClient, agent_key: Headers, smtp: SmtpSink
) -> None:
    response = client.post(f"{URL}/email", json={"email": "jane.new@example.org", "ticket": "T-9", "verified_by": "callback"}, headers=agent_key)
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["sent_to"] == "j***@example.org"
    assert stored(app).email == "jane@example.com"
    assert client.get(URL, headers=agent_key).get_json()["pending_email_change"]["email"] == "jane.new@example.org"
    path = confirmation_path(app, smtp, "jane.new@example.org")
    customer = app.test_client()
    # Opening the link (as a mail scanner would) changes nothing.
    page = customer.get(path, follow_redirects=True)
    assert "button" in page.get_data(as_text=True)
    assert stored(app).email == "jane@example.com"
    done = confirm(customer, path)
    assert done.status_code == 200
    assert stored(app).email == "jane.new@example.org"
    assert stored(app).email_key == "jane.new@example.org"
    run_dispatcher(app)
    # The old address heard of it twice: when it was asked for, and when it happened.
    warning, notice = smtp.to("jane@example.com")
    assert warning["Subject"] == "Your email address is about to change"
    assert "the change can still be stopped" in SmtpSink.text_of(warning)
    assert notice["Subject"] == "Your email address was changed"
    assert "Mail about your account now goes to the new address" in SmtpSink.text_of(notice)
    types = event_types(app)
    assert "account.email_change_requested" in types and "account.email_changed" in types
    assert "account.email_changed" in webhooks(app)
    requested = client.get(f"{URL}/events", headers=agent_key).get_json()["events"]
    [asked] = [event for event in requested if event["type"] == "account.email_change_requested"]
    assert asked["details"]["ticket"] == "T-9" and asked["details"]["verified_by"] == "callback"
    # A second use of the same link is refused.
    again = app.test_client().get(path, follow_redirects=True)
    assert again.status_code == 410


def test_a_newer_change_kills_the_older_link(app: Flask, client: FlaskClient, agent_key: Headers, smtp: SmtpSink) -> None:
    client.post(f"{URL}/email", json={"email": "first@example.org"}, headers=agent_key)
    first = confirmation_path(app, smtp, "first@example.org")
    client.post(f"{URL}/email", json={"email": "second@example.org"}, headers=agent_key)
    assert app.test_client().get(first, follow_redirects=True).status_code == 410
    assert stored(app).email == "jane@example.com"


def test_an_expired_or_forged_link_changes_nothing(app: Flask, client: FlaskClient, agent_key: Headers, smtp: SmtpSink) -> None:
    client.post(f"{URL}/email", json={"email": "late@example.org"}, headers=agent_key)
    path = confirmation_path(app, smtp, "late@example.org")
    assert app.test_client().get(path[:-3] + "xyz", follow_redirects=True).status_code == 400
    assert app.test_client().get("/confirm-email", follow_redirects=True).status_code == 400
    with time_machine.travel(utcnow().timestamp() + 4 * 86400, tick=False):
        assert app.test_client().get(path, follow_redirects=True).status_code == 410
    assert stored(app).email == "jane@example.com"


def test_the_secret_is_stored_only_as_a_hash(app: Flask, client: FlaskClient, agent_key: Headers, smtp: SmtpSink) -> None:
    client.post(f"{URL}/email", json={"email": "jane.new@example.org"}, headers=agent_key)
    path = confirmation_path(app, smtp, "jane.new@example.org")
    with app.app_context():
        [change] = db.session.scalars(select(EmailChange)).all()
        assert len(change.secret_hash) == 64
        assert change.secret_hash not in path


@pytest.mark.parametrize("body", [{}, {"email": "not-an-address"}, {"email": "x@example.org", "verified_by": "guess"}])
def test_a_bad_request_is_400_and_sends_nothing(app: Flask, client: FlaskClient, agent_key: Headers, body: dict[str, str]) -> None:
    assert client.post(f"{URL}/email", json=body, headers=agent_key).status_code == 400
    with app.app_context():
        assert db.session.scalars(select(EmailChange)).all() == []


def test_an_account_without_email_gets_one(app: Flask, client: FlaskClient, make_key: Callable[[str], Headers], make_account: Callable[..., Account], smtp: SmtpSink) -> None:
    make_account("noemail", email=None)
    key = make_key("agent")
    assert client.post("/api/v1/support/accounts/noemail/email", json={"email": "found@example.org"}, headers=key).status_code == 202
    path = confirmation_path(app, smtp, "found@example.org")
    assert confirm(app.test_client(), path).status_code == 200
    with app.app_context():
        account = db.session.scalar(select(Account).where(Account.username == "noemail"))
        assert account is not None and account.email == "found@example.org"
    assert client.post("/api/v1/support/accounts/nobody/email", json={"email": "x@example.org"}, headers=key).status_code == 404


def test_the_old_address_hears_of_a_change_before_it_happens_and_a_freeze_stops_it(
    app: Flask, client: FlaskClient, agent_key: Headers, smtp: SmtpSink
) -> None:
    """A caller talks an agent into changing the email: the owner, told at the address that still
    works, calls in, and the account is frozen; the link the caller holds is dead."""
    assert client.post(f"{URL}/email", json={"email": "thief@example.net"}, headers=agent_key).status_code == 202
    path = confirmation_path(app, smtp, "thief@example.net")
    [warning] = smtp.to("jane@example.com")
    assert warning["Subject"] == "Your email address is about to change"
    text = SmtpSink.text_of(warning)
    assert "customer service was asked to change the email address" in text
    assert "thief" not in text  # the notice names no address: it may be anyone's

    assert client.post(f"{URL}/freeze", json={"reason": "owner says it was not them"}, headers=agent_key).status_code == 204
    page = app.test_client().get(path, follow_redirects=True)
    assert page.status_code in (400, 410), page.get_data(as_text=True)
    assert stored(app).email == "jane@example.com"


def test_no_warning_when_the_address_only_changes_its_case(
    app: Flask, client: FlaskClient, agent_key: Headers, smtp: SmtpSink
) -> None:
    assert client.post(f"{URL}/email", json={"email": "Jane@Example.com"}, headers=agent_key).status_code == 202
    run_dispatcher(app)
    assert smtp.to("jane@example.com") == []
