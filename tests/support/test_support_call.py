"""A whole support call, end to end over HTTP and real SMTP: an agent finds the caller by email
and sends a reset link; the customer gets the mail, opens the link, sets a new password through
the pages; the account's trail tells the story in order, and the change notice arrives."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from service.models import Account
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.support.agents import create_agent
from tests.conftest import STRONG_PASSWORD, SmtpSink, run_dispatcher, smtp_settings
from tests.formtools import CSRF_VALUE as CSRF

AGENT_PASSWORD = "agent horse battery staple"
NEW_PASSWORD = "violet lanterns drift over quiet harbours"
LINK = re.compile(r"http://localhost(/reset-password/(?!code\b)[A-Za-z0-9._-]+)")


@pytest.fixture
def app_settings(smtp: SmtpSink) -> dict[str, Any]:
    return smtp_settings(smtp)


def csrf_in(page: str) -> str:
    match = CSRF.search(page)
    assert match, page
    return match.group(1)


def test_an_agent_resets_a_callers_password_found_by_email(
    app: Flask,
    smtp: SmtpSink,
    make_account: Callable[..., Account],
    make_key: Callable[[str], dict[str, str]],
    client_key: dict[str, str],
) -> None:
    make_account("jane", email="Jane.Doe@example.com")
    make_account("janet", email="janet@example.com")
    with app.app_context():
        create_agent(db.session, username="alice", email="alice@shop.example", password=AGENT_PASSWORD, now=utcnow())
        db.session.commit()

    # The agent signs in to the console.
    agent = app.test_client()
    signed_in = agent.post(
        "/support/login",
        data={"csrf_token": csrf_in(agent.get("/support/login").get_data(as_text=True)),
              "username": "alice", "password": AGENT_PASSWORD},
    )
    assert signed_in.status_code == 302

    # The caller gives an email address, spelt their own way; it finds one account.
    results = agent.get("/support", query_string={"q": "jane.doe@EXAMPLE.com"}).get_data(as_text=True)
    assert re.findall(r'href="/support/accounts/([^"]+)"', results) == ["jane"]

    account_page = agent.get("/support/accounts/jane").get_data(as_text=True)
    assert "Jane.Doe@example.com" in account_page
    confirm_page = agent.get("/support/accounts/jane/reset-link").get_data(as_text=True)
    assert "Send a reset link?" in confirm_page
    sent = agent.post(
        "/support/accounts/jane/reset-link",
        data={"csrf_token": csrf_in(confirm_page), "ticket": "CALL-4711", "verified_by": "order_number"},
        follow_redirects=True,
    )
    assert sent.status_code == 200
    assert "Sent a reset link to J***@example.com." in sent.get_data(as_text=True)
    assert smtp.messages == []  # queued with the reset, not sent on the agent's request

    # The customer receives it over SMTP.
    run_dispatcher(app)
    inbox = smtp.to("Jane.Doe@example.com")
    assert [message["Subject"] for message in inbox] == ["Reset your password"]
    body = smtp.text_of(inbox[0])
    links = LINK.findall(body)
    assert len(links) == 1, body

    # The customer opens the link in their own browser; the token leaves the address bar at once.
    customer = app.test_client()
    opened = customer.get(links[0])
    assert opened.status_code == 302
    assert opened.headers["Location"] == "/reset-password/new"
    form = customer.get("/reset-password/new")
    assert form.status_code == 200
    form_page = form.get_data(as_text=True)
    assert "<strong>jane</strong>" in form_page
    changed = customer.post(
        "/reset-password/new",
        data={"csrf_token": csrf_in(form_page), "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD},
    )
    assert changed.status_code == 302, changed.get_data(as_text=True)
    assert changed.headers["Location"] == "/reset-password/done"
    done = customer.get("/reset-password/done")
    assert done.status_code == 200
    assert "Your password has been changed" in done.get_data(as_text=True)

    # The new password works, the old one and the link do not.
    verify = "/api/v1/auth/verify"
    assert customer.post(verify, json={"username": "jane", "password": NEW_PASSWORD}, headers=client_key).status_code == 200
    assert customer.post(verify, json={"username": "jane", "password": STRONG_PASSWORD}, headers=client_key).status_code == 401
    customer.get(links[0])
    assert customer.get("/reset-password/new").status_code == 410

    # The notice of the change arrives.
    run_dispatcher(app)
    assert [message["Subject"] for message in smtp.to("Jane.Doe@example.com")] == [
        "Reset your password", "Your password was changed",
    ]
    assert smtp.to("janet@example.com") == []

    # The account's trail, oldest first, tells the whole call.
    trail = agent.get("/api/v1/support/accounts/jane/events", headers=make_key("agent")).get_json()["events"]
    story = [
        (event["type"], event["actor"], event["details"].get("subject") or event["details"].get("via"))
        for event in reversed(trail)
        if event["type"] != "support.viewed"
    ]
    assert story == [
        ("account.created", "cli", None),
        ("reset.requested", "agent:alice", None),
        ("reset.issued", "agent:alice", None),
        ("mail.sent", "outbox", "Reset your password"),
        ("password.changed", "self", "reset_link"),
        ("mail.sent", "outbox", "Your password was changed"),
    ]
    requested = next(event for event in trail if event["type"] == "reset.requested")
    assert requested["details"]["ticket"] == "CALL-4711"
    assert requested["ip"] == "127.0.0.1"
    times = [event["at"] for event in reversed(trail)]
    assert times == sorted(times)
    # Every look the agent took is on record too, all before the customer acted.
    viewed = [index for index, event in enumerate(reversed(trail)) if event["type"] == "support.viewed"]
    assert len(viewed) == 4
    assert all(trail[::-1][index]["actor"] == "agent:alice" for index in viewed)
