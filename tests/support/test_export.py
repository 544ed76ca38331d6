"""What is held about a customer: the admin export and `users export` give the same JSON, no secret."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select

from service.models import Account, PasswordReset
from service.platform.extensions import db
from tests.conftest import SmtpSink, run_dispatcher, smtp_settings

EXPORT = "/api/v1/support/accounts/{}/export"


@pytest.fixture
def app_settings(smtp: SmtpSink) -> dict[str, Any]:
    return {**smtp_settings(smtp), "RESET_METHOD": "link"}


def test_the_export_holds_profile_events_and_mail_envelopes_and_no_secret(
    app: Flask, client: FlaskClient, runner: FlaskCliRunner, make_account: Callable[..., Account],
    make_key: Callable[[str], dict[str, str]], smtp: SmtpSink,
) -> None:
    jane = make_account("jane")
    client.post("/api/v1/password-resets", json={"username": "jane"})
    run_dispatcher(app)
    [mail] = smtp.messages
    token = SmtpSink.text_of(mail).split("/reset-password/")[1].split()[0]

    answer = client.get(EXPORT.format("JANE"), headers=make_key("admin"))
    assert answer.status_code == 200
    export = answer.json
    assert export is not None
    assert export["profile"]["username"] == "jane" and export["profile"]["email"] == "jane@example.com"
    assert [e["type"] for e in export["events"]] == ["account.created", "reset.requested", "reset.issued", "mail.sent"]
    assert export["events"][1]["details"]["outcome"] == "issued"
    assert [(m["recipient"], m["subject"], m["status"]) for m in export["mail"]] == [
        ("jane@example.com", mail["Subject"], "sent")
    ]
    assert export["password_resets"][0]["method"] == "link"

    text = json.dumps(export)
    with app.app_context():
        account = db.session.get(Account, jane.id)
        assert account is not None and account.password_hash
        secret_hash = db.session.scalars(select(PasswordReset.secret_hash)).one()
        for secret in (account.password_hash, secret_hash, token, "$argon2"):
            assert secret not in text
        assert "password_hash" not in text and "secret_hash" not in text

    printed = runner.invoke(args=["users", "export", "jane"])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.output) == export


def test_the_export_is_for_admins_only_and_404_for_no_account(
    client: FlaskClient, runner: FlaskCliRunner, make_account: Callable[..., Account],
    make_key: Callable[[str], dict[str, str]],
) -> None:
    make_account("jane")
    assert client.get(EXPORT.format("jane"), headers=make_key("agent")).status_code == 403
    assert client.get(EXPORT.format("jane"), headers=make_key("client")).status_code == 403
    missing = client.get(EXPORT.format("ghost"), headers=make_key("admin"))
    assert missing.status_code == 404 and missing.json is not None and missing.json["code"] == "account_not_found"
    assert runner.invoke(args=["users", "export", "ghost"]).exit_code != 0
