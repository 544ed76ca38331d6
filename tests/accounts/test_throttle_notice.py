"""When sign-in throttling starts for an account with an email, that address hears of it once a window."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from service.accounts.throttle import WINDOW_MINUTES
from service.models import Account, OutboxMessage
from service.platform.clock import utcnow
from service.platform.extensions import db
from tests.conftest import SmtpSink, run_dispatcher, smtp_settings
from tests.formtools import html_of, text_of

MAX_FAILURES = 3
PUBLIC_BASE_URL = "https://account.shop.example"


@pytest.fixture
def app_settings(smtp: SmtpSink) -> dict[str, Any]:
    return {**smtp_settings(smtp), "LOGIN_MAX_FAILURES": MAX_FAILURES, "PUBLIC_BASE_URL": PUBLIC_BASE_URL}


def guess(client: FlaskClient, key: dict[str, str], username: str, times: int) -> list[int]:
    return [
        client.post("/api/v1/auth/verify", json={"username": username, "password": "wrong guess"}, headers=key).status_code
        for _ in range(times)
    ]


def queued(app: Flask) -> int:
    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(OutboxMessage)) or 0)


def test_the_owner_hears_once_when_throttling_starts_with_a_way_to_reset(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    assert guess(client, client_key, "jane", MAX_FAILURES + 3) == [401] * MAX_FAILURES + [429] * 3
    run_dispatcher(app)
    (notice,) = smtp.to("jane@example.com")
    assert f"{PUBLIC_BASE_URL}/reset-password?username=jane" in text_of(notice)
    assert f"{PUBLIC_BASE_URL}/reset-password?username=jane" in html_of(notice)
    assert "paused" in text_of(notice)


def test_each_new_throttle_window_sends_one_more(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    guess(client, client_key, "jane", MAX_FAILURES + 1)
    with time_machine.travel(utcnow() + timedelta(minutes=WINDOW_MINUTES + 1)):
        guess(client, client_key, "jane", MAX_FAILURES + 1)
        run_dispatcher(app)
    assert len(smtp.to("jane@example.com")) == 2


def test_nothing_is_sent_for_a_missing_username_or_an_account_without_email(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    make_account("bob", email=None)
    guess(client, client_key, "nobody", MAX_FAILURES + 1)
    guess(client, client_key, "bob", MAX_FAILURES + 1)
    assert queued(app) == 0
