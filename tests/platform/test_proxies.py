"""Client addresses behind proxies: X-Forwarded-For is believed only as far back as TRUSTED_PROXIES
proxies, for rate limits and for the audit trail alike; anything a client adds is ignored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, Response, request
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from service.models import Account, AuditEvent, ResetRequest
from service.platform.extensions import db
from tests.conftest import run_dispatcher

PROXY = "10.0.0.2"  # the socket address every request comes from: the proxy's, when there is one
CLIENT = "203.0.113.7"
SPOOFED = "6.6.6.6"
LIMIT = 2


@pytest.fixture
def app_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {
        "RATELIMIT_RESET_PER_IP": f"{LIMIT}/minute",
        "RATELIMIT_RESET_PER_USERNAME": "100/hour",
        "TRUSTED_PROXIES": request.param,
    }


no_proxy = pytest.mark.parametrize("app_settings", [0], indirect=True, ids=["no-proxy"])
one_proxy = pytest.mark.parametrize("app_settings", [1], indirect=True, ids=["one-proxy"])
two_proxies = pytest.mark.parametrize("app_settings", [2], indirect=True, ids=["two-proxies"])


def ask_reset(client: FlaskClient, username: str, forwarded_for: str | None, remote: str = PROXY) -> TestResponse:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for is not None else {}
    return client.post(
        "/api/v1/password-resets", json={"username": username}, headers=headers, environ_base={"REMOTE_ADDR": remote}
    )


def create_account_ip(client: FlaskClient, app: Flask, key: dict[str, str], forwarded_for: str | None) -> str | None:
    """Create an account through the API and return the ip its account.created event recorded."""
    headers = dict(key)
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    response = client.post(
        "/api/v1/accounts", json={"username": "newcomer", "email": "newcomer@example.com"},
        headers=headers, environ_base={"REMOTE_ADDR": PROXY},
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    with app.app_context():
        [event] = db.session.scalars(select(AuditEvent).where(AuditEvent.type == "account.created")).all()
        return event.ip


def recorded_request_ips(app: Flask) -> list[str | None]:
    with app.app_context():
        return list(db.session.scalars(select(ResetRequest.ip).order_by(ResetRequest.id)))


# --- no proxy: the socket address is the client ---------------------------------------------------


@no_proxy
def test_without_trusted_proxies_x_forwarded_for_is_ignored_by_the_audit_trail(
    app: Flask, client: FlaskClient, client_key: dict[str, str]
) -> None:
    assert create_account_ip(client, app, client_key, CLIENT) == PROXY


@no_proxy
def test_without_trusted_proxies_a_forged_x_forwarded_for_buys_no_new_allowance(
    app: Flask, client: FlaskClient
) -> None:
    for number in range(LIMIT):
        assert ask_reset(client, f"user{number}", f"198.51.100.{number}").status_code == 202
    refused = ask_reset(client, "user-next", "198.51.100.99")
    assert refused.status_code == 429
    assert refused.get_json()["code"] == "rate_limited"
    assert recorded_request_ips(app) == [PROXY] * LIMIT
    # Another socket address has its own allowance.
    assert ask_reset(client, "user-other", None, remote="192.0.2.50").status_code == 202


# --- one proxy: the last hop it adds is the client ----------------------------------------------


@one_proxy
def test_behind_one_proxy_the_audit_trail_records_the_forwarded_client(
    app: Flask, client: FlaskClient, client_key: dict[str, str]
) -> None:
    assert create_account_ip(client, app, client_key, CLIENT) == CLIENT


@one_proxy
def test_behind_one_proxy_a_client_supplied_hop_in_front_is_ignored(
    app: Flask, client: FlaskClient, client_key: dict[str, str]
) -> None:
    assert create_account_ip(client, app, client_key, f"{SPOOFED}, {CLIENT}") == CLIENT


@one_proxy
def test_behind_one_proxy_the_self_service_reset_is_audited_with_the_client_address(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    assert ask_reset(client, "jane", f"{SPOOFED}, {CLIENT}").status_code == 202
    run_dispatcher(app)
    with app.app_context():
        [event] = db.session.scalars(select(AuditEvent).where(AuditEvent.type == "reset.requested")).all()
    assert event.ip == CLIENT
    assert recorded_request_ips(app) == [CLIENT]


@one_proxy
def test_behind_one_proxy_each_forwarded_client_has_its_own_per_ip_limit(app: Flask, client: FlaskClient) -> None:
    for number in range(LIMIT):
        assert ask_reset(client, f"user{number}", CLIENT).status_code == 202
    assert ask_reset(client, "user-next", CLIENT).status_code == 429
    # Another client behind the same proxy is not held back by the first one's requests.
    assert ask_reset(client, "user-other", "198.51.100.20").status_code == 202
    assert recorded_request_ips(app) == [CLIENT] * LIMIT + ["198.51.100.20"]


@one_proxy
def test_behind_one_proxy_prepending_hops_does_not_reset_the_limit(client: FlaskClient) -> None:
    for number in range(LIMIT):
        assert ask_reset(client, f"user{number}", CLIENT).status_code == 202
    for number, spoofed in enumerate(["1.1.1.1", "2.2.2.2", f"{SPOOFED}, 7.7.7.7"]):
        assert ask_reset(client, f"spoof{number}", f"{spoofed}, {CLIENT}").status_code == 429


@one_proxy
def test_behind_one_proxy_a_request_without_x_forwarded_for_counts_as_the_socket_address(
    app: Flask, client: FlaskClient
) -> None:
    assert ask_reset(client, "jane", None).status_code == 202
    assert recorded_request_ips(app) == [PROXY]


@one_proxy
def test_behind_one_proxy_the_forwarded_scheme_is_believed(app: Flask) -> None:
    seen: dict[str, str] = {}

    @app.after_request
    def capture(response: Response) -> Response:
        seen.update(scheme=request.scheme, remote=request.remote_addr or "")
        return response

    app.test_client().get(
        "/healthz", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": CLIENT}, environ_base={"REMOTE_ADDR": PROXY}
    )
    assert seen == {"scheme": "https", "remote": CLIENT}


# --- two proxies: the second hop from the end is the client --------------------------------------


@two_proxies
def test_behind_two_proxies_the_client_is_the_hop_the_outer_proxy_added(
    app: Flask, client: FlaskClient, client_key: dict[str, str]
) -> None:
    assert create_account_ip(client, app, client_key, f"{SPOOFED}, {CLIENT}, 10.0.0.1") == CLIENT
