"""Random bodies on every JSON endpoint and form: never a 5xx, never a traceback in the answer
(SQLite always, PostgreSQL too when TEST_DATABASE_URL is set)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import TestResponse

from service.models import Account
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.support.agents import create_agent

FIELDS = [
    "username", "email", "password", "current_password", "new_password", "new_password_confirm",
    "token", "code", "method", "note", "ticket", "name", "role", "language", "q", "verified_by",
]
AGENT_PASSWORD = "agents answer every call kindly"

# Every JSON endpoint, with the role its key needs (None: no key).
JSON_ENDPOINTS = [
    ("POST", "/api/v1/password-resets", None),
    ("POST", "/api/v1/password-resets/confirm", None),
    ("POST", "/api/v1/auth/verify", "client"),
    ("POST", "/api/v1/accounts", "client"),
    ("POST", "/api/v1/accounts/jane/password", "client"),
    ("POST", "/api/v1/admin/api-keys", "admin"),
    ("POST", "/api/v1/admin/agents", "admin"),
    ("POST", "/api/v1/support/accounts/jane/password-resets", "agent"),
    ("POST", "/api/v1/support/accounts/jane/unlock", "agent"),
]
# Every form a stranger can post, and the agent's console forms.
FORMS = ["/reset-password", "/reset-password/new", "/support/login"]
CONSOLE_FORMS = ["/support/accounts/jane/reset-link", "/support/accounts/jane/temporary-password", "/support/accounts/jane/unlock"]

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
json_objects = st.fixed_dictionaries({}, optional={field: st.text(max_size=300) | json_values for field in FIELDS})
json_bodies = (
    json_objects.map(json.dumps)
    | json_values.map(json.dumps)
    | st.binary(max_size=300).map(lambda raw: raw.decode("latin-1"))
    # Nesting past the parser's recursion limit, as an attacker sends it.
    | st.integers(min_value=500, max_value=3000).map(lambda depth: "[" * depth + "]" * depth)
    | st.integers(min_value=500, max_value=3000).map(lambda depth: '{"a":' * depth + "1" + "}" * depth)
)
form_bodies = st.dictionaries(st.sampled_from([*FIELDS, "csrf_token"]), st.text(max_size=300), max_size=6)

FUZZ = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@pytest.fixture
def app_settings() -> dict[str, Any]:
    # Limits off and no CSRF: the random bodies should reach the views, not stop at the door.
    return {"RATELIMIT_ENABLED": False, "WTF_CSRF_ENABLED": False}


@pytest.fixture
def seeded(app: Flask, make_account: Callable[..., Account]) -> None:
    make_account("jane")
    with app.app_context():
        create_agent(db.session, username="alice", email="alice@shop.example", password=AGENT_PASSWORD, now=utcnow())
        db.session.commit()


def assert_no_server_error(response: TestResponse) -> None:
    text = response.get_data(as_text=True)
    assert response.status_code < 500, text
    assert "Traceback" not in text and 'File "' not in text, text


@pytest.mark.parametrize(("method", "path", "role"), JSON_ENDPOINTS)
def test_json_endpoints_never_answer_5xx(
    client: FlaskClient, seeded: None, make_key: Callable[[str], dict[str, str]], method: str, path: str, role: str | None
) -> None:
    headers = {"Content-Type": "application/json", **(make_key(role) if role else {})}

    @FUZZ
    @given(body=json_bodies)
    def run(body: str) -> None:
        assert_no_server_error(client.open(path, method=method, data=body.encode("utf-8", "surrogatepass"), headers=headers))

    run()


@pytest.mark.parametrize("path", FORMS)
def test_forms_never_answer_5xx(client: FlaskClient, seeded: None, path: str) -> None:
    @FUZZ
    @given(form=form_bodies)
    def run(form: dict[str, str]) -> None:
        assert_no_server_error(client.post(path, data=form))

    run()


def test_console_forms_never_answer_5xx(app: Flask, client: FlaskClient, seeded: None) -> None:
    signed_in = client.post("/support/login", data={"username": "alice", "password": AGENT_PASSWORD})
    assert signed_in.status_code == 302

    @FUZZ
    @given(path=st.sampled_from(CONSOLE_FORMS), form=form_bodies, query=st.dictionaries(st.sampled_from(["q", "page"]), st.text(max_size=50)))
    def run(path: str, form: dict[str, str], query: dict[str, str]) -> None:
        assert_no_server_error(client.post(path, data=form))
        assert_no_server_error(client.get("/support", query_string=query))

    run()
