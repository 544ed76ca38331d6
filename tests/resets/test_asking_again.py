"""Asking again never strands anyone: older mails keep working, and an hourly cap on reset mails."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from service.models import Account, AuditEvent, PasswordReset
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.resets.issuing import issue_reset
from service.resets.policy import reset_policy
from tests.conftest import OTHER_STRONG_PASSWORD, SmtpSink, run_dispatcher, smtp_settings
from tests.formtools import post_form
from tests.resets.test_resets import (
    PUBLIC_BASE_URL,
    ask_for_reset,
    confirm,
    problem_code,
    temporary_password_in,
    token_in,
    verify,
)


@pytest.fixture
def app_settings(request: pytest.FixtureRequest, smtp: SmtpSink) -> dict[str, Any]:
    return {
        **smtp_settings(smtp), "PUBLIC_BASE_URL": PUBLIC_BASE_URL, "RATELIMIT_ENABLED": False,
        **getattr(request, "param", {}),
    }


def ask_times(app: Flask, client: FlaskClient, times: int, username: str = "jane") -> None:
    for _ in range(times):
        assert ask_for_reset(client, username).status_code == 202
        run_dispatcher(app)


def test_asking_three_times_then_using_the_first_link_succeeds(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    ask_times(app, client, 3)
    first, second, third = (token_in(m) for m in smtp.to("jane@example.com"))
    assert confirm(client, first, OTHER_STRONG_PASSWORD).status_code == 204
    assert verify(client, client_key, "jane", OTHER_STRONG_PASSWORD).status_code == 200
    for token in (second, third):
        assert problem_code(confirm(client, token, "a third strong passphrase")) == "token_invalid"


@pytest.mark.parametrize("app_settings", [{"RESET_METHOD": "temporary_password"}], indirect=True)
def test_asking_three_times_then_using_the_first_temporary_password_succeeds(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    ask_times(app, client, 3)
    first, second, third = (temporary_password_in(m) for m in smtp.to("jane@example.com"))
    signed_in = verify(client, client_key, "jane", first)
    assert signed_in.status_code == 200
    assert signed_in.get_json()["must_change_password"] is True
    # Using one killed the others.
    for temporary in (second, third):
        assert problem_code(verify(client, client_key, "jane", temporary)) == "invalid_credentials"


@pytest.mark.parametrize("app_settings", [{"RESET_METHOD": "temporary_password"}], indirect=True)
def test_any_of_several_pending_temporary_passwords_signs_in(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    ask_times(app, client, 3)
    _first, second, _third = (temporary_password_in(m) for m in smtp.to("jane@example.com"))
    assert verify(client, client_key, "jane", second).status_code == 200


def test_an_agent_reset_still_ends_the_pending_self_service_ones(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    ask_times(app, client, 1)
    [mail] = smtp.to("jane@example.com")
    with app.app_context():
        account = db.session.scalar(select(Account).where(Account.username_key == "jane"))
        issue_reset(db.session, account, "link", policy=reset_policy(), requested_by="cli", ip=None, now=utcnow())
        db.session.commit()
    assert problem_code(confirm(client, token_in(mail), OTHER_STRONG_PASSWORD)) == "token_invalid"


def test_an_account_gets_at_most_reset_mails_per_hour_even_without_rate_limits(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    ask_times(app, client, 5)
    assert len(smtp.to("jane@example.com")) == 3
    with app.app_context():
        assert len(db.session.scalars(select(PasswordReset)).all()) == 3
        outcomes = [e.details["outcome"] for e in db.session.scalars(
            select(AuditEvent).where(AuditEvent.type == "reset.requested").order_by(AuditEvent.id)
        )]
    assert outcomes == ["issued", "issued", "issued", "capped", "capped"]
    with time_machine.travel(utcnow() + timedelta(minutes=61), tick=False):
        ask_times(app, client, 1)
    assert len(smtp.to("jane@example.com")) == 4


@pytest.mark.parametrize("app_settings", [{"RESET_MAILS_PER_HOUR": 1}], indirect=True)
def test_the_cap_is_a_setting(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    ask_times(app, client, 2)
    assert len(smtp.to("jane@example.com")) == 1


def test_a_capped_request_costs_the_dispatcher_the_same_work(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], monkeypatch: pytest.MonkeyPatch
) -> None:
    import service.resets.issuing as rules

    hashed: list[str] = []
    real_secret = rules.new_reset_secret

    def counting_secret(method: str) -> tuple[str, str]:
        hashed.append(method)
        return real_secret(method)

    monkeypatch.setattr(rules, "new_reset_secret", counting_secret)
    make_account()
    ask_times(app, client, 4)
    assert len(hashed) == 4


@pytest.mark.parametrize("app_settings", [{"RATELIMIT_ENABLED": True, "RATELIMIT_RESET_PER_IP": "1/hour"}],
                         indirect=True)
def test_the_429_says_how_long_to_wait_in_words_and_offers_the_phone(
    app: Flask, client: FlaskClient
) -> None:
    assert ask_for_reset(client, "jane").status_code == 202
    refused = ask_for_reset(client, "jane")
    assert refused.status_code == 429
    detail = refused.get_json()["detail"]
    assert "Please try again in about an hour, or call customer service at 1-844-560-7790." in detail
    assert "1-844-560-7790" in detail
    page = post_form(client, "/reset-password", {"username": "jane"})
    assert page.status_code == 429
    html = page.get_data(as_text=True)
    assert "about" in html and 'href="tel:+18445607790"' in html


@pytest.mark.parametrize("app_settings", [{"RESET_MAILS_PER_HOUR": 2}], indirect=True, ids=["two-an-hour"])
def test_agent_resets_count_toward_the_accounts_hourly_cap_too(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], make_key: Callable[[str], dict[str, str]]
) -> None:
    make_account("jane")
    agent = make_key("agent")
    url = "/api/v1/support/accounts/jane/password-resets"
    assert client.post(url, json={"method": "link"}, headers=agent).status_code == 202
    assert client.post(url, json={"method": "link"}, headers=agent).status_code == 202
    refused = client.post(url, json={"method": "link"}, headers=agent)
    assert refused.status_code == 429 and refused.get_json()["code"] == "rate_limited"
    assert 3000 < int(refused.headers["Retry-After"]) <= 3601
    with app.app_context():
        issued = db.session.scalar(select(func.count()).select_from(PasswordReset))
    assert issued == 2
