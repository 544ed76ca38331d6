"""A frozen account: the right password answers account_frozen, no reset mail goes out, and its
pending resets die; unfreezing restores sign-in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from service.accounts.freezing import freeze_account, unfreeze_account
from service.models import Account, AuditEvent, PasswordReset
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.resets.issuing import issue_reset
from service.resets.policy import reset_policy
from tests.conftest import STRONG_PASSWORD, SmtpSink, run_dispatcher, smtp_settings


@pytest.fixture
def app_settings(smtp: SmtpSink) -> dict[str, Any]:
    return smtp_settings(smtp)


def freeze(app: Flask, username: str = "jane") -> None:
    with app.app_context():
        account = db.session.scalar(select(Account).where(Account.username_key == username))
        assert account is not None
        assert freeze_account(db.session, account, reason="reported", actor="cli", ip=None, now=utcnow()) is True
        db.session.commit()


def verify(client: FlaskClient, key: dict[str, str], password: str) -> Any:
    return client.post("/api/v1/auth/verify", json={"username": "jane", "password": password}, headers=key)


def test_the_right_password_of_a_frozen_account_answers_account_frozen_and_a_wrong_one_401(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], client_key: dict[str, str]
) -> None:
    make_account()
    freeze(app)
    frozen = verify(client, client_key, STRONG_PASSWORD)
    assert frozen.status_code == 403 and frozen.get_json()["code"] == "account_frozen"
    wrong = verify(client, client_key, "not the password at all")
    assert wrong.status_code == 401 and wrong.get_json()["code"] == "invalid_credentials"


def test_a_frozen_account_gets_no_reset_mail_and_its_pending_resets_die(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    account = make_account()
    with app.app_context():
        issue_reset(
            db.session, db.session.get(Account, account.id), "link", policy=reset_policy(), requested_by="cli",
            ip=None, now=utcnow(),
        )
        db.session.commit()
    freeze(app)
    run_dispatcher(app)
    sent_before = len(smtp.messages)
    assert client.post("/api/v1/password-resets", json={"username": "jane"}).status_code == 202
    run_dispatcher(app)
    assert len(smtp.messages) == sent_before
    with app.app_context():
        assert all(reset.revoked_at is not None for reset in db.session.scalars(select(PasswordReset)))
        [requested] = db.session.scalars(select(AuditEvent).where(AuditEvent.type == "reset.requested")).all()
        assert requested.details["outcome"] == "frozen"


def test_unfreezing_lets_the_customer_sign_in_again(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], client_key: dict[str, str]
) -> None:
    make_account()
    freeze(app)
    with app.app_context():
        account = db.session.scalar(select(Account).where(Account.username_key == "jane"))
        assert account is not None
        assert unfreeze_account(db.session, account, actor="cli", ip=None, now=utcnow()) is True
        db.session.commit()
        types = list(db.session.scalars(select(AuditEvent.type).order_by(AuditEvent.id)))
    assert types[-2:] == ["account.frozen", "account.unfrozen"]
    assert verify(client, client_key, STRONG_PASSWORD).status_code == 200
