"""Agents' second factor: the setting and its production default, codes accepted once and only
near now, enrolment with a QR code drawn by the service, sign-in in two steps where the password
alone grants nothing, wrong codes counted by the agent's throttle, and `agents totp` recovery."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select
from werkzeug.test import TestResponse

from service.console.session import COOKIE_NAME, COOKIE_PATH, PENDING_COOKIE_NAME
from service.models import Agent, AgentSession, AuditEvent
from service.platform.clock import utcnow
from service.platform.config import load_config
from service.platform.extensions import db
from service.platform.sealing import open_sealed
from service.support import totp
from service.support.agents import create_agent, find_agent
from tests.conftest import PRODUCTION_SERVICES
from tests.formtools import csrf_token_in, post_form

AGENT_PASSWORD = "agent horse battery staple"
MAX_FAILURES = 3


@pytest.fixture
def app_settings() -> dict[str, Any]:
    return {"AGENT_REQUIRE_TOTP": True, "LOGIN_MAX_FAILURES": MAX_FAILURES}


@pytest.fixture
def alice(app: Flask) -> None:
    with app.app_context():
        create_agent(db.session, username="alice", email="alice@shop.example", password=AGENT_PASSWORD, now=utcnow())
        db.session.commit()


def secret_of(app: Flask, username: str = "alice") -> str:
    with app.app_context():
        agent = find_agent(db.session, username)
        assert agent is not None and agent.totp_secret_sealed is not None
        return open_sealed(totp.SEALING_PURPOSE, agent.totp_secret_sealed)


def code_for(secret: str, seconds_ahead: int = 0) -> str:
    return pyotp.TOTP(secret).at(datetime.now() + timedelta(seconds=seconds_ahead))


def password_step(browser: FlaskClient, password: str = AGENT_PASSWORD) -> TestResponse:
    return post_form(browser, "/support/login", {"username": "alice", "password": password})


def code_step(browser: FlaskClient, code: str) -> TestResponse:
    page = browser.get("/support/login/code")
    assert page.status_code == 200, page.get_data(as_text=True)
    token = csrf_token_in(page.get_data(as_text=True))
    return browser.post("/support/login/code", data={"csrf_token": token, "code": code})


def has_session_cookie(browser: FlaskClient) -> bool:
    return browser.get_cookie(COOKIE_NAME, path=COOKIE_PATH) is not None


def event_types(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent.type).order_by(AuditEvent.id)))


def enrol(app: Flask, browser: FlaskClient) -> str:
    """Sign alice in for the first time, scanning the QR code; returns her secret."""
    assert password_step(browser).headers["Location"].endswith("/support/login/code")
    assert "<svg" in browser.get("/support/login/code").get_data(as_text=True)
    secret = secret_of(app)
    answer = code_step(browser, code_for(secret))
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/support")
    return secret


# --- the setting --------------------------------------------------------------------------------


def test_codes_are_required_by_default_in_production_only(tmp_path: Any) -> None:
    production = {"APP_ENV": "production", "SECRET_KEY": "k" * 40, "PUBLIC_BASE_URL": "https://a.example", **PRODUCTION_SERVICES}
    assert load_config({}, production, instance_path=tmp_path)["AGENT_REQUIRE_TOTP"] is True
    assert load_config({}, {"APP_ENV": "development"}, instance_path=tmp_path)["AGENT_REQUIRE_TOTP"] is False
    assert load_config({"AGENT_REQUIRE_TOTP": "false"}, production, instance_path=tmp_path)["AGENT_REQUIRE_TOTP"] is False
    assert load_config({"AGENT_REQUIRE_TOTP": "yes"}, {"APP_ENV": "testing"}, instance_path=tmp_path)["AGENT_REQUIRE_TOTP"] is True


# --- the rule -------------------------------------------------------------------------------------


@pytest.mark.parametrize("app_settings", [{"LOGIN_MAX_FAILURES": 10}])
def test_a_code_is_accepted_near_now_and_only_once(app: Flask, alice: None) -> None:
    now = utcnow()
    with app.app_context():
        agent = find_agent(db.session, "alice")
        assert agent is not None
        totp.start_enrolment(db.session, agent, now=now, actor="cli", ip=None)
        secret = open_sealed(totp.SEALING_PURPOSE, agent.totp_secret_sealed or "")
        # Sealed: the column never holds the secret itself.
        assert secret not in (agent.totp_secret_sealed or "")
        generator = pyotp.TOTP(secret)
        assert not totp.check_code(db.session, agent, generator.at(now - timedelta(minutes=2)), ip=None, now=now)
        assert not totp.check_code(db.session, agent, "12345", ip=None, now=now)
        assert agent.totp_confirmed_at is None
        assert totp.check_code(db.session, agent, generator.at(now), ip=None, now=now)
        assert agent.totp_confirmed_at == now
        # The same code again (a replay) is refused, even within its 30 seconds.
        assert not totp.check_code(db.session, agent, generator.at(now), ip=None, now=now + timedelta(seconds=5))
        # The previous step's code is older than the one used: refused too.
        assert not totp.check_code(db.session, agent, generator.at(now - timedelta(seconds=30)), ip=None, now=now)
        # The next step's code (a phone's clock a little ahead) is accepted once.
        later = now + timedelta(seconds=30)
        assert totp.check_code(db.session, agent, " " + generator.at(later) + " ", ip=None, now=now)
        db.session.commit()
    assert event_types(app).count("agent.totp_failed") == 4
    assert event_types(app).count("agent.totp_enrolled") == 1


# --- signing in -----------------------------------------------------------------------------------


def test_the_password_alone_grants_nothing_when_codes_are_required(app: Flask, alice: None) -> None:
    browser = app.test_client()
    answer = password_step(browser)
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/support/login/code")
    assert not has_session_cookie(browser)
    assert browser.get("/support").headers["Location"].endswith("/support/login")
    with app.app_context():
        assert db.session.scalars(select(AgentSession)).all() == []
    assert "agent.signed_in" not in event_types(app)


def test_first_sign_in_enrols_with_a_qr_code_drawn_by_the_service(app: Flask, alice: None) -> None:
    browser = app.test_client()
    password_step(browser)
    page = browser.get("/support/login/code")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert page.status_code == 200
    assert "<svg" in html and "qr-code" in html
    secret = secret_of(app)
    assert secret in html  # the key to type, for an app that cannot scan
    assert "https://" not in re.sub(r'xmlns="[^"]+"', "", html.split("<svg", 1)[1].split("</svg>", 1)[0])
    wrong = code_step(browser, "000000" if code_for(secret) != "000000" else "111111")
    assert wrong.status_code == 401 and not has_session_cookie(browser)
    right = code_step(browser, code_for(secret))
    assert right.status_code == 302 and has_session_cookie(browser)
    assert browser.get("/support").status_code == 200
    assert browser.get_cookie(PENDING_COOKIE_NAME, path=COOKIE_PATH) is None
    types = event_types(app)
    assert types.index("agent.totp_enrolled") < types.index("agent.signed_in")
    # Nothing in the trail holds the secret.
    with app.app_context():
        assert all(secret not in str(details) for details in db.session.scalars(select(AuditEvent.details)))


def test_an_enrolled_agent_gives_a_fresh_code_and_a_replay_is_refused(app: Flask, alice: None) -> None:
    secret = enrol(app, app.test_client())
    browser = app.test_client()
    password_step(browser)
    page = browser.get("/support/login/code").get_data(as_text=True)
    assert "<svg" not in page and secret not in page  # enrolled: no QR code to anyone with the password
    with app.app_context():
        used = find_agent(db.session, "alice")
        assert used is not None and used.totp_last_step is not None
        replayed = pyotp.TOTP(secret).generate_otp(used.totp_last_step)
    assert code_step(browser, replayed).status_code == 401
    assert code_step(browser, code_for(secret, seconds_ahead=30)).status_code == 302
    assert browser.get("/support").status_code == 200


def test_wrong_codes_count_towards_the_agents_throttle(app: Flask, alice: None) -> None:
    secret = enrol(app, app.test_client())
    browser = app.test_client()
    password_step(browser)
    wrong = "000000" if code_for(secret, 30) != "000000" else "111111"
    for _ in range(MAX_FAILURES):
        assert code_step(browser, wrong).status_code == 401
    throttled = code_step(browser, code_for(secret, seconds_ahead=30))
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
    # The password step is locked with it.
    assert password_step(app.test_client()).status_code == 429


def test_the_code_step_needs_a_password_step_first(app: Flask, alice: None) -> None:
    browser = app.test_client()
    answer = browser.get("/support/login/code")
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/support/login")
    browser.set_cookie(PENDING_COOKIE_NAME, "forged", path=COOKIE_PATH)
    assert browser.get("/support/login/code").status_code == 302


@pytest.mark.parametrize("app_settings", [{"AGENT_REQUIRE_TOTP": False}])
def test_an_agent_can_enrol_from_the_console_when_codes_are_optional(app: Flask, alice: None) -> None:
    browser = app.test_client()
    assert password_step(browser).headers["Location"].endswith("/support")  # a password is enough for now
    page = browser.get("/support/totp")
    assert page.status_code == 200 and "<svg" in page.get_data(as_text=True)
    secret = secret_of(app)
    token = csrf_token_in(page.get_data(as_text=True))
    done = browser.post("/support/totp", data={"csrf_token": token, "code": code_for(secret)})
    assert done.status_code == 302
    assert "<svg" not in browser.get("/support/totp").get_data(as_text=True)
    # Enrolled: the next sign-in asks for a code, though codes are not required of everyone.
    other = app.test_client()
    assert password_step(other).headers["Location"].endswith("/support/login/code")
    assert not has_session_cookie(other)


# --- recovery -------------------------------------------------------------------------------------


def test_agents_totp_restarts_enrolment_ends_sessions_and_is_audited(
    app: Flask, alice: None, runner: FlaskCliRunner
) -> None:
    browser = app.test_client()
    old_secret = enrol(app, browser)
    result = runner.invoke(args=["agents", "totp", "alice"])
    assert result.exit_code == 0, result.output
    uri = result.output.strip().splitlines()[-1]
    assert uri.startswith("otpauth://totp/")
    new_secret = pyotp.parse_uri(uri).secret
    assert new_secret != old_secret and new_secret == secret_of(app)
    assert browser.get("/support").status_code == 302  # the open session ended
    with app.app_context():
        agent = db.session.scalar(select(Agent))
        assert agent is not None and agent.totp_confirmed_at is None
        reset = db.session.scalar(select(AuditEvent).where(AuditEvent.type == "agent.totp_reset"))
        assert reset is not None and reset.actor == "cli" and reset.details == {"agent": "alice"}
        assert new_secret not in str(reset.details)
    # The old device's codes no longer work; the new one enrols at the next sign-in.
    again = app.test_client()
    password_step(again)
    assert "<svg" in again.get("/support/login/code").get_data(as_text=True)
    assert code_step(again, code_for(old_secret, 30)).status_code == 401
    assert code_step(again, code_for(new_secret)).status_code == 302
    assert runner.invoke(args=["agents", "totp", "nobody"]).exit_code != 0


def test_enrolment_helpers_are_not_reachable_without_signing_in(client: FlaskClient) -> None:
    assert client.get("/support/totp").headers["Location"].endswith("/support/login")


