"""Profile fields: full name and phone at sign-up, and the website's PATCH of email, name,
phone and language, with a notice to the old address when the email changes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from service.models import Account, AuditEvent, OutboxKind, OutboxMessage
from service.platform.extensions import db
from tests.conftest import SmtpSink, run_dispatcher, smtp_settings

ACCOUNTS = "/api/v1/accounts"


@pytest.fixture
def app_settings(smtp: SmtpSink) -> dict[str, Any]:
    return smtp_settings(smtp)


def patch(client: FlaskClient, key: dict[str, str], body: Any, username: str = "jane") -> Any:
    return client.patch(f"{ACCOUNTS}/{username}", json=body, headers=key)


def mails(app: Flask) -> list[OutboxMessage]:
    with app.app_context():
        return list(db.session.scalars(select(OutboxMessage).where(OutboxMessage.kind == OutboxKind.EMAIL)))


def event_types(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent.type).order_by(AuditEvent.id)))


def test_sign_up_keeps_full_name_and_phone(client: FlaskClient, client_key: dict[str, str]) -> None:
    response = client.post(
        ACCOUNTS, json={"username": "jane", "full_name": " Jane López ", "phone": "+1 (514) 555-0199"}, headers=client_key
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["full_name"] == "Jane López"
    assert body["phone"] == "+1 (514) 555-0199"


@pytest.mark.parametrize(
    ("body", "field"),
    [({"phone": "call me"}, "phone"), ({"phone": "1" * 41}, "phone"), ({"full_name": "x" * 201}, "full_name"),
     ({"full_name": "a\u0000b"}, "full_name")],
)
def test_sign_up_refuses_a_bad_name_or_phone(client: FlaskClient, client_key: dict[str, str], body: dict[str, str], field: str) -> None:
    response = client.post(ACCOUNTS, json={"username": "jane", **body}, headers=client_key)
    assert response.status_code == 400
    assert response.get_json()["errors"][0]["field"] == field


def test_patch_changes_every_field_at_once(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    make_account("jane", email="jane@example.com")
    response = patch(client, client_key, {"full_name": "Jane Lopez", "phone": "514 555 0199", "language": "fr-CA"})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["full_name"], body["phone"], body["language"], body["email"]) == (
        "Jane Lopez", "514 555 0199", "fr", "jane@example.com"
    )
    assert mails(app) == []  # no email change, no notice
    assert patch(client, client_key, {"phone": None}).get_json()["phone"] is None


def test_a_changed_email_tells_the_old_address(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account("jane", email="jane@example.com")
    response = patch(client, client_key, {"email": "jane.new@example.org"})
    assert response.status_code == 200
    assert response.get_json()["email"] == "jane.new@example.org"
    with app.app_context():
        account = db.session.scalar(select(Account).where(Account.username == "jane"))
        assert account is not None and account.email_key == "jane.new@example.org"
    assert "account.email_changed" in event_types(app)
    run_dispatcher(app)
    [notice] = smtp.to("jane@example.com")
    assert "changed" in SmtpSink.text_of(notice)
    assert notice.get_body(preferencelist=("html",)) is not None
    assert smtp.to("jane.new@example.org") == []


def test_the_notice_speaks_the_account_language(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account("jane", email="jane@example.com")
    patch(client, client_key, {"language": "fr", "email": "jane.new@example.org"})
    run_dispatcher(app)
    [notice] = smtp.to("jane@example.com")
    assert "adresse" in SmtpSink.text_of(notice)


def test_patch_of_a_missing_account_is_404(client: FlaskClient, client_key: dict[str, str]) -> None:
    response = patch(client, client_key, {"full_name": "Nobody"}, username="nobody")
    assert response.status_code == 404
    assert response.get_json()["code"] == "account_not_found"


@pytest.mark.parametrize("body", [{}, {"username": "other"}, {"password": "x"}, {"email": "not-an-email"}, {"language": "de"}, {"phone": 5}])
def test_patch_refuses_what_it_cannot_change_and_changes_nothing(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account], body: dict[str, Any]
) -> None:
    make_account("jane", email="jane@example.com")
    response = patch(client, client_key, {**body})
    assert response.status_code == 400
    assert event_types(app) == ["api_key.created", "account.created"]


def test_patch_needs_a_client_key(client: FlaskClient, make_account: Callable[..., Account]) -> None:
    make_account("jane")
    assert patch(client, {}, {"full_name": "x"}).status_code == 401


def test_agents_see_frozen_full_name_and_phone(
    client: FlaskClient, client_key: dict[str, str], make_key: Callable[[str], dict[str, str]], make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    patch(client, client_key, {"full_name": "Jane Lopez", "phone": "514 555 0199"})
    agent = make_key("agent")
    overview = client.get("/api/v1/support/accounts/jane", headers=agent).get_json()
    assert (overview["frozen"], overview["full_name"], overview["phone"]) == (False, "Jane Lopez", "514 555 0199")
    [found] = client.get("/api/v1/support/accounts", query_string={"q": "jane"}, headers=agent).get_json()["accounts"]
    assert found["full_name"] == "Jane Lopez" and found["frozen"] is False
