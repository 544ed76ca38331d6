"""The password-changed notice explains: when (in the shop's zone and the customer's language),
how, and from which address; and a change made with a temporary password sends one notice."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from service.models import Account
from service.platform.extensions import db
from tests.conftest import OTHER_STRONG_PASSWORD, STRONG_PASSWORD, SmtpSink, run_dispatcher, smtp_settings
from tests.formtools import html_of, text_of
from tests.resets.test_resets import PUBLIC_BASE_URL, ask_for_reset, confirm, temporary_password_in, token_in, verify

# 14:14 UTC on Tuesday 1 December 2026 is 9:14 AM in New York (EST).
CHANGED_AT = datetime(2026, 12, 1, 14, 14, tzinfo=UTC)
CUSTOMER_IP = "203.0.113.7"
NEW_PASSWORD = "a third strong passphrase here"


@pytest.fixture
def app_settings(request: pytest.FixtureRequest, smtp: SmtpSink) -> dict[str, Any]:
    return {**smtp_settings(smtp), "PUBLIC_BASE_URL": PUBLIC_BASE_URL, "RATELIMIT_ENABLED": False, **getattr(request, "param", {})}


def notices(smtp: SmtpSink) -> list[str]:
    return [text_of(m) for m in smtp.to("jane@example.com") if "password was changed" in m["Subject"] or "modifié" in m["Subject"]]


def reset_by_link(app: Flask, client: FlaskClient, smtp: SmtpSink) -> None:
    with time_machine.travel(CHANGED_AT, tick=False):
        ask_for_reset(client, "jane")
        run_dispatcher(app)
        token = token_in(smtp.to("jane@example.com")[-1])
        answer = client.post(
            "/api/v1/password-resets/confirm", json={"token": token, "new_password": OTHER_STRONG_PASSWORD},
            environ_base={"REMOTE_ADDR": CUSTOMER_IP},
        )
        assert answer.status_code == 204
        run_dispatcher(app)


def test_the_notice_says_when_in_the_shops_zone_how_and_from_where(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    reset_by_link(app, client, smtp)
    (notice,) = notices(smtp)
    assert "Tuesday, December 1, 2026 at 9:14 AM EST" in notice
    assert "UTC" not in notice
    assert "password-reset link" in notice
    assert CUSTOMER_IP in notice
    assert CUSTOMER_IP in html_of(smtp.to("jane@example.com")[-1])


def test_the_notice_speaks_the_customers_language(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    with app.app_context():
        db.session.execute(update(Account).values(language="fr"))
        db.session.commit()
    reset_by_link(app, client, smtp)
    notice = text_of(smtp.to("jane@example.com")[-1])
    assert "mardi" in notice and "1 décembre 2026" in notice and "09:14" in notice
    assert "lien de réinitialisation" in notice


def test_a_reset_sent_by_an_agent_names_the_ticket(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], make_key: Callable[[str], dict[str, str]],
    smtp: SmtpSink,
) -> None:
    make_account()
    sent = client.post(
        "/api/v1/support/accounts/jane/password-resets", json={"method": "link", "ticket": "CS-4711"}, headers=make_key("agent")
    )
    assert sent.status_code == 202
    run_dispatcher(app)
    assert confirm(client, token_in(smtp.to("jane@example.com")[-1]), OTHER_STRONG_PASSWORD).status_code == 204
    run_dispatcher(app)
    (notice,) = notices(smtp)
    assert "Customer service" in notice and "CS-4711" in notice


def test_a_change_with_the_current_password_says_so(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], client_key: dict[str, str], smtp: SmtpSink
) -> None:
    make_account()
    assert change_password(client, client_key, STRONG_PASSWORD, OTHER_STRONG_PASSWORD) == 204
    run_dispatcher(app)
    (notice,) = notices(smtp)
    assert "signed in with the previous password" in notice


def change_password(client: FlaskClient, key: dict[str, str], current: str, new: str) -> int:
    """The website changes jane's password, knowing the current one; the answer's status."""
    answer = client.post("/api/v1/accounts/jane/password", json={"current_password": current, "new_password": new}, headers=key)
    return answer.status_code


@pytest.mark.parametrize("app_settings", [{"RESET_METHOD": "temporary_password"}], indirect=True)
@pytest.mark.parametrize("signed_in_first", [False, True], ids=["changed at once", "signed in first"])
def test_a_temporary_password_sends_one_notice_however_it_is_replaced(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], client_key: dict[str, str], smtp: SmtpSink,
    signed_in_first: bool,
) -> None:
    """Changed at once, or the website's usual flow: sign in, see must_change_password, let the
    customer choose. Either way one notice, saying a temporary password was used."""
    make_account()
    ask_for_reset(client, "jane")
    run_dispatcher(app)
    temporary = temporary_password_in(smtp.to("jane@example.com")[-1])
    if signed_in_first:
        signed_in = verify(client, client_key, "jane", temporary)
        assert signed_in.status_code == 200 and signed_in.get_json()["must_change_password"] is True
    assert change_password(client, client_key, temporary, OTHER_STRONG_PASSWORD) == 204
    run_dispatcher(app)
    (notice,) = notices(smtp)
    assert "temporary password" in notice and "previous password" not in notice
    assert verify(client, client_key, "jane", OTHER_STRONG_PASSWORD).get_json()["must_change_password"] is False
    # A later change of the customer's own password is announced as usual.
    assert change_password(client, client_key, OTHER_STRONG_PASSWORD, STRONG_PASSWORD) == 204
    run_dispatcher(app)
    assert len(notices(smtp)) == 2 and "signed in with the previous password" in notices(smtp)[-1]


HOSTILE_TICKET = '<img src=x onerror=alert(1)> & "CS-1"'


def test_an_agents_ticket_is_text_in_the_notices_html(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], make_key: Callable[[str], dict[str, str]],
    smtp: SmtpSink,
) -> None:
    make_account()
    sent = client.post(
        "/api/v1/support/accounts/jane/password-resets", json={"method": "link", "ticket": HOSTILE_TICKET},
        headers=make_key("agent"),
    )
    assert sent.status_code == 202
    run_dispatcher(app)
    assert confirm(client, token_in(smtp.to("jane@example.com")[-1]), OTHER_STRONG_PASSWORD).status_code == 204
    run_dispatcher(app)
    notice = smtp.to("jane@example.com")[-1]
    html = html_of(notice)
    assert "<img" not in html
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; &#34;CS-1&#34;" in html
    # The text part is text: the ticket reads as the agent typed it.
    assert HOSTILE_TICKET in text_of(notice)
