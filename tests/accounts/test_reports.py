""""This wasn't me": the link in reset mails and password-changed notices."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from service.models import Account, OutboxKind, OutboxMessage
from service.outbox.queue import open_body
from service.platform.extensions import db
from tests.conftest import OTHER_STRONG_PASSWORD, STRONG_PASSWORD, SmtpSink, run_dispatcher, smtp_settings
from tests.formtools import csrf_token_in, html_of, text_of
from tests.resets.test_resets import (
    PUBLIC_BASE_URL,
    RESETS,
    ask_for_reset,
    audit_events,
    confirm,
    problem_code,
    token_in,
    verify,
)

REPORT = re.compile(re.escape(PUBLIC_BASE_URL) + r"(/report/\S+)")


@pytest.fixture
def app_settings(smtp: SmtpSink) -> dict[str, Any]:
    return {
        **smtp_settings(smtp), "PUBLIC_BASE_URL": PUBLIC_BASE_URL, "RATELIMIT_ENABLED": False,
        "WEBHOOK_URLS": ("http://127.0.0.1:9/hooks",), "WEBHOOK_SECRET": "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    }


def report_path(message: EmailMessage) -> str:
    match = REPORT.search(text_of(message))
    assert match, text_of(message)
    assert match.group(1) in html_of(message)
    return match.group(1)


def press(client: FlaskClient, path: str) -> Any:
    page = client.get(path)
    assert page.status_code == 200
    return client.post(path, data={"csrf_token": csrf_token_in(page.get_data(as_text=True))})


def webhook_types(app: Flask) -> list[str]:
    with app.app_context():
        return [json.loads(open_body(m.text_body))["type"] for m in db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == OutboxKind.WEBHOOK)
        )]


def test_reporting_a_reset_mail_kills_pending_resets_and_shows_the_phone(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    assert ask_for_reset(client, "jane").status_code == 202
    run_dispatcher(app)
    [mail] = smtp.to("jane@example.com")
    path = report_path(mail)
    # Opening the link does nothing but show a button.
    page = client.get(path)
    assert page.status_code == 200 and "<button" in page.get_data(as_text=True)
    assert client.get(f"{RESETS}/{token_in(mail)}").status_code == 200
    assert audit_events(app, "account.reported") == []

    done = press(client, path)
    assert done.status_code == 200
    html = done.get_data(as_text=True)
    assert 'href="tel:+18445607790"' in html and "Monday to Friday" in html
    assert problem_code(confirm(client, token_in(mail), OTHER_STRONG_PASSWORD)) == "token_invalid"
    [event] = audit_events(app, "account.reported")
    assert event.details["from"] == "reset"
    assert audit_events(app, "account.frozen") == []
    assert "account.reported" in webhook_types(app)


def test_reporting_a_password_change_freezes_the_account(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    changed = client.post(
        "/api/v1/accounts/jane/password",
        json={"current_password": STRONG_PASSWORD, "new_password": OTHER_STRONG_PASSWORD}, headers=client_key,
    )
    assert changed.status_code == 204
    run_dispatcher(app)
    [notice] = [m for m in smtp.to("jane@example.com") if m["Subject"] == "Your password was changed"]
    assert press(client, report_path(notice)).status_code == 200
    assert problem_code(verify(client, client_key, "jane", OTHER_STRONG_PASSWORD)) == "account_frozen"
    assert len(audit_events(app, "account.frozen")) == 1
    assert len(audit_events(app, "account.reported")) == 1
    assert {"account.reported", "account.frozen"} <= set(webhook_types(app))
    # A frozen account gets no reset mail.
    before = len(smtp.messages)
    ask_for_reset(client, "jane")
    run_dispatcher(app)
    assert len([m for m in smtp.messages[before:] if m["To"] == "jane@example.com"]) == 0


def test_a_forged_report_link_is_refused(app: Flask, client: FlaskClient) -> None:
    assert client.get("/report/not-a-token").status_code == 400


# --- a link reports one thing, once -----------------------------------------------------------

START = datetime(2025, 6, 2, 14, 0, tzinfo=UTC)  # a Monday; mail is due at once
THIRD_PASSWORD = "a third strong passphrase here"


def change_password(client: FlaskClient, client_key: dict[str, str], current: str, new: str) -> None:
    changed = client.post(
        "/api/v1/accounts/jane/password", json={"current_password": current, "new_password": new}, headers=client_key
    )
    assert changed.status_code == 204


def change_notices(smtp: SmtpSink) -> list[EmailMessage]:
    return [m for m in smtp.to("jane@example.com") if m["Subject"] == "Your password was changed"]


def assert_kindly_out_of_date(page: Any) -> None:
    """The page a spent link shows: it did nothing, and says whom to call, and when."""
    assert page.status_code == 410
    html = page.get_data(as_text=True)
    assert "This link can no longer be used" in html
    assert 'href="tel:+18445607790"' in html and "Monday to Friday" in html
    assert "<button" not in html


def test_a_reported_change_cannot_freeze_the_account_again_once_unfrozen(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_key: Callable[[str], dict[str, str]],
    make_account: Callable[..., Account], smtp: SmtpSink,
) -> None:
    make_account()
    change_password(client, client_key, STRONG_PASSWORD, OTHER_STRONG_PASSWORD)
    run_dispatcher(app)
    path = report_path(change_notices(smtp)[-1])
    assert press(client, path).status_code == 200
    unfrozen = client.post("/api/v1/support/accounts/jane/unfreeze", headers=make_key("agent"))
    assert unfrozen.status_code == 204

    page = client.get(path)
    assert_kindly_out_of_date(page)
    assert "already been used" in page.get_data(as_text=True)
    posted = client.post(path, data={"csrf_token": csrf_token_in(client.get("/reset-password").get_data(as_text=True))})
    assert_kindly_out_of_date(posted)
    assert verify(client, client_key, "jane", OTHER_STRONG_PASSWORD).status_code == 200
    assert len(audit_events(app, "account.reported")) == 1
    assert len(audit_events(app, "account.frozen")) == 1


def test_a_change_notices_link_is_out_of_date_once_the_password_changes_again(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    with time_machine.travel(START, tick=False) as clock:
        make_account()
        change_password(client, client_key, STRONG_PASSWORD, OTHER_STRONG_PASSWORD)
        clock.shift(timedelta(minutes=5))
        change_password(client, client_key, OTHER_STRONG_PASSWORD, THIRD_PASSWORD)
        run_dispatcher(app)
        older, newer = (report_path(notice) for notice in change_notices(smtp))

        page = client.get(older)
        assert_kindly_out_of_date(page)
        assert "changed again" in page.get_data(as_text=True)
        assert verify(client, client_key, "jane", THIRD_PASSWORD).status_code == 200
        assert audit_events(app, "account.reported") == []
        # The newest notice's link still does its work.
        assert press(client, newer).status_code == 200
        assert problem_code(verify(client, client_key, "jane", THIRD_PASSWORD)) == "account_frozen"


def test_a_reset_mails_link_stops_only_the_resets_asked_for_up_to_that_mail_and_only_once(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    with time_machine.travel(START, tick=False) as clock:
        make_account()
        assert ask_for_reset(client, "jane").status_code == 202
        run_dispatcher(app)
        clock.shift(timedelta(minutes=5))
        assert ask_for_reset(client, "jane").status_code == 202
        run_dispatcher(app)
        first, second = smtp.to("jane@example.com")
        clock.shift(timedelta(minutes=5))
        assert press(client, report_path(first)).status_code == 200
        assert problem_code(confirm(client, token_in(first), OTHER_STRONG_PASSWORD)) == "token_invalid"
        assert_kindly_out_of_date(client.get(report_path(first)))
        # A reset asked for after that mail is not the mail's to stop.
        assert confirm(client, token_in(second), OTHER_STRONG_PASSWORD).status_code == 204
    assert len(audit_events(app, "account.reported")) == 1
