"""A closed account stays closed: nothing can give it data or mail again, nothing it was asked to
change to survives, and the trail of searches for it keeps no readable trace of the customer."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from service.models import Account, AuditEvent, EmailChange
from service.platform.extensions import db
from service.platform.sealing import username_hash
from tests.conftest import SmtpSink, database_dump, run_dispatcher, smtp_settings

Headers = dict[str, str]
CONFIRM_LINK = re.compile(r"http://localhost(/confirm-email/\S+)")
RESET_LINK = re.compile(r"/reset-password/(\S+)")


@pytest.fixture
def app_settings(smtp: SmtpSink) -> dict[str, Any]:
    return smtp_settings(smtp)


def pseudonym_of(app: Flask, account_id: int) -> str:
    with app.app_context():
        account = db.session.get(Account, account_id)
        assert account is not None and account.status == "closed"
        return account.username


def test_nothing_can_be_done_to_a_closed_account_but_read_its_trail(
    app: Flask, client: FlaskClient, make_key: Callable[[str], Headers], make_account: Callable[..., Account],
    smtp: SmtpSink,
) -> None:
    erin = make_account("erin", email="erin@example.com")
    website, agent = make_key("client"), make_key("agent")
    assert client.delete("/api/v1/accounts/erin", headers=website).status_code == 204
    closed = pseudonym_of(app, erin.id)
    support = f"/api/v1/support/accounts/{closed}"

    attempts = {
        "profile": client.patch(f"/api/v1/accounts/{closed}", json={"email": "revive@example.com", "full_name": "Revived"}, headers=website),
        "email": client.post(f"{support}/email", json={"email": "revive2@example.com"}, headers=agent),
        "reset": client.post(f"{support}/password-resets", json={"method": "link"}, headers=agent),
        "freeze": client.post(f"{support}/freeze", json={"reason": "fraud"}, headers=agent),
        "unfreeze": client.post(f"{support}/unfreeze", json={}, headers=agent),
        "unlock": client.post(f"{support}/unlock", headers=agent),
        "close again": client.delete(f"/api/v1/accounts/{closed}", headers=website),
    }
    assert {name: response.status_code for name, response in attempts.items()} == dict.fromkeys(attempts, 404)
    assert client.get(f"{support}/events", headers=agent).status_code == 200

    run_dispatcher(app)
    assert [message["Subject"] for message in smtp.messages] == ["Your account was closed"]
    with app.app_context():
        row = db.session.get(Account, erin.id)
        assert row is not None and (row.email, row.full_name) == (None, None)
    assert "revive" not in database_dump(app)


def test_closing_ends_the_email_changes_and_their_links(
    app: Flask, client: FlaskClient, make_key: Callable[[str], Headers], make_account: Callable[..., Account],
    smtp: SmtpSink,
) -> None:
    make_account("carol", email="carol@example.com")
    agent = make_key("agent")
    for address in ("carol.new1@example.com", "carol.new2@example.com"):
        assert client.post("/api/v1/support/accounts/carol/email", json={"email": address}, headers=agent).status_code == 202
    run_dispatcher(app)
    [mail] = smtp.to("carol.new2@example.com")
    link = CONFIRM_LINK.search(SmtpSink.text_of(mail))
    assert link is not None

    assert client.delete("/api/v1/accounts/carol", headers=make_key("client")).status_code == 204

    with app.app_context():
        assert db.session.scalars(select(EmailChange)).all() == []
    assert "carol.new" not in database_dump(app)
    # The link that was still out leads nowhere now.
    assert client.get(link.group(1), follow_redirects=True).status_code in (400, 404, 410)


def test_a_support_search_keeps_only_a_keyed_hash_of_what_was_typed(
    app: Flask, client: FlaskClient, make_key: Callable[[str], Headers], make_account: Callable[..., Account],
) -> None:
    make_account("erin", email="erin@example.com")
    agent = make_key("agent")
    for query in ("erin@example.com", "Erin"):
        assert client.get("/api/v1/support/accounts", query_string={"q": query}, headers=agent).status_code == 200
    assert client.delete("/api/v1/accounts/erin", headers=make_key("client")).status_code == 204

    with app.app_context():
        searches = db.session.scalars(select(AuditEvent.details).where(AuditEvent.type == "support.searched")).all()
        # Whoever has the address can check that it was looked for; the trail cannot say it.
        assert searches == [{"query_hash": username_hash("erin@example.com")}, {"query_hash": username_hash("erin")}]
    run_dispatcher(app)  # the closing notice, the last mail to the address
    assert "erin@example.com" not in database_dump(app)


@pytest.mark.parametrize("how", ["website", "agent"])
def test_a_new_email_ends_the_resets_sent_to_the_old_one(
    app: Flask, client: FlaskClient, make_key: Callable[[str], Headers], make_account: Callable[..., Account],
    smtp: SmtpSink, how: str,
) -> None:
    """Whoever still reads the old mailbox must not take the account over with a link sent there."""
    make_account("xena", email="xena@example.com")
    agent = make_key("agent")
    assert client.post("/api/v1/support/accounts/xena/password-resets", json={"method": "link"}, headers=agent).status_code == 202
    run_dispatcher(app)
    [reset_mail] = smtp.to("xena@example.com")
    token = RESET_LINK.search(SmtpSink.text_of(reset_mail))
    assert token is not None
    assert client.get(f"/api/v1/password-resets/{token.group(1)}").get_json()["valid"] is True

    if how == "website":
        changed = client.patch("/api/v1/accounts/xena", json={"email": "xena.new@example.com"}, headers=make_key("client"))
        assert changed.status_code == 200
    else:
        assert client.post("/api/v1/support/accounts/xena/email", json={"email": "xena.new@example.com"}, headers=agent).status_code == 202
        run_dispatcher(app)
        [confirmation] = smtp.to("xena.new@example.com")
        link = CONFIRM_LINK.search(SmtpSink.text_of(confirmation))
        assert link is not None
        page = client.get(link.group(1), follow_redirects=True)
        csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.get_data(as_text=True))
        assert csrf is not None
        assert client.post("/confirm-email", data={"csrf_token": csrf.group(1)}).status_code in (200, 302, 303)

    answer = client.get(f"/api/v1/password-resets/{token.group(1)}")
    assert answer.status_code != 200 or answer.get_json()["valid"] is False, answer.get_data(as_text=True)
