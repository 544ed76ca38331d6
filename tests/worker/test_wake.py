"""The dispatcher is woken from one place: once after each request that queued work (a mail, a
webhook, a reset request), when its answer is out, and after no other request."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from service.accounts.throttle import account_throttle_key, sign_in_throttle
from service.models import Account, OutboxMessage
from service.outbox.queue import open_body
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.resets.issuing import issue_reset
from service.resets.policy import reset_policy
from service.support.agents import create_agent
from tests.conftest import OTHER_STRONG_PASSWORD, STRONG_PASSWORD
from tests.formtools import csrf_token_in, post_form

AGENT_PASSWORD = "agent horse battery staple"
# A Standard Webhooks secret: "whsec_" and the base64 of a 32-byte key.
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"wake-test-signing-key-0123456789").decode()
WEBHOOKS = {"WEBHOOK_URLS": ("https://shop.example/hooks",), "WEBHOOK_SECRET": WEBHOOK_SECRET}
with_webhooks = pytest.mark.parametrize("app_settings", [WEBHOOKS], indirect=True, ids=["webhooks"])

MakeKey = Callable[[str], dict[str, str]]


class WakeCounter:
    """Stands in for the dispatcher's `wake`, counting the calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


@pytest.fixture
def app_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(getattr(request, "param", {}))


@pytest.fixture
def wakes(app: Flask) -> WakeCounter:
    counter = WakeCounter()
    # An attribute of the instance: the after-request hook looks `wake` up on each request.
    app.extensions["resetdesk.dispatcher"].wake = counter
    return counter


def finished(response: TestResponse) -> TestResponse:
    """Read the answer to its end and close it, as a server does once the last byte is out."""
    response.get_data()
    response.close()
    return response


def temporary_password_for(app: Flask, account_id: int) -> str:
    """Issue a temporary password as the dispatcher would; returns it (read from its queued mail)."""
    with app.app_context():
        issue_reset(
            db.session, db.session.get(Account, account_id), "temporary_password", policy=reset_policy(),
            requested_by="cli", ip=None, now=utcnow(),
        )
        db.session.commit()
        body = db.session.scalars(select(OutboxMessage.text_body).order_by(OutboxMessage.id.desc())).first()
        match = re.search(r"^ {4}(\S+)\r?$", open_body(body) if body else "", re.MULTILINE)
    assert match, body
    return match.group(1)


def signed_in_agent(app: Flask) -> FlaskClient:
    with app.app_context():
        create_agent(db.session, username="alice", email="alice@shop.example", password=AGENT_PASSWORD, now=utcnow())
        db.session.commit()
    browser = app.test_client()
    assert post_form(browser, "/support/login", {"username": "alice", "password": AGENT_PASSWORD}).status_code == 302
    return browser


def lock_sign_in(app: Flask, username: str) -> None:
    """As many wrong passwords as lock the account's sign-in."""
    with app.app_context():
        for _ in range(app.config["LOGIN_MAX_FAILURES"]):
            sign_in_throttle().record_failure(account_throttle_key(username))


def confirm_in_console(browser: FlaskClient, wakes: WakeCounter, url: str) -> None:
    """Open a console action's confirmation page (no work), then confirm it (work)."""
    page = finished(browser.get(url))
    assert page.status_code == 200
    assert wakes.calls == 0
    token = csrf_token_in(page.get_data(as_text=True))
    done = finished(browser.post(url, data={"csrf_token": token, "verified_by": "callback"}))
    assert done.status_code == 302


# --- requests that queue work -----------------------------------------------------------------


def test_woken_once_the_answer_is_out_not_before(
    app: Flask, client: FlaskClient, wakes: WakeCounter, make_account: Callable[..., Account]
) -> None:
    make_account()
    response = client.post("/api/v1/password-resets", json={"username": "jane"})
    assert response.status_code == 202
    assert wakes.calls == 0
    finished(response)
    assert wakes.calls == 1


def test_woken_after_a_password_change_over_the_api(
    app: Flask, client: FlaskClient, client_key: dict[str, str], wakes: WakeCounter, make_account: Callable[..., Account]
) -> None:
    make_account()
    changed = finished(
        client.post(
            "/api/v1/accounts/jane/password",
            json={"current_password": STRONG_PASSWORD, "new_password": OTHER_STRONG_PASSWORD},
            headers=client_key,
        )
    )
    assert changed.status_code == 204
    assert wakes.calls == 1


def test_woken_after_a_sign_in_with_a_temporary_password(
    app: Flask, client: FlaskClient, client_key: dict[str, str], wakes: WakeCounter, make_account: Callable[..., Account]
) -> None:
    temporary = temporary_password_for(app, make_account().id)
    signed_in = finished(
        client.post("/api/v1/auth/verify", json={"username": "jane", "password": temporary}, headers=client_key)
    )
    assert signed_in.status_code == 200
    assert signed_in.get_json()["must_change_password"] is True
    assert wakes.calls == 1  # the "your password was changed" notice is queued


