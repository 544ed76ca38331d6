"""Closing an account over the API: it stops at once, its personal data goes, its trail stays."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from service.models import Account, AuditEvent, OutboxMessage, PasswordReset
from service.platform.extensions import db
from tests.conftest import STRONG_PASSWORD, SmtpSink, database_dump, run_dispatcher, smtp_settings

RECEIVER = "http://127.0.0.1:9/hooks"


@pytest.fixture
def app_settings(smtp: SmtpSink) -> dict[str, Any]:
    return {
        **smtp_settings(smtp), "RESET_METHOD": "link",
        "WEBHOOK_URLS": (RECEIVER,), "WEBHOOK_SECRET": "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    }


def link_token(message: Any) -> str:
    match = re.search(r"/reset-password/(\S+)", SmtpSink.text_of(message))
    assert match
    return match.group(1)


def test_closing_an_account_stops_it_erases_it_and_keeps_its_trail(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account],
    smtp: SmtpSink,
) -> None:
    jane = make_account("Jane", email="jane.doe@example.com")
    client.post("/api/v1/password-resets", json={"username": "jane"})
    run_dispatcher(app)
    token = link_token(smtp.messages[-1])
    smtp.stop()  # a second reset mail waits in the queue
    client.post("/api/v1/password-resets", json={"username": "jane"})
    run_dispatcher(app)
    with app.app_context():
        events_before = db.session.scalar(select(func.count()).where(AuditEvent.account_id == jane.id))
        # A mail that failed for good under an older version, whose error named the address.
        db.session.add(OutboxMessage(
            kind="email", recipient="jane.doe@example.com", subject="Reset your password", text_body="-",
            status="failed", attempts=8, account_id=jane.id,
            last_error="SMTPRecipientsRefused: {'jane.doe@example.com': (550, b'5.1.1 mailbox full')}",
        ))
        db.session.commit()

    assert client.delete("/api/v1/accounts/JANE", headers=client_key).status_code == 204

    # Sign-in and resets stop at once.
    verify = client.post("/api/v1/auth/verify", json={"username": "jane", "password": STRONG_PASSWORD}, headers=client_key)
    assert verify.status_code == 401
    confirm = client.post("/api/v1/password-resets/confirm", json={"token": token, "new_password": "a brand new passphrase"})
    assert confirm.status_code in (400, 404, 410)
    with app.app_context():
        assert db.session.scalar(select(func.count()).where(
            PasswordReset.account_id == jane.id, PasswordReset.revoked_at.is_(None), PasswordReset.used_at.is_(None)
        )) == 0
        row = db.session.get(Account, jane.id)
        assert row is not None and row.status == "closed" and row.username.startswith("closed-")
        assert (row.email, row.email_key, row.password_hash) == (None, None, None)
        # The trail stays, linked to the same row: one more event (account.closed), none lost.
        events_after = db.session.scalar(select(func.count()).where(AuditEvent.account_id == jane.id))
        assert events_after == events_before + 1
        hooks = db.session.scalars(select(OutboxMessage.subject).where(OutboxMessage.kind == "webhook")).all()
        assert "account.closed" in hooks

    # The queued reset mail is dropped; only the notice goes out, in the account's language.
    smtp.start()
    run_dispatcher(app)
    sent_after = [m for m in smtp.messages[1:]]
    assert [m["Subject"] for m in sent_after] == ["Your account was closed"]
    assert sent_after[0]["To"] == "jane.doe@example.com"
    assert "closed at your request" in SmtpSink.text_of(sent_after[0])

    # Nothing of the customer is left: not the address, not the name.
    dump = database_dump(app)
    assert "jane.doe@example.com" not in dump
    assert "jane" not in dump.casefold().replace("jane.doe", "")

    # The name is free again at once; the old one answers 404 for closing twice.
    assert client.delete("/api/v1/accounts/jane", headers=client_key).status_code == 404
    again = client.post("/api/v1/accounts", json={"username": "jane", "email": "new@example.com"}, headers=client_key)
    assert again.status_code == 201


def test_closing_a_missing_account_is_404_and_needs_a_client_key(
    client: FlaskClient, client_key: dict[str, str], make_key: Callable[[str], dict[str, str]],
    make_account: Callable[..., Account],
) -> None:
    make_account("jane")
    missing = client.delete("/api/v1/accounts/ghost", headers=client_key)
    assert missing.status_code == 404 and missing.json is not None and missing.json["code"] == "account_not_found"
    assert client.delete("/api/v1/accounts/jane", headers=make_key("agent")).status_code == 403
    assert client.delete("/api/v1/accounts/jane").status_code == 401


def test_the_closing_notice_is_in_french_for_a_french_account(
    app: Flask, client: FlaskClient, client_key: dict[str, str], smtp: SmtpSink
) -> None:
    created = client.post(
        "/api/v1/accounts", json={"username": "zoe", "email": "zoe@example.com", "language": "fr"}, headers=client_key
    )
    assert created.status_code == 201
    assert client.delete("/api/v1/accounts/zoe", headers=client_key).status_code == 204
    run_dispatcher(app)
    [notice] = smtp.to("zoe@example.com")
    assert notice["Subject"] == "Votre compte a été fermé"
    assert "fermé à votre demande" in SmtpSink.text_of(notice)
    assert "fermé à votre demande" in notice.get_body(preferencelist=("html",)).get_content()
