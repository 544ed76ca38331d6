"""The Host header cannot steer the service: a forged one is refused, and emailed links always
start with PUBLIC_BASE_URL whatever Host or X-Forwarded-* headers the request carried."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from service.models import Account, ResetRequest
from service.platform.extensions import db
from tests.conftest import SmtpSink, run_dispatcher, smtp_settings

PUBLIC_BASE_URL = "https://account.example.com"
LINK = re.compile(r"(\S+)/reset-password/\S+")


@pytest.fixture
def app_settings(smtp: SmtpSink) -> dict[str, Any]:
    return {**smtp_settings(smtp), "PUBLIC_BASE_URL": PUBLIC_BASE_URL}


def recorded(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(ResetRequest))


def emailed_origins(smtp: SmtpSink) -> list[str]:
    """The origin of every reset link mailed so far, from text and HTML parts alike."""
    origins = []
    for message in smtp.messages:
        text = SmtpSink.text_of(message)
        html = message.get_body(preferencelist=("html",)).get_content()
        origins += LINK.findall(text)
        hrefs = re.findall(r'href="([^"]*/reset-password/[^"]*)"', html)
        origins += [href.rsplit("/reset-password/", 1)[0] for href in hrefs]
    return origins


@pytest.mark.parametrize("host", ["evil.example", "account.example.com.evil.example", "localhost.evil", "[::2]"])
def test_a_forged_host_header_is_refused_with_400_not_500(app: Flask, client: FlaskClient, host: str) -> None:
    api = client.post("/api/v1/password-resets", json={"username": "jane"}, headers={"Host": host})
    assert api.status_code == 400, api.get_data(as_text=True)
    assert api.mimetype == "application/problem+json"
    assert api.get_json()["code"] == "untrusted_host"

    page = client.get("/reset-password", headers={"Host": host})
    assert page.status_code == 400
    assert "Traceback" not in page.get_data(as_text=True)

    assert recorded(app) == 0


@pytest.mark.parametrize("host", ["account.example.com", "localhost", "127.0.0.1", "localhost:5000"])
def test_the_public_host_and_loopback_are_served(client: FlaskClient, host: str) -> None:
    assert client.get("/reset-password", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http", "X-Forwarded-Port": "8080"},
        {"Host": "127.0.0.1", "X-Forwarded-Host": "evil.example"},
        {"Forwarded": "host=evil.example;proto=http"},
    ],
    ids=["x-forwarded", "loopback-host", "rfc7239"],
)
def test_forwarded_headers_do_not_change_the_emailed_link(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink, headers: dict[str, str]
) -> None:
    make_account()
    response = client.post("/api/v1/password-resets", json={"username": "jane"}, headers=headers)
    assert response.status_code == 202
    run_dispatcher(app)
    origins = emailed_origins(smtp)
    assert len(origins) >= 2  # the text part and the HTML part (and the code page)
    assert set(origins) == {PUBLIC_BASE_URL}
    for message in smtp.messages:
        assert "evil.example" not in message.as_string()


def test_forwarded_headers_on_the_page_do_not_change_the_emailed_link(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    headers = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
    # Plain http: over https every form post is refused for want of a Referer (a known bug,
    # see test_pages.test_a_form_posted_over_https_without_a_referer_is_accepted).
    plain = "http://localhost"
    form = client.get("/reset-password", headers=headers, base_url=plain).get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form).group(1)
    response = client.post(
        "/reset-password", data={"csrf_token": token, "username": "jane"}, headers=headers, base_url=plain
    )
    assert response.status_code == 200
    run_dispatcher(app)
    assert set(emailed_origins(smtp)) == {PUBLIC_BASE_URL}
