"""What is kept about a customer: nothing typed into the reset box in clear, and an agent's way
to check whether a name was asked for."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from service import create_app
from service.accounts.records import create_account
from service.models import Account, OutboxMessage, ResetRequest
from service.outbox.delivery import FAILED_BODY, SENT_BODY
from service.outbox.mail import RenderedEmail
from service.outbox.queue import MAX_ATTEMPTS, open_body, queue_email
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.platform.sealing import TYPED_USERNAME, open_sealed
from service.resets.policy import reset_policy
from service.resets.requests import request_reset
from service.worker.dispatcher import deliver_due
from tests.conftest import SmtpSink, database_dump, run_dispatcher, smtp_settings
from tests.conftest import test_settings as settings_for

RESETS = "/api/v1/password-resets"
ASKED = "/api/v1/support/reset-requests"
# What people type into the reset box when they mistake it for the sign-in form.
TYPED = "Hunter2-Password!xq"
OLD_KEY, NEW_KEY = "old-key-" + "o" * 40, "new-key-" + "n" * 40


@pytest.fixture
def app_settings(smtp: SmtpSink) -> dict[str, Any]:
    return smtp_settings(smtp)


@pytest.fixture
def make_app(database_url: str, smtp: SmtpSink) -> Iterator[Callable[..., Flask]]:
    """Apps on the test database with their own settings (another SECRET_KEY, say), sending to
    the SMTP sink; their connections are closed at the end."""
    made: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        app = create_app(settings_for(database_url, **smtp_settings(smtp), **overrides))
        with app.app_context():
            db.create_all()
        made.append(app)
        return app

    yield make
    for app in made:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_a_name_for_no_account_is_kept_nowhere_in_clear(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    make_account()
    caplog.set_level(logging.DEBUG)
    assert client.post(RESETS, json={"username": TYPED}).status_code == 202
    pending = database_dump(app)
    run_dispatcher(app)
    resolved = database_dump(app)
    for spelling in (TYPED, TYPED.casefold(), "Hunter2"):
        assert spelling not in pending, "kept in clear while pending"
        assert spelling not in resolved, "kept in clear once resolved"
        assert spelling.casefold() not in caplog.text.casefold()
    # The request is resolved; its row keeps nothing of the name any more.
    with app.app_context():
        assert db.session.scalars(select(ResetRequest.username_sealed)).all() == [""]


def test_a_name_for_an_account_leaves_only_the_account_link(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account("jane")
    assert client.post(RESETS, json={"username": " JANE "}).status_code == 202
    run_dispatcher(app)
    assert " JANE " not in database_dump(app) and "JANE" not in database_dump(app)
    assert len(smtp.messages) == 1


def test_an_agent_can_check_whether_a_name_was_asked_for(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account],
    make_key: Callable[[str], dict[str, str]], smtp: SmtpSink,
) -> None:
    make_account("jane")
    agent = make_key("agent")
    for name in ("jdoe", "Jane"):
        client.post(RESETS, json={"username": name})
    run_dispatcher(app)

    ghost = client.get(ASKED, query_string={"username": " JDOE "}, headers=agent)
    assert ghost.status_code == 200
    assert ghost.json is not None and ghost.json["asked"] is True
    assert [one["outcome"] for one in ghost.json["requests"]] == ["no_account"]

    jane = client.get(ASKED, query_string={"username": "jane"}, headers=agent).json
    assert jane is not None and [one["outcome"] for one in jane["requests"]] == ["issued"]

    never = client.get(ASKED, query_string={"username": "nobody"}, headers=agent).json
    assert never == {"asked": False, "days": 30, "requests": []}


def test_the_name_check_is_for_agents_and_needs_a_name(
    client: FlaskClient, make_key: Callable[[str], dict[str, str]]
) -> None:
    assert client.get(ASKED, query_string={"username": "jdoe"}, headers=make_key("client")).status_code == 403
    assert client.get(ASKED, headers=make_key("agent")).status_code == 400
    bad_days = client.get(ASKED, query_string={"username": "x", "days": "0"}, headers=make_key("agent"))
    assert bad_days.status_code == 400


def test_a_request_sealed_before_a_key_rotation_is_still_answered(
    make_app: Callable[..., Flask], smtp: SmtpSink
) -> None:
    old = make_app(SECRET_KEY=OLD_KEY)
    with old.app_context():
        request_reset(db.session, "jane", policy=reset_policy(), ip=None, now=utcnow())
        db.session.commit()
        sealed = db.session.scalars(select(ResetRequest.username_sealed)).one()
        db.session.remove()
    rotated = make_app(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=[OLD_KEY])
    with rotated.app_context():
        assert open_sealed(TYPED_USERNAME, sealed) == "jane"
        create_account(db.session, username="jane", email="jane@example.com", actor="cli", now=utcnow())
        db.session.commit()
        db.session.remove()
    run_dispatcher(rotated)
    assert [m["To"] for m in smtp.messages] == ["jane@example.com"]


# --- queued mail sealed at rest -----------------------------------------------------------------


def secret_in_body(body: str, method: str) -> str:
    """The link token or temporary password a reset mail's text carries."""
    pattern = r"/reset-password/(\S+)" if method == "link" else r"^ {4}(\S+)\r?$"
    match = re.search(pattern, body, re.MULTILINE)
    assert match, body
    return match.group(1)


