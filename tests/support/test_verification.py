"""Verification before action: agent actions record how the caller was verified, refuse an
unknown method, and need one when SUPPORT_REQUIRE_VERIFICATION is on; freeze and unfreeze over
the API; events carry their details."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from service.models import Account, AuditEvent
from service.platform.config import ConfigError, load_config
from service.platform.extensions import db
from tests.conftest import STRONG_PASSWORD

Headers = dict[str, str]
URL = "/api/v1/support/accounts/jane"


@pytest.fixture
def agent_key(make_key: Callable[[str], Headers], make_account: Callable[..., Account]) -> Headers:
    make_account("jane", email="jane@example.com")
    return make_key("agent")


def events(client: FlaskClient, key: Headers) -> list[dict[str, Any]]:
    response = client.get(f"{URL}/events", headers=key)
    assert response.status_code == 200
    events: list[dict[str, Any]] = response.get_json()["events"]
    return events


def event_count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(AuditEvent)) or 0


@pytest.mark.parametrize(
    ("path", "body", "event"),
    [
        ("password-resets", {"method": "link"}, "reset.requested"),
        ("unlock", {}, "account.unlocked"),
        ("freeze", {"reason": "caller reports fraud"}, "account.frozen"),
    ],
)
def test_actions_record_verified_by_and_ticket(
    client: FlaskClient, agent_key: Headers, path: str, body: dict[str, str], event: str
) -> None:
    response = client.post(f"{URL}/{path}", json={**body, "verified_by": "order_number", "ticket": "T-42"}, headers=agent_key)
    assert response.status_code in (202, 204), response.get_json()
    [recorded] = [item for item in events(client, agent_key) if item["type"] == event]
    assert recorded["details"]["verified_by"] == "order_number"
    assert recorded["details"]["ticket"] == "T-42"


@pytest.mark.parametrize("path", ["password-resets", "unlock", "freeze", "unfreeze"])
def test_an_unknown_method_is_400_and_changes_nothing(app: Flask, client: FlaskClient, agent_key: Headers, path: str) -> None:
    before = event_count(app)
    response = client.post(
        f"{URL}/{path}", json={"method": "link", "reason": "fraud", "verified_by": "a hunch"}, headers=agent_key
    )
    assert response.status_code == 400
    assert response.get_json()["errors"][0]["field"] == "verified_by"
    assert event_count(app) == before


def test_without_the_setting_verified_by_may_be_left_out(client: FlaskClient, agent_key: Headers) -> None:
    assert client.post(f"{URL}/unlock", headers=agent_key).status_code == 204


class TestRequired:
    @pytest.fixture
    def app_settings(self) -> dict[str, Any]:
        return {"SUPPORT_REQUIRE_VERIFICATION": True, "SUPPORT_VERIFICATION_METHODS": ("callback", "badge")}

    @pytest.mark.parametrize("path", ["password-resets", "unlock", "freeze", "unfreeze"])
    def test_every_action_needs_verified_by(self, app: Flask, client: FlaskClient, agent_key: Headers, path: str) -> None:
        before = event_count(app)
        response = client.post(f"{URL}/{path}", json={"method": "link", "reason": "fraud"}, headers=agent_key)
        assert response.status_code == 400
        assert response.get_json()["errors"][0]["field"] == "verified_by"
        assert event_count(app) == before

    def test_a_configured_method_is_accepted(self, client: FlaskClient, agent_key: Headers) -> None:
        assert client.post(f"{URL}/unlock", json={"verified_by": "badge"}, headers=agent_key).status_code == 204
        assert client.post(f"{URL}/unlock", json={"verified_by": "order_number"}, headers=agent_key).status_code == 400


def test_freeze_and_unfreeze_over_the_api(client: FlaskClient, client_key: Headers, agent_key: Headers) -> None:
    assert client.post(f"{URL}/freeze", json={"reason": "says it wasn't them"}, headers=agent_key).status_code == 204
    overview = client.get(URL, headers=agent_key).get_json()
    assert overview["frozen"] is True and overview["frozen_reason"] == "says it wasn't them"
    verify = client.post("/api/v1/auth/verify", json={"username": "jane", "password": STRONG_PASSWORD}, headers=client_key)
    assert verify.status_code == 403 and verify.get_json()["code"] == "account_frozen"
    assert client.post(f"{URL}/unfreeze", json={"verified_by": "callback"}, headers=agent_key).status_code == 204
    assert client.get(URL, headers=agent_key).get_json()["frozen"] is False
    trail = events(client, agent_key)
    assert [item["details"].get("reason") for item in trail if item["type"] == "account.frozen"] == ["says it wasn't them"]
    assert [item["details"] for item in trail if item["type"] == "account.unfrozen"] == [{"verified_by": "callback"}]


@pytest.mark.parametrize("body", [{}, {"reason": "  "}, {"reason": 5}])
def test_freeze_needs_a_reason(client: FlaskClient, agent_key: Headers, body: dict[str, Any]) -> None:
    assert client.post(f"{URL}/freeze", json=body, headers=agent_key).status_code == 400


def test_freeze_of_a_missing_account_is_404_and_needs_an_agent_key(client: FlaskClient, agent_key: Headers, client_key: Headers) -> None:
    response = client.post("/api/v1/support/accounts/nobody/freeze", json={"reason": "x"}, headers=agent_key)
    assert response.status_code == 404 and response.get_json()["code"] == "account_not_found"
    assert client.post(f"{URL}/freeze", json={"reason": "x"}, headers=client_key).status_code == 403


@pytest.mark.parametrize("methods", ["", "callback,Order Number", " , "])
def test_a_malformed_method_list_stops_the_start(methods: str) -> None:
    with pytest.raises(ConfigError, match="SUPPORT_VERIFICATION_METHODS"):
        load_config({"SUPPORT_VERIFICATION_METHODS": methods, "SECRET_KEY": "x"})


def test_the_method_list_is_read_from_the_environment() -> None:
    config = load_config({"SUPPORT_VERIFICATION_METHODS": "callback, badge", "SECRET_KEY": "x", "APP_ENV": "testing"})
    assert config["SUPPORT_VERIFICATION_METHODS"] == ("callback", "badge")
    assert config["SUPPORT_REQUIRE_VERIFICATION"] is False
    assert load_config({"SECRET_KEY": "x"})["SUPPORT_VERIFICATION_METHODS"] == (
        "callback", "order_number", "date_of_birth", "email_reply"
    )
