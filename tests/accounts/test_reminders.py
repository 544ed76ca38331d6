"""Forgotten usernames: one mail listing every usable account on an address, the same answer for any."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from service.models import Account, AccountStatus, AuditEvent, RequestKind, ResetRequest
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.platform.sealing import email_hashes
from tests.conftest import SmtpSink, database_dump, run_dispatcher, smtp_settings
from tests.formtools import html_of, post_form, text_of

REMINDERS = "/api/v1/username-reminders"
PUBLIC_BASE_URL = "https://account.shop.example"


@pytest.fixture
def app_settings(request: pytest.FixtureRequest, smtp: SmtpSink) -> dict[str, Any]:
    return {**smtp_settings(smtp), "PUBLIC_BASE_URL": PUBLIC_BASE_URL, "RATELIMIT_ENABLED": False, **getattr(request, "param", {})}


def family(make_account: Callable[..., Account], app: Flask) -> None:
    """Three usable accounts on one address (spelt differently), one disabled, one frozen, one elsewhere."""
    make_account("mum", email="family@example.com")
    make_account("dad", email="Family@Example.com")
    make_account("kid", email="family@example.com")
    make_account("old", email="family@example.com")
    make_account("locked", email="family@example.com")
    make_account("neighbour", email="neighbour@example.com")
    with app.app_context():
        db.session.execute(update(Account).where(Account.username == "old").values(status=AccountStatus.DISABLED))
        db.session.execute(update(Account).where(Account.username == "locked").values(frozen_at=utcnow()))
        db.session.commit()


def test_one_mail_lists_every_usable_username_on_the_address_with_a_link_each(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    family(make_account, app)
    answer = client.post(REMINDERS, json={"email": "FAMILY@example.com "})
    assert answer.status_code == 202
    run_dispatcher(app)
    assert len(smtp.messages) == 1
    text = text_of(smtp.messages[0])
    for name in ("mum", "dad", "kid"):
        assert f"{PUBLIC_BASE_URL}/reset-password?username={name}" in text
        assert f"{PUBLIC_BASE_URL}/reset-password?username={name}" in html_of(smtp.messages[0])
    for name in ("old", "locked", "neighbour"):
        assert name not in text


def test_an_unused_address_gets_the_same_answer_and_no_mail(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account("jane", email="jane@example.com")
    used = client.post(REMINDERS, json={"email": "jane@example.com"})
    unused = client.post(REMINDERS, json={"email": "ghost@example.com"})
    assert (used.status_code, used.get_json()) == (unused.status_code, unused.get_json())
    assert used.status_code == 202
    run_dispatcher(app)
    assert [m["To"] for m in smtp.messages] == ["jane@example.com"]


def test_the_request_path_keeps_the_address_sealed_and_looks_nothing_up(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    client.post(REMINDERS, json={"email": "ghost@example.com"})
    with app.app_context():
        request = db.session.scalars(select(ResetRequest)).one()
        assert request.kind == RequestKind.USERNAME_REMINDER
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == 0
    assert "ghost@example.com" not in database_dump(app)
    run_dispatcher(app)
    assert "ghost@example.com" not in database_dump(app)
    with app.app_context():
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.type == "username.reminder_requested")).one()
        assert event.details["outcome"] == "no_account"
        assert event.details["email_hash"] == email_hashes("Ghost@example.com")[0]


def test_the_dispatcher_writes_the_mail_for_an_unused_address_too(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import service.accounts.reminders as reminders

    rendered: list[str] = []
    real = reminders.render_email

    def counting(template: str, *args: Any, **kwargs: Any) -> Any:
        rendered.append(template)
        return real(template, *args, **kwargs)

    monkeypatch.setattr(reminders, "render_email", counting)
    client.post(REMINDERS, json={"email": "ghost@example.com"})
    run_dispatcher(app)
    assert rendered == ["username_reminder"]


def test_the_pages_ask_for_an_address_and_answer_alike(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account("jane", email="jane@example.com")
    assert 'href="/forgot-username"' in client.get("/reset-password").get_data(as_text=True)
    used = post_form(client, "/forgot-username", {"email": "jane@example.com"})
    unused = post_form(client, "/forgot-username", {"email": "ghost@example.com"})
    assert used.status_code == unused.status_code == 200
    assert used.get_data(as_text=True) == unused.get_data(as_text=True)
    run_dispatcher(app)
    assert [m["To"] for m in smtp.messages] == ["jane@example.com"]
    french = client.get("/forgot-username", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert "Nom d’utilisateur oublié" in french


def test_the_link_in_the_mail_fills_in_the_reset_box_and_sends_nothing(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account]
) -> None:
    make_account("jane", email="jane@example.com")
    page = client.get("/reset-password?username=jane")
    assert page.status_code == 200
    assert 'value="jane"' in page.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ResetRequest)) == 0


@pytest.mark.parametrize(
    "app_settings", [{"RATELIMIT_ENABLED": True, "RATELIMIT_REMINDER_PER_ADDRESS": "2/hour"}], indirect=True
)
def test_reminders_are_limited_per_address_from_any_client(app: Flask, client: FlaskClient) -> None:
    statuses = [
        client.post(REMINDERS, json={"email": "Jane@example.com"}, environ_base={"REMOTE_ADDR": f"203.0.113.{n}"}).status_code
        for n in range(3)
    ]
    assert statuses == [202, 202, 429]
    # The page shares the limit.
    assert post_form(client, "/forgot-username", {"email": "jane@example.com"}).status_code == 429
    assert client.post(REMINDERS, json={"email": "other@example.com"}).status_code == 202


@pytest.mark.parametrize(
    "app_settings", [{"RATELIMIT_ENABLED": True, "RATELIMIT_REMINDER_PER_IP": "2/minute"}], indirect=True
)
def test_reminders_are_limited_per_client_address(app: Flask, client: FlaskClient) -> None:
    statuses = [client.post(REMINDERS, json={"email": f"person{n}@example.com"}).status_code for n in range(3)]
    assert statuses == [202, 202, 429]


def test_a_sent_reminder_keeps_no_address_so_closing_and_exports_have_none_to_miss(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    """A reminder belongs to no account (one mail may list several): its envelope kept the
    typed address after sending, which neither an account's closing nor its export reached."""
    from service.models import OutboxMessage

    make_account("mum", email="family@example.com")
    assert client.post(REMINDERS, json={"email": "family@example.com"}).status_code == 202
    run_dispatcher(app)
    assert [message["To"] for message in smtp.messages] == ["family@example.com"]
    with app.app_context():
        envelopes = db.session.execute(select(OutboxMessage.recipient, OutboxMessage.account_id)).all()
    assert [tuple(row) for row in envelopes] == [("(erased)", None)]


@pytest.mark.parametrize("app_settings", [{"MAIL_PORT": 9, "MAIL_TIMEOUT": 1}], indirect=True)
def test_closing_an_account_drops_a_reminder_still_queued_for_its_address(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    """It went out after the closing, naming the closed account, and kept the erased address
    in the outbox until then."""
    from service.models import OutboxMessage

    make_account("frank", email="frank@example.com")
    make_account("other", email="other@example.com")
    for address in ("Frank@Example.com", "other@example.com"):
        assert client.post(REMINDERS, json={"email": address}).status_code == 202
    run_dispatcher(app)  # written and queued; the mail server does not answer, so they wait
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "pending")) == 2
    assert client.delete("/api/v1/accounts/frank", headers=client_key).status_code == 204
    with app.app_context():
        waiting = db.session.scalars(select(OutboxMessage.recipient).where(OutboxMessage.account_id.is_(None))).all()
        # Frank's address is left only on the closing notice, until it is sent.
        holding = db.session.scalars(
            select(OutboxMessage.subject).where(func.lower(OutboxMessage.recipient) == "frank@example.com")
        ).all()
    assert waiting == ["other@example.com"]
    assert holding == ["Your account was closed"]
