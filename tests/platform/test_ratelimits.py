"""Rate limits on asking for a reset: per username (however spelt, existing or not), per address,
shared by the API and the page, answered as problem+json or a friendly page."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import flask_limiter
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from service import create_app
from service.models import ResetRequest
from service.platform.clients import rate_limit_key_for_ip
from service.platform.extensions import db
from tests import conftest

RESETS = "/api/v1/password-resets"
TIGHT = {"RATELIMIT_RESET_PER_USERNAME": "2/hour", "RATELIMIT_RESET_PER_IP": "5/minute"}


@pytest.fixture
def app_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {**TIGHT, **getattr(request, "param", {})}


def ask(client: FlaskClient, username: str, ip: str = "192.0.2.10") -> TestResponse:
    return client.post(RESETS, json={"username": username}, environ_base={"REMOTE_ADDR": ip})


def ask_on_the_page(client: FlaskClient, username: str, ip: str = "192.0.2.10") -> TestResponse:
    environ = {"REMOTE_ADDR": ip}
    form = client.get("/reset-password", environ_base=environ).get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form).group(1)
    return client.post("/reset-password", data={"csrf_token": token, "username": username}, environ_base=environ)


def assert_rate_limited(response: TestResponse) -> None:
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "rate_limited"
    retry_after = response.headers.get("Retry-After", "")
    assert retry_after.isdigit() and int(retry_after) > 0, retry_after


def recorded(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(ResetRequest))


# --- per username -----------------------------------------------------------------------------


@pytest.mark.parametrize("username", ["jane", "nobody-has-this-name"], ids=["existing", "missing"])
def test_the_per_username_limit_answers_429_with_retry_after(
    app: Flask, client: FlaskClient, make_account: Any, username: str
) -> None:
    make_account()
    assert ask(client, username, ip="192.0.2.1").status_code == 202
    assert ask(client, username, ip="192.0.2.2").status_code == 202
    refused = ask(client, username, ip="192.0.2.3")  # a new address does not help
    assert_rate_limited(refused)
    assert int(refused.headers["Retry-After"]) <= 3600
    assert recorded(app) == 2
    assert ask(client, "someone-else", ip="192.0.2.3").status_code == 202


def test_the_per_username_limit_counts_every_spelling_of_one_name(app: Flask, client: FlaskClient) -> None:
    assert ask(client, "Jane").status_code == 202
    assert ask(client, " jane").status_code == 202
    assert_rate_limited(ask(client, "JANE"))
    assert_rate_limited(ask(client, "ｊａｎｅ"))  # fullwidth letters fold to the same name
    assert recorded(app) == 2


def test_the_missing_and_existing_usernames_are_limited_alike(
    client: FlaskClient, make_account: Any
) -> None:
    make_account()
    answers = {}
    for username in ("jane", "ghost"):
        for _ in range(2):
            ask(client, username)
        answers[username] = ask(client, username)
    existing, missing = answers["jane"], answers["ghost"]

    def without_wait(response: Any) -> tuple[int, dict[str, Any]]:
        # The detail says how long to wait, which follows the limit hit (as Retry-After does).
        body = response.get_json()
        return response.status_code, {**body, "detail": body["detail"].split(" Please try again in ")[0]}

    assert without_wait(existing) == without_wait(missing)
    assert_rate_limited(missing)


# --- per address ------------------------------------------------------------------------------


def test_the_per_ip_limit_counts_across_different_usernames(app: Flask, client: FlaskClient) -> None:
    for n in range(5):
        assert ask(client, f"user{n}", ip="198.51.100.7").status_code == 202
    assert_rate_limited(ask(client, "user5", ip="198.51.100.7"))
    assert ask(client, "user5", ip="198.51.100.8").status_code == 202  # another address is not held back
    assert recorded(app) == 6


# --- pages ------------------------------------------------------------------------------------


def test_the_page_answers_a_friendly_429_page_not_json(app: Flask, client: FlaskClient) -> None:
    assert ask_on_the_page(client, "jane").status_code == 200
    assert ask_on_the_page(client, "jane").status_code == 200
    refused = ask_on_the_page(client, "jane")
    assert refused.status_code == 429
    assert refused.mimetype == "text/html"
    html = refused.get_data(as_text=True)
    assert "Too many" in html
    assert "{" not in html.split("<body>", 1)[1].split("</main>", 1)[0]  # no JSON in the page
    assert int(refused.headers["Retry-After"]) > 0
    assert recorded(app) == 2


def test_the_api_and_the_page_share_one_limit(app: Flask, client: FlaskClient) -> None:
    assert ask(client, "jane").status_code == 202
    assert ask_on_the_page(client, "Jane").status_code == 200
    assert ask_on_the_page(client, "jane").status_code == 429
    assert_rate_limited(ask(client, "jane"))
    assert recorded(app) == 2


def test_the_page_and_the_api_share_the_per_ip_limit(app: Flask, client: FlaskClient) -> None:
    for n in range(3):
        assert ask_on_the_page(client, f"page-user{n}", ip="203.0.113.5").status_code == 200
    for n in range(2):
        assert ask(client, f"api-user{n}", ip="203.0.113.5").status_code == 202
    assert_rate_limited(ask(client, "api-user9", ip="203.0.113.5"))
    assert ask_on_the_page(client, "page-user9", ip="203.0.113.5").status_code == 429


# --- switched off -----------------------------------------------------------------------------


@pytest.mark.parametrize("app_settings", [{"RATELIMIT_ENABLED": False}], indirect=True, ids=["disabled"])
def test_ratelimit_enabled_false_turns_the_limits_off(app: Flask, client: FlaskClient) -> None:
    for _ in range(8):
        assert ask(client, "jane").status_code == 202
    assert recorded(app) == 8


@pytest.mark.parametrize("app_settings", [{"RATELIMIT_ENABLED": False}], indirect=True, ids=["disabled"])
def test_with_limits_off_flask_limiter_s_check_is_not_even_walked(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def walked(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("Flask-Limiter checked a request with limits off")

    monkeypatch.setattr(flask_limiter.Limiter, "_check_request_limit", walked)
    assert ask(client, "jane").status_code == 202
    assert recorded(app) == 1


# --- shared storage ---------------------------------------------------------------------------


@pytest.mark.redis
@conftest.requires_redis
def test_with_redis_storage_a_limit_outlives_the_process_that_counted_it(tmp_path: Any) -> None:
    """Counts kept in Redis hold for every worker: a fresh app (a new worker) still refuses."""
    settings = conftest.test_settings(
        f"sqlite:///{tmp_path / 'limits.db'}",
        **TIGHT,
        RATELIMIT_STORAGE_URI=conftest.TEST_REDIS_URL,
        RATELIMIT_KEY_PREFIX=f"test-{uuid.uuid4().hex}",  # our own keys: other suites share the server
    )
    username = f"jane-{uuid.uuid4().hex[:8]}"
    first = create_app(settings)
    with first.app_context():
        db.create_all()
    for _ in range(2):
        assert ask(first.test_client(), username).status_code == 202

    second = create_app(settings)
    assert_rate_limited(ask(second.test_client(), username))


def test_padding_a_username_past_its_stored_length_does_not_escape_its_limit(app: Flask, client: FlaskClient) -> None:
    """The stored request keeps the first 150 characters; the limit must key on exactly those,
    or `"   ...jane" + anything` would be a fresh key every time for one account."""
    padded = " " * 146 + "jane"
    assert ask(client, padded + "-first", ip="192.0.2.21").status_code == 202
    assert ask(client, padded + "-second", ip="192.0.2.22").status_code == 202
    assert_rate_limited(ask(client, padded + "-third", ip="192.0.2.23"))
    assert_rate_limited(ask(client, "jane", ip="192.0.2.24"))


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "form"])
def test_a_body_over_64_kib_is_413_without_a_rate_limit_failure(
    client: FlaskClient, caplog: pytest.LogCaptureFixture, as_json: bool
) -> None:
    padding = "x" * (65 * 1024)
    with caplog.at_level(logging.DEBUG):
        if as_json:
            response = client.post(RESETS, json={"username": "jane", "padding": padding})
        else:
            response = client.post("/reset-password", data={"username": "jane", "padding": padding})
    assert response.status_code == 413
    messages = [record.getMessage() for record in caplog.records]
    assert not any("rate limit" in message.lower() or "storage" in message.lower() for message in messages), messages
    assert not any(record.exc_info for record in caplog.records)


# --- IPv6 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("unknown", "unknown"),
    ],
)
def test_ipv6_clients_are_keyed_by_their_64(address: str, key: str) -> None:
    assert rate_limit_key_for_ip(address) == key


def test_addresses_of_one_ipv6_64_share_the_per_ip_limit(app: Flask, client: FlaskClient) -> None:
    for n in range(5):
        assert ask(client, f"user{n}", ip=f"2001:db8:1:2::{n + 1:x}").status_code == 202
    assert_rate_limited(ask(client, "user5", ip="2001:db8:1:2:dead:beef::1"))
    assert ask(client, "user5", ip="2001:db8:1:3::1").status_code == 202  # the next /64 is another customer
    with app.app_context():
        addresses = set(db.session.scalars(select(ResetRequest.ip)))
    # The record keeps each full address; only the limit counts by /64.
    assert {"2001:db8:1:2::1", "2001:db8:1:3::1"} <= addresses