@pytest.mark.parametrize("method", ["link", "temporary_password"])
def test_queued_reset_mail_holds_no_readable_secret_and_a_failed_one_no_body(
    make_app: Callable[..., Flask], smtp: SmtpSink, method: str
) -> None:
    app = make_app(RESET_METHOD=method)
    with app.app_context():
        create_account(db.session, username="jane", email="jane@example.com", actor="cli", now=utcnow())
        db.session.commit()
    smtp.stop()  # SMTP is down: the mail stays queued
    assert app.test_client().post(RESETS, json={"username": "jane"}).status_code == 202
    run_dispatcher(app)
    with app.app_context():
        queued = db.session.scalars(select(OutboxMessage)).one()
        assert queued.status == "pending" and queued.attempts == 1
        secret = secret_in_body(open_body(queued.text_body), method)
        db.session.remove()
    assert len(secret) >= 8 and secret not in database_dump(app)

    now = utcnow()
    with app.app_context():
        for _attempt in range(MAX_ATTEMPTS):
            now = db.session.get(OutboxMessage, queued.id).next_attempt_at + timedelta(seconds=1)
            deliver_due(db.session, now=now, limit=10)
            db.session.remove()
        failed = db.session.get(OutboxMessage, queued.id)
        assert failed.status == "failed"
        assert (failed.text_body, failed.html_body) == (FAILED_BODY, None)
        db.session.remove()
    assert secret not in database_dump(app)


def test_mail_queued_under_the_old_key_is_delivered_after_rotation(
    make_app: Callable[..., Flask], smtp: SmtpSink
) -> None:
    old = make_app(SECRET_KEY=OLD_KEY)
    with old.app_context():
        queue_email(
            db.session, "ann@example.com", RenderedEmail("Hello", "Plain words.", "<p>Plain words.</p>"),
            account_id=None, now=utcnow(),
        )
        db.session.commit()
        db.session.remove()
    rotated = make_app(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=[OLD_KEY])
    run_dispatcher(rotated)
    [received] = smtp.to("ann@example.com")
    assert SmtpSink.text_of(received).strip() == "Plain words."
    with rotated.app_context():
        assert db.session.scalars(select(OutboxMessage.text_body)).one() == SENT_BODY
        db.session.remove()

    # Without the old key among the fallbacks the body cannot be opened: the message fails
    # alone, it is never sent in the clear nor as gibberish.
    with old.app_context():
        queue_email(db.session, "bob@example.com", RenderedEmail("Hi", "Words.", "<p>Words.</p>"), account_id=None, now=utcnow())
        db.session.commit()
        db.session.remove()
    forgotten = make_app(SECRET_KEY=NEW_KEY)
    run_dispatcher(forgotten)
    assert smtp.to("bob@example.com") == []
    with forgotten.app_context():
        waiting = db.session.scalars(select(OutboxMessage).where(OutboxMessage.recipient == "bob@example.com")).one()
        assert waiting.attempts == 1 and "SealBroken" in (waiting.last_error or "")
        db.session.remove()