def test_woken_after_a_reset_request_over_the_api_and_the_page(
    app: Flask, client: FlaskClient, wakes: WakeCounter
) -> None:
    assert finished(client.post("/api/v1/password-resets", json={"username": "nobody"})).status_code == 202
    assert wakes.calls == 1
    page = finished(client.get("/reset-password"))
    assert wakes.calls == 1
    sent = finished(
        client.post(
            "/reset-password", data={"csrf_token": csrf_token_in(page.get_data(as_text=True)), "username": "nobody"}
        )
    )
    assert sent.status_code == 200
    assert wakes.calls == 2


def test_woken_after_an_agents_reset_over_the_api(
    app: Flask, client: FlaskClient, make_key: MakeKey, wakes: WakeCounter, make_account: Callable[..., Account]
) -> None:
    make_account()
    sent = finished(
        client.post("/api/v1/support/accounts/jane/password-resets", json={"method": "link"}, headers=make_key("agent"))
    )
    assert sent.status_code == 202
    assert wakes.calls == 1


def test_woken_after_an_agents_reset_in_the_console(
    app: Flask, wakes: WakeCounter, make_account: Callable[..., Account]
) -> None:
    make_account()
    browser = signed_in_agent(app)
    wakes.calls = 0
    confirm_in_console(browser, wakes, "/support/accounts/jane/temporary-password")
    assert wakes.calls == 1


def test_woken_after_a_new_password_through_a_link(
    app: Flask, client: FlaskClient, wakes: WakeCounter, make_account: Callable[..., Account]
) -> None:
    account = make_account()
    with app.app_context():
        issue_reset(
            db.session, db.session.get(Account, account.id), "link", policy=reset_policy(), requested_by="cli",
            ip=None, now=utcnow(),
        )
        db.session.commit()
        body = open_body(db.session.scalars(select(OutboxMessage.text_body)).one())
    token = re.search(r"/reset-password/(\S+)", body)
    assert token
    confirmed = finished(
        client.post(
            "/api/v1/password-resets/confirm", json={"token": token.group(1), "new_password": OTHER_STRONG_PASSWORD}
        )
    )
    assert confirmed.status_code == 204
    assert wakes.calls == 1


@with_webhooks
def test_woken_after_an_unlock_in_the_console_when_it_queues_a_webhook(
    app: Flask, wakes: WakeCounter, make_account: Callable[..., Account]
) -> None:
    make_account()
    lock_sign_in(app, "jane")
    browser = signed_in_agent(app)
    wakes.calls = 0
    confirm_in_console(browser, wakes, "/support/accounts/jane/unlock")
    assert wakes.calls == 1
    with app.app_context():
        assert db.session.scalars(select(OutboxMessage.subject)).all() == ["account.unlocked"]


@with_webhooks
def test_woken_after_an_unlock_over_the_api_when_it_queues_a_webhook(
    app: Flask, client: FlaskClient, make_key: MakeKey, wakes: WakeCounter, make_account: Callable[..., Account]
) -> None:
    make_account()
    lock_sign_in(app, "jane")
    unlocked = finished(client.post("/api/v1/support/accounts/jane/unlock", headers=make_key("agent")))
    assert unlocked.status_code == 204
    assert wakes.calls == 1


# --- requests that queue nothing --------------------------------------------------------------


def test_not_woken_after_reading_the_contact_details_or_health(
    client: FlaskClient, wakes: WakeCounter
) -> None:
    assert finished(client.get("/api/v1/contact")).status_code == 200
    assert finished(client.get("/healthz")).status_code == 200
    assert finished(client.get("/reset-password")).status_code == 200
    assert wakes.calls == 0


def test_not_woken_after_a_sign_in_with_the_password_or_a_wrong_one(
    client: FlaskClient, client_key: dict[str, str], wakes: WakeCounter, make_account: Callable[..., Account]
) -> None:
    make_account()
    for password, status in ((STRONG_PASSWORD, 200), ("not the password at all", 401)):
        verify = client.post("/api/v1/auth/verify", json={"username": "jane", "password": password}, headers=client_key)
        assert finished(verify).status_code == status
    assert wakes.calls == 0


def test_not_woken_after_an_agent_looks_an_account_up(
    client: FlaskClient, make_key: MakeKey, wakes: WakeCounter, make_account: Callable[..., Account]
) -> None:
    make_account()
    agent = make_key("agent")
    assert finished(client.get("/api/v1/support/accounts/jane", headers=agent)).status_code == 200
    assert finished(client.get("/api/v1/support/accounts", query_string={"q": "ja"}, headers=agent)).status_code == 200
    assert wakes.calls == 0


def test_not_woken_after_a_refused_password_change(
    app: Flask, client: FlaskClient, client_key: dict[str, str], wakes: WakeCounter, make_account: Callable[..., Account]
) -> None:
    temporary = temporary_password_for(app, make_account().id)
    refused = finished(
        client.post(
            "/api/v1/accounts/jane/password",
            json={"current_password": temporary, "new_password": "password"},
            headers=client_key,
        )
    )
    assert refused.status_code == 400
    assert wakes.calls == 0  # the notice it began to queue was rolled back: there is nothing to do
