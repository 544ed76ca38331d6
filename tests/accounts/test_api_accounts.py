"""The account API over HTTP: sign-up, sign-in checks, password change, API keys and roles,
and problem+json for every error, whatever the body."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from werkzeug.test import TestResponse

from service.access.apikeys import revoke_api_key
from service.models import Account
from service.platform.clock import utcnow
from service.platform.extensions import db
from tests.accounts.test_usernames import MALFORMED_BUT_PLAUSIBLE
from tests.conftest import OTHER_STRONG_PASSWORD, STRONG_PASSWORD

PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}

VERIFY = "/api/v1/auth/verify"
ACCOUNTS = "/api/v1/accounts"


def change_url(username: str = "jane") -> str:
    return f"/api/v1/accounts/{username}/password"


def assert_problem(response: TestResponse, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is an RFC 9457 problem of this status (and code); returns its body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert isinstance(body, dict)
    assert set(body) >= PROBLEM_FIELDS, body
    assert body["status"] == status
    assert all(isinstance(body[name], str) and body[name] for name in ("type", "title", "detail", "code"))
    if code is not None:
        assert body["code"] == code
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and 'File "' not in text
    return body


def post(client: FlaskClient, url: str, body: Any, headers: dict[str, str]) -> TestResponse:
    return client.post(url, json=body, headers=headers)


def verify(client: FlaskClient, key: dict[str, str], username: str, password: str) -> TestResponse:
    return post(client, VERIFY, {"username": username, "password": password}, key)


def stored_account(app: Flask, username: str) -> Account | None:
    with app.app_context():
        account = db.session.scalar(select(Account).where(Account.username == username))
        if account is not None:
            db.session.expunge(account)
        return account


# --- POST /accounts ---------------------------------------------------------------------------


def test_create_account_answers_201_with_the_account(client: FlaskClient, client_key: dict[str, str]) -> None:
    response = post(client, ACCOUNTS, {"username": "Jane", "email": "jane@example.com", "password": STRONG_PASSWORD}, client_key)
    assert response.status_code == 201
    body = response.get_json()
    assert body["username"] == "Jane"
    assert body["email"] == "jane@example.com"
    assert body["status"] == "active"
    assert body["must_change_password"] is False
    assert body["created_at"] and body["password_changed_at"]


def test_create_account_never_shows_a_hash_or_the_password(
    app: Flask, client: FlaskClient, client_key: dict[str, str]
) -> None:
    response = post(client, ACCOUNTS, {"username": "jane", "email": "jane@example.com", "password": STRONG_PASSWORD}, client_key)
    assert response.status_code == 201
    text = response.get_data(as_text=True)
    stored = stored_account(app, "jane")
    assert stored is not None and stored.password_hash
    assert stored.password_hash not in text
    assert "$argon2" not in text
    assert STRONG_PASSWORD not in text
    assert not any("hash" in key for key in response.get_json())


def test_created_account_can_sign_in(client: FlaskClient, client_key: dict[str, str]) -> None:
    post(client, ACCOUNTS, {"username": "jane", "email": "jane@example.com", "password": STRONG_PASSWORD}, client_key)
    assert verify(client, client_key, "jane", STRONG_PASSWORD).status_code == 200


@pytest.mark.parametrize(("given", "kept"), [("fr-CA", "fr"), ("EN", "en"), (None, None)])
def test_create_account_keeps_a_language_we_speak(
    client: FlaskClient, client_key: dict[str, str], given: str | None, kept: str | None
) -> None:
    response = post(client, ACCOUNTS, {"username": "jane", "email": "jane@example.com", "language": given}, client_key)
    assert response.status_code == 201 and response.get_json()["language"] == kept


def test_create_account_refuses_a_language_we_do_not_speak_as_a_profile_change_does(
    app: Flask, client: FlaskClient, client_key: dict[str, str]
) -> None:
    # It used to answer 201 and keep no language, so the customer's mail came in English.
    response = post(client, ACCOUNTS, {"username": "jane", "email": "jane@example.com", "language": "de"}, client_key)
    assert_problem(response, 400, "validation_failed")
    assert response.get_json()["errors"] == [{"field": "language", "message": "Choose en or fr."}]
    assert post(client, ACCOUNTS, {"username": "jane", "email": "jane@example.com"}, client_key).status_code == 201


def test_create_account_without_password_or_email(app: Flask, client: FlaskClient, client_key: dict[str, str]) -> None:
    response = post(client, ACCOUNTS, {"username": "nopass"}, client_key)
    assert response.status_code == 201
    assert response.get_json()["email"] is None
    assert response.get_json()["password_changed_at"] is None
    stored = stored_account(app, "nopass")
    assert stored is not None and stored.password_hash is None
    assert_problem(verify(client, client_key, "nopass", ""), 400, "validation_failed")
    assert_problem(verify(client, client_key, "nopass", STRONG_PASSWORD), 401, "invalid_credentials")


@pytest.mark.parametrize("spelling", ["jane", " JANE", "Jane ", "ｊａｎｅ", "JaNe"])
def test_a_taken_username_is_409_in_any_spelling(
    client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account], spelling: str
) -> None:
    make_account("jane")
    response = post(client, ACCOUNTS, {"username": spelling, "email": "other@example.com"}, client_key)
    assert_problem(response, 409, "username_taken")


def test_a_taken_username_creates_nothing(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    make_account("jane", email="jane@example.com")
    post(client, ACCOUNTS, {"username": " JANE", "email": "other@example.com"}, client_key)
    with app.app_context():
        accounts = db.session.scalars(select(Account)).all()
        assert [(a.username, a.email) for a in accounts] == [("jane", "jane@example.com")]


@pytest.mark.parametrize("password", ["short", "1qaz2wsx3edc4rfv", "aaaaaaaaaaaaaaaa", "x" * 257])
def test_a_weak_password_is_400_weak_password_with_errors(
    app: Flask, client: FlaskClient, client_key: dict[str, str], password: str
) -> None:
    response = post(client, ACCOUNTS, {"username": "jane", "email": "jane@example.com", "password": password}, client_key)
    body = assert_problem(response, 400, "weak_password")
    assert body["errors"] and all(set(error) == {"field", "message"} for error in body["errors"])
    assert body["errors"][0]["field"] == "password"
    assert body["errors"][0]["message"]
    assert stored_account(app, "jane") is None


def test_the_username_as_password_is_refused(client: FlaskClient, client_key: dict[str, str]) -> None:
    response = post(client, ACCOUNTS, {"username": "marmaladeprincess", "password": "MarmaladePrincess"}, client_key)
    body = assert_problem(response, 400, "weak_password")
    assert "username" in body["errors"][0]["message"]


@pytest.mark.parametrize(
    "body, fields",
    [
        ({}, ["username"]),
        ({"username": ""}, ["username"]),
        ({"username": "   "}, ["username"]),
        ({"username": None}, ["username"]),
        ({"username": 42}, ["username"]),
        ({"username": ["jane"]}, ["username"]),
        ({"username": "jane", "email": 7}, ["email"]),
        ({"username": "jane", "password": {"x": 1}}, ["password"]),
        ({"username": 1, "email": 2, "password": 3}, ["username", "email", "password"]),
        ({"username": "x" * 1001}, ["username"]),
        ({"username": "jane", "email": "not-an-email"}, ["email"]),
        ({"username": "ja\u200bne"}, ["username"]),
        ({"username": "j\u0430ne"}, ["username"]),
        ({"username": "j" * 151}, ["username"]),
    ],
)
def test_validation_errors_name_each_field(
    client: FlaskClient, client_key: dict[str, str], body: dict[str, Any], fields: list[str]
) -> None:
    problem = assert_problem(post(client, ACCOUNTS, body, client_key), 400, "validation_failed")
    assert [error["field"] for error in problem["errors"]] == fields
    assert all(isinstance(error["message"], str) and error["message"] for error in problem["errors"])


@pytest.mark.parametrize("email", MALFORMED_BUT_PLAUSIBLE)
def test_malformed_addresses_are_a_400_and_create_nothing(
    app: Flask, client: FlaskClient, client_key: dict[str, str], email: str
) -> None:
    problem = assert_problem(post(client, ACCOUNTS, {"username": "jane", "email": email}, client_key), 400, "validation_failed")
    assert [error["field"] for error in problem["errors"]] == ["email"]
    with app.app_context():
        assert db.session.scalar(select(Account)) is None


@pytest.mark.parametrize("email", MALFORMED_BUT_PLAUSIBLE)
def test_malformed_agent_addresses_are_a_400(client: FlaskClient, make_key: Callable[[str], dict[str, str]], email: str) -> None:
    response = client.post("/api/v1/admin/agents", json={"username": "alice", "email": email}, headers=make_key("admin"))
    problem = assert_problem(response, 400, "validation_failed")
    assert [error["field"] for error in problem["errors"]] == ["email"]


# --- POST /auth/verify ------------------------------------------------------------------------


def test_verify_answers_200_with_the_account_state(
    client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    account = make_account("jane")
    response = verify(client, client_key, "jane", STRONG_PASSWORD)
    assert response.status_code == 200
    body = response.get_json()
    assert body["username"] == "jane"
    assert body["must_change_password"] is False
    assert body["password_changed_at"] == account.password_changed_at.isoformat()
    assert "password_hash" not in body


@pytest.mark.parametrize("spelling", [" JANE ", "ｊａｎｅ", "Jane"])
def test_verify_finds_the_account_in_any_spelling(
    client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account], spelling: str
) -> None:
    make_account("jane")
    response = verify(client, client_key, spelling, STRONG_PASSWORD)
    assert response.status_code == 200
    assert response.get_json()["username"] == "jane"


def test_verify_reports_must_change_password(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    account = make_account("jane")
    with app.app_context():
        db.session.get(Account, account.id).must_change_password = True
        db.session.commit()
    assert verify(client, client_key, "jane", STRONG_PASSWORD).get_json()["must_change_password"] is True


def test_wrong_password_and_missing_username_get_byte_identical_401s(
    client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    wrong_password = verify(client, client_key, "jane", OTHER_STRONG_PASSWORD)
    missing_user = verify(client, client_key, "nobody", OTHER_STRONG_PASSWORD)
    assert_problem(wrong_password, 401, "invalid_credentials")
    assert_problem(missing_user, 401, "invalid_credentials")
    assert wrong_password.get_data() == missing_user.get_data()
    per_request = {"Date", "X-Request-ID"}
    assert {k: v for k, v in wrong_password.headers if k not in per_request} == {
        k: v for k, v in missing_user.headers if k not in per_request
    }


def test_a_disabled_account_cannot_sign_in_even_with_the_right_password(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    account = make_account("jane")
    with app.app_context():
        db.session.get(Account, account.id).status = "disabled"
        db.session.commit()
    disabled = verify(client, client_key, "jane", STRONG_PASSWORD)
    assert_problem(disabled, 401, "invalid_credentials")
    assert disabled.get_data() == verify(client, client_key, "nobody", STRONG_PASSWORD).get_data()


@pytest.mark.parametrize("body", [{"username": "jane"}, {"password": STRONG_PASSWORD}, {"username": "jane", "password": 5}])
def test_verify_needs_both_strings(
    client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account], body: dict[str, Any]
) -> None:
    make_account("jane")
    assert_problem(post(client, VERIFY, body, client_key), 400, "validation_failed")


# --- POST /accounts/{username}/password -------------------------------------------------------


def test_change_password_answers_204_and_swaps_the_passwords(
    client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    response = post(
        client, change_url(), {"current_password": STRONG_PASSWORD, "new_password": OTHER_STRONG_PASSWORD}, client_key
    )
    assert response.status_code == 204
    assert response.get_data() == b""
    assert_problem(verify(client, client_key, "jane", STRONG_PASSWORD), 401, "invalid_credentials")
    assert verify(client, client_key, "jane", OTHER_STRONG_PASSWORD).status_code == 200


def test_change_password_moves_password_changed_at(
    client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    account = make_account("jane")
    post(client, change_url(), {"current_password": STRONG_PASSWORD, "new_password": OTHER_STRONG_PASSWORD}, client_key)
    changed_at = verify(client, client_key, "jane", OTHER_STRONG_PASSWORD).get_json()["password_changed_at"]
    assert changed_at > account.password_changed_at.isoformat()


def test_change_password_with_a_wrong_current_password_is_401(
    client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    response = post(
        client, change_url(), {"current_password": "not the password at all", "new_password": OTHER_STRONG_PASSWORD}, client_key
    )
    assert_problem(response, 401, "invalid_credentials")
    assert verify(client, client_key, "jane", STRONG_PASSWORD).status_code == 200


def test_change_password_of_a_missing_account_is_401(client: FlaskClient, client_key: dict[str, str]) -> None:
    response = post(
        client, change_url("nobody"), {"current_password": STRONG_PASSWORD, "new_password": OTHER_STRONG_PASSWORD}, client_key
    )
    assert_problem(response, 401, "invalid_credentials")


@pytest.mark.parametrize("new_password", ["short", "1qaz2wsx3edc4rfv", "jane@example.com"])
def test_change_password_to_a_weak_one_is_400_and_changes_nothing(
    client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account], new_password: str
) -> None:
    make_account("jane")
    response = post(client, change_url(), {"current_password": STRONG_PASSWORD, "new_password": new_password}, client_key)
    body = assert_problem(response, 400, "weak_password")
    assert body["errors"][0]["field"] == "new_password"
    assert verify(client, client_key, "jane", STRONG_PASSWORD).status_code == 200


def test_change_password_validates_its_fields(client: FlaskClient, client_key: dict[str, str]) -> None:
    body = assert_problem(post(client, change_url(), {"new_password": 3}, client_key), 400, "validation_failed")
    assert [error["field"] for error in body["errors"]] == ["current_password", "new_password"]


# --- problem+json for HTTP errors -------------------------------------------------------------


@pytest.mark.parametrize("url", [VERIFY, ACCOUNTS, change_url()])
def test_malformed_json_is_400(client: FlaskClient, client_key: dict[str, str], url: str) -> None:
    response = client.post(url, data='{"username": "jane",', content_type="application/json", headers=client_key)
    assert_problem(response, 400, "malformed_json")


@pytest.mark.parametrize("payload", ["[]", '["jane"]', '"jane"', "42", "null", "true"])
def test_json_that_is_not_an_object_is_400(client: FlaskClient, client_key: dict[str, str], payload: str) -> None:
    response = client.post(ACCOUNTS, data=payload, content_type="application/json", headers=client_key)
    assert_problem(response, 400, "malformed_json")


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None]
)
def test_a_wrong_content_type_is_415(client: FlaskClient, client_key: dict[str, str], content_type: str | None) -> None:
    response = client.post(VERIFY, data='{"username": "jane", "password": "x"}', content_type=content_type, headers=client_key)
    assert_problem(response, 415, "unsupported_media_type")


def test_a_body_over_64_kib_is_413(client: FlaskClient, client_key: dict[str, str]) -> None:
    big = json.dumps({"username": "jane", "password": "x" * (64 * 1024)})
    response = client.post(VERIFY, data=big, content_type="application/json", headers=client_key)
    assert_problem(response, 413, "payload_too_large")


def test_a_body_just_under_64_kib_is_read(client: FlaskClient, client_key: dict[str, str]) -> None:
    body = json.dumps({"username": "jane", "password": "x", "padding": "p" * (60 * 1024)})
    response = client.post(VERIFY, data=body, content_type="application/json", headers=client_key)
    assert_problem(response, 401, "invalid_credentials")


@pytest.mark.parametrize("url", ["/api/v1/nothing-here", "/api/v2/accounts", "/api/v1/accounts/jane/nothing"])
def test_an_unknown_api_path_is_404(client: FlaskClient, client_key: dict[str, str], url: str) -> None:
    assert_problem(client.get(url, headers=client_key), 404, "not_found")


@pytest.mark.parametrize("method, url", [("get", VERIFY), ("put", ACCOUNTS), ("delete", change_url()), ("get", change_url())])
def test_a_wrong_method_is_405_with_allow(client: FlaskClient, client_key: dict[str, str], method: str, url: str) -> None:
    response = getattr(client, method)(url, headers=client_key)
    assert_problem(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


# --- API keys and roles -----------------------------------------------------------------------

ENDPOINTS = [
    (VERIFY, {"username": "jane", "password": STRONG_PASSWORD}),
    (ACCOUNTS, {"username": "newcomer", "email": "new@example.com"}),
    (change_url(), {"current_password": STRONG_PASSWORD, "new_password": OTHER_STRONG_PASSWORD}),
]


@pytest.mark.parametrize("url, body", ENDPOINTS)
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Bearer rdk_not-a-real-key", "Basic amFuZTpwdw==", "rdk_without_scheme"],
)
def test_a_missing_or_wrong_key_is_401(
    client: FlaskClient, make_account: Callable[..., Account], url: str, body: dict[str, str], authorization: str | None
) -> None:
    make_account("jane")
    headers = {} if authorization is None else {"Authorization": authorization}
    response = post(client, url, body, headers)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_key_is_checked_before_the_body(client: FlaskClient) -> None:
    response = client.post(VERIFY, data="not json", content_type="application/json")
    assert_problem(response, 401, "unauthorized")


@pytest.mark.parametrize("url, body", ENDPOINTS)
def test_a_revoked_key_is_401_at_once(
    app: Flask, client: FlaskClient, make_key: Callable[[str], dict[str, str]], make_account: Callable[..., Account],
    url: str, body: dict[str, str],
) -> None:
    make_account("jane")
    key = make_key("client")
    assert post(client, VERIFY, {"username": "jane", "password": STRONG_PASSWORD}, key).status_code == 200
    with app.app_context():
        assert revoke_api_key(db.session, "client-0", now=utcnow()) is True
        db.session.commit()
    assert_problem(post(client, url, body, key), 401, "unauthorized")


@pytest.mark.parametrize("url, body", ENDPOINTS)
def test_an_agent_key_is_403_on_client_endpoints(
    client: FlaskClient, make_key: Callable[[str], dict[str, str]], make_account: Callable[..., Account],
    url: str, body: dict[str, str],
) -> None:
    make_account("jane")
    assert_problem(post(client, url, body, make_key("agent")), 403, "forbidden")


def test_a_forbidden_call_changes_nothing(
    client: FlaskClient, make_key: Callable[[str], dict[str, str]], make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    post(client, change_url(), {"current_password": STRONG_PASSWORD, "new_password": OTHER_STRONG_PASSWORD}, make_key("agent"))
    assert verify(client, make_key("client"), "jane", STRONG_PASSWORD).status_code == 200


@pytest.mark.parametrize("url, body, status", [(*ENDPOINTS[0], 200), (*ENDPOINTS[1], 201), (*ENDPOINTS[2], 204)])
def test_an_admin_key_may_call_every_client_endpoint(
    client: FlaskClient, make_key: Callable[[str], dict[str, str]], make_account: Callable[..., Account],
    url: str, body: dict[str, str], status: int,
) -> None:
    make_account("jane")
    assert post(client, url, body, make_key("admin")).status_code == status


def test_the_bearer_scheme_is_case_insensitive(
    client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    key = client_key["Authorization"].split(" ", 1)[1]
    response = post(client, VERIFY, {"username": "jane", "password": STRONG_PASSWORD}, {"Authorization": f"bearer {key}"})
    assert response.status_code == 200


# --- whatever the body, never a 5xx -----------------------------------------------------------

JSON_PRIMITIVES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
JSON_VALUES = st.recursive(
    JSON_PRIMITIVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
FIELD_NAMES = ["username", "email", "password", "current_password", "new_password"]
# Objects that mostly use the endpoints' own field names, so the rules behind them get exercised.
PLAUSIBLE_OBJECTS = st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), JSON_VALUES, max_size=5)
PLAUSIBLE_STRINGS = st.fixed_dictionaries(
    {}, optional={name: st.text(max_size=60) for name in FIELD_NAMES}
)
API_URLS = [VERIFY, ACCOUNTS, change_url(), change_url("ｊａｎｅ"), change_url("%00")]
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def assert_no_server_error(response: TestResponse) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code >= 400:
        assert_problem(response, response.status_code)


@FUZZ
@given(url=st.sampled_from(API_URLS), body=JSON_VALUES | PLAUSIBLE_OBJECTS | PLAUSIBLE_STRINGS)
def test_any_json_value_gets_an_answer_never_a_5xx(
    client: FlaskClient, client_key: dict[str, str], url: str, body: Any
) -> None:
    response = client.post(url, data=json.dumps(body), content_type="application/json", headers=client_key)
    assert_no_server_error(response)


@FUZZ
@given(
    url=st.sampled_from(API_URLS),
    data=st.text(max_size=200) | st.binary(max_size=200),
    content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"]),
)
def test_any_text_body_gets_an_answer_never_a_5xx(
    client: FlaskClient, client_key: dict[str, str], url: str, data: str | bytes, content_type: str
) -> None:
    response = client.post(url, data=data, content_type=content_type, headers=client_key)
    assert_no_server_error(response)


@pytest.mark.parametrize("escaped", ["ja\\u0000ne", "\\ud800", "jane\\udfff"])
def test_unstorable_characters_in_a_field_are_a_400_naming_it(
    client: FlaskClient, client_key: dict[str, str], escaped: str
) -> None:
    raw = '{"username": "' + escaped + '", "password": "x"}'
    response = client.post(VERIFY, data=raw, content_type="application/json", headers=client_key)
    body = assert_problem(response, 400, "validation_failed")
    assert [error["field"] for error in body["errors"]] == ["username"]


def test_a_nul_in_the_path_username_is_400(client: FlaskClient, client_key: dict[str, str]) -> None:
    response = post(
        client, change_url("ja%00ne"), {"current_password": STRONG_PASSWORD, "new_password": OTHER_STRONG_PASSWORD}, client_key
    )
    assert_problem(response, 400, "invalid_input")


@pytest.mark.parametrize("url", API_URLS)
@pytest.mark.parametrize(
    "raw",
    [
        '{"username": "ja\\u0000ne", "password": "x", "email": "a@b.co", "current_password": "x", "new_password": "y"}',
        '{"username": "\\ud800", "password": "\\ud800", "current_password": "\\udfff", "new_password": "\\ud800\\ud800\\ud800\\ud800\\ud800\\ud800\\ud800\\ud800"}',
        '{"username": "jane", "email": "ja\\u0000ne@example.com", "password": "correct horse battery\\u0000staple"}',
        '{"username": "jane", "password": "correct horse \\ud83d battery staple"}',
        '{"username": "jane", "password": 1e400}',
        '{"username": "' + "j" * 1000 + '", "password": "' + "p" * 1000 + '"}',
    ],
)
def test_hostile_strings_get_an_answer_never_a_5xx(
    client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account], url: str, raw: str
) -> None:
    make_account("jane")
    response = client.post(url, data=raw, content_type="application/json", headers=client_key)
    assert_no_server_error(response)
