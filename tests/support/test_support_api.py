"""The support API for agent keys: who may call it, finding customers, the account view,
resets and unlocks for a customer on the phone, the trail, the agent's hourly quota, and the
admin calls that hand out keys and agents."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from service.models import Account, AuditEvent, PasswordReset
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.support.agents import sign_in_agent
from tests.conftest import OTHER_STRONG_PASSWORD, STRONG_PASSWORD

MAX_FAILURES = 3
RESETS_PER_HOUR = 2

Headers = dict[str, str]
MakeKey = Callable[[str], Headers]


@pytest.fixture
def app_settings() -> dict[str, Any]:
    return {"LOGIN_MAX_FAILURES": MAX_FAILURES, "AGENT_RESETS_PER_HOUR": RESETS_PER_HOUR}


def accounts_url(username: str = "jane") -> str:
    return f"/api/v1/support/accounts/{username}"


def search(client: FlaskClient, key: Headers, q: str | None, **params: Any) -> TestResponse:
    query = {**({"q": q} if q is not None else {}), **params}
    return client.get("/api/v1/support/accounts", query_string=query, headers=key)


def overview(client: FlaskClient, key: Headers, username: str = "jane") -> TestResponse:
    return client.get(accounts_url(username), headers=key)


def send_reset(client: FlaskClient, key: Headers, username: str = "jane", **body: Any) -> TestResponse:
    return client.post(f"{accounts_url(username)}/password-resets", json={"method": "link", **body}, headers=key)


def unlock(client: FlaskClient, key: Headers, username: str = "jane") -> TestResponse:
    return client.post(f"{accounts_url(username)}/unlock", headers=key)


def events(client: FlaskClient, key: Headers, username: str = "jane", **params: Any) -> TestResponse:
    return client.get(f"{accounts_url(username)}/events", query_string=params, headers=key)


def verify(client: FlaskClient, key: Headers, username: str, password: str) -> TestResponse:
    return client.post("/api/v1/auth/verify", json={"username": username, "password": password}, headers=key)


def assert_problem(response: TestResponse, status: int, code: str, where: str = "") -> dict[str, Any]:
    assert response.status_code == status, (where, response.get_data(as_text=True))
    assert response.mimetype == "application/problem+json", where
    body = response.get_json()
    assert body["status"] == status and body["code"] == code, (where, body)
    return body


def usernames(response: TestResponse) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [account["username"] for account in response.get_json()["accounts"]]


def count_rows(app: Flask, model: type) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def event_types(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent.type).order_by(AuditEvent.id)))


# Every support call, and what an allowed key gets back from it.
SUPPORT_CALLS: list[tuple[str, Callable[[FlaskClient, Headers], TestResponse], int]] = [
    ("search", lambda client, key: search(client, key, "jan"), 200),
    ("view", lambda client, key: overview(client, key), 200),
    ("reset", lambda client, key: send_reset(client, key), 202),
    ("unlock", lambda client, key: unlock(client, key), 204),
    ("events", lambda client, key: events(client, key), 200),
]


# --- who may call it --------------------------------------------------------------------------


def test_every_support_call_without_a_key_is_401(client: FlaskClient, make_account: Callable[..., Account]) -> None:
    make_account("jane")
    for name, call, _allowed in SUPPORT_CALLS:
        for key in ({}, {"Authorization": "Bearer rdk_not-a-real-key"}, {"Authorization": "Basic amFuZTpq"}):
            assert_problem(call(client, key), 401, "unauthorized", where=name)


def test_every_support_call_with_a_client_key_is_403_forbidden(
    app: Flask, client: FlaskClient, client_key: Headers, make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    before = event_types(app)
    for name, call, _allowed in SUPPORT_CALLS:
        assert_problem(call(client, client_key), 403, "forbidden", where=name)
    assert event_types(app) == before  # refused calls did nothing
    assert count_rows(app, PasswordReset) == 0


def test_every_support_call_is_allowed_for_agent_and_admin_keys(
    client: FlaskClient, make_key: MakeKey, make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    for role in ("agent", "admin"):
        key = make_key(role)
        for name, call, allowed in SUPPORT_CALLS:
            response = call(client, key)
            assert response.status_code == allowed, (role, name, response.get_data(as_text=True))


# --- search -----------------------------------------------------------------------------------


def test_search_finds_accounts_by_username_prefix_in_any_case(
    client: FlaskClient, make_key: MakeKey, make_account: Callable[..., Account]
) -> None:
    make_account("jane", email="jane@example.com")
    make_account("Janet", email="t@example.org")
    make_account("john", email="john@example.com")
    key = make_key("agent")
    assert usernames(search(client, key, "jan")) == ["jane", "Janet"]
    assert usernames(search(client, key, "JAN")) == ["jane", "Janet"]
    assert usernames(search(client, key, "  janet ")) == ["Janet"]
    assert usernames(search(client, key, "zed")) == []


def test_search_finds_an_account_by_email_in_any_case(
    client: FlaskClient, make_key: MakeKey, make_account: Callable[..., Account]
) -> None:
    make_account("customer-1", email="Jane.Smith@Example.COM")
    make_account("customer-2", email="someone@example.com")
    key = make_key("agent")
    assert usernames(search(client, key, "jane.smith@example.com")) == ["customer-1"]
    assert usernames(search(client, key, "JANE.SMITH@EXAMPLE.COM")) == ["customer-1"]
    assert usernames(search(client, key, "jane.smith@exa")) == ["customer-1"]
    found = search(client, key, "jane.smith@example.com").get_json()["accounts"][0]
    assert found["email"] == "Jane.Smith@Example.COM"
    assert found["status"] == "active"
    assert found["created_at"]


def test_like_wildcards_in_the_query_are_literal(
    client: FlaskClient, make_key: MakeKey, make_account: Callable[..., Account]
) -> None:
    for number, username in enumerate(["ab_c", "abxc", "ab%d", "abyd", "ab\\e"]):
        make_account(username, email=f"person{number}@example.com")
    key = make_key("agent")
    for q, expected in [
        ("ab_", ["ab_c"]),
        ("ab%", ["ab%d"]),
        ("%", []),
        ("_", []),
        ("a%c", []),
        ("a_%", []),
        ("\\", []),
        ("ab\\", ["ab\\e"]),
    ]:
        assert usernames(search(client, key, q)) == expected, q


def test_search_pages_are_at_most_50_and_say_whether_more_follow(
    app: Flask, client: FlaskClient, make_key: MakeKey
) -> None:
    with app.app_context():
        for number in range(55):
            account = Account(username=f"user{number:02}", username_key=f"user{number:02}",
                              email=f"user{number:02}@example.com", email_key=f"user{number:02}@example.com")
            account.refresh_search_columns()  # as create_account does
            db.session.add(account)
        db.session.commit()
    key = make_key("agent")

    first = search(client, key, "user", per_page=500).get_json()
    assert first["per_page"] == 50 and first["page"] == 1 and first["has_more"] is True
    assert [a["username"] for a in first["accounts"]] == [f"user{n:02}" for n in range(50)]
    second = search(client, key, "user", per_page=50, page=2).get_json()
    assert [a["username"] for a in second["accounts"]] == [f"user{n:02}" for n in range(50, 55)]
    assert second["has_more"] is False

    default = search(client, key, "user").get_json()
    assert len(default["accounts"]) == 20 and default["has_more"] is True
    exact = search(client, key, "user", per_page=5, page=11).get_json()
    assert [a["username"] for a in exact["accounts"]] == [f"user{n:02}" for n in range(50, 55)]
    assert exact["has_more"] is False
    assert_problem(search(client, key, "user", page="two"), 400, "validation_failed")


def test_search_without_a_query_or_with_an_overlong_one_is_400(client: FlaskClient, make_key: MakeKey) -> None:
    key = make_key("agent")
    for q in (None, "", "   ", "x" * 255):
        assert_problem(search(client, key, q), 400, "validation_failed")


# --- the account view -------------------------------------------------------------------------


def test_the_account_view_shows_what_an_agent_needs(
    client: FlaskClient, make_key: MakeKey, make_account: Callable[..., Account]
) -> None:
    created = make_account("Jane", email="jane@example.com")
    key = make_key("agent")
    body = overview(client, key, "jane").get_json()
    assert body["username"] == "Jane"
    assert body["email"] == "jane@example.com"
    assert body["status"] == "active"
    assert body["locked"] is False
    assert datetime.fromisoformat(body["created_at"]) == created.created_at
    assert datetime.fromisoformat(body["password_changed_at"]) == created.password_changed_at
    assert body["pending_resets"] == []

    before = datetime.now(UTC)
    assert send_reset(client, key, "jane", method="temporary_password").status_code == 202
    pending = overview(client, key, "jane").get_json()["pending_resets"]
    assert len(pending) == 1
    assert pending[0]["method"] == "temporary_password"
    expires_at = datetime.fromisoformat(pending[0]["expires_at"])
    assert before + timedelta(hours=24) <= expires_at <= datetime.now(UTC) + timedelta(hours=24)

    make_account("imported", email=None, password=None)
    bare = overview(client, key, "imported").get_json()
    assert bare["email"] is None
    assert bare["password_changed_at"] is None


def test_every_call_about_a_missing_account_is_404(app: Flask, client: FlaskClient, make_key: MakeKey) -> None:
    key = make_key("agent")
    for name, call, _allowed in SUPPORT_CALLS[1:]:
        assert_problem(call(client, key), 404, "account_not_found", where=name)
    assert count_rows(app, PasswordReset) == 0


# --- resets -----------------------------------------------------------------------------------


def test_a_reset_answers_202_with_the_email_masked(
    app: Flask, client: FlaskClient, make_key: MakeKey, make_account: Callable[..., Account]
) -> None:
    make_account("jane", email="jane@example.com")
    response = send_reset(client, make_key("agent"), "jane", method="link")
    assert response.status_code == 202
    body = response.get_json()
    assert body["sent_to"] == "j***@example.com"
    assert "jane@" not in response.get_data(as_text=True)
    with app.app_context():
        reset = db.session.scalar(select(PasswordReset))
        assert reset.method == "link" and reset.used_at is None and reset.revoked_at is None

    make_account("doe", email="Jane.Doe@Example.org")
    response = send_reset(client, make_key("agent"), "doe", method="temporary_password")
    assert response.status_code == 202
    assert response.get_json()["sent_to"] == "J***@Example.org"


def test_a_reset_for_an_account_without_email_is_409(
    app: Flask, client: FlaskClient, make_key: MakeKey, make_account: Callable[..., Account]
) -> None:
    make_account("jane", email=None)
    assert_problem(send_reset(client, make_key("agent"), "jane"), 409, "no_email_on_file")
    assert count_rows(app, PasswordReset) == 0
    assert "reset.issued" not in event_types(app)


def test_a_reset_with_a_bad_method_is_400(
    app: Flask, client: FlaskClient, make_key: MakeKey, make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    key = make_key("agent")
    for method in ("sms", "", "LINK", 7, None):
        response = send_reset(client, key, "jane", method=method)
        body = assert_problem(response, 400, "validation_failed")
        assert [error["field"] for error in body["errors"]] == ["method"], method
    assert count_rows(app, PasswordReset) == 0


def test_the_note_and_ticket_land_in_the_event_details(
    client: FlaskClient, make_key: MakeKey, make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    key = make_key("agent")
    response = send_reset(client, key, "jane", method="link", note="Caller verified by DOB", ticket="T-1234")
    assert response.status_code == 202
    trail = events(client, key).get_json()["events"]
    requested = next(event for event in trail if event["type"] == "reset.requested")
    issued = next(event for event in trail if event["type"] == "reset.issued")
    for event in (requested, issued):
        assert event["details"]["note"] == "Caller verified by DOB"
        assert event["details"]["ticket"] == "T-1234"
        assert event["details"]["method"] == "link"


# Line breaks (which would start a new header or log line), other control characters and the
# Unicode line separators: none belongs in a ticket number, a note or a reason.
NOT_ONE_LINE = ["T-1\r\nBcc: evil@evil.test", "T-1\nx", "T-1\n", "a\tb", "a\x1bb", "a\x7fb", "a\x85b", "a\u2028b"]


@pytest.mark.parametrize("value", NOT_ONE_LINE)
@pytest.mark.parametrize("field", ["ticket", "note"])
def test_a_ticket_or_note_of_more_than_one_line_is_refused(
    app: Flask, client: FlaskClient, make_key: MakeKey, make_account: Callable[..., Account], field: str, value: str
) -> None:
    make_account("jane")
    response = send_reset(client, make_key("agent"), "jane", method="link", **{field: value})
    body = assert_problem(response, 400, "validation_failed")
    assert body["errors"] == [{"field": field, "message": f"{field} must be one line, without control characters."}]
    assert count_rows(app, PasswordReset) == 0


@pytest.mark.parametrize(("field", "most"), [("ticket", 100), ("note", 200)])
def test_a_ticket_or_note_longer_than_the_console_takes_is_refused(
    app: Flask, client: FlaskClient, make_key: MakeKey, make_account: Callable[..., Account], field: str, most: int
) -> None:
    make_account("jane")
    key = make_key("agent")
    response = send_reset(client, key, "jane", method="link", **{field: "T" * (most + 1)})
    body = assert_problem(response, 400, "validation_failed")
    assert body["errors"] == [{"field": field, "message": f"{field} must be at most {most} characters."}]
    assert send_reset(client, key, "jane", method="link", **{field: "T" * most}).status_code == 202


@pytest.mark.parametrize("value", NOT_ONE_LINE)
def test_a_freeze_reason_of_more_than_one_line_is_refused(
    app: Flask, client: FlaskClient, make_key: MakeKey, make_account: Callable[..., Account], value: str
) -> None:
    make_account("jane")
    response = client.post(f"{accounts_url()}/freeze", json={"reason": value}, headers=make_key("agent"))
    body = assert_problem(response, 400, "validation_failed")
    assert [error["field"] for error in body["errors"]] == ["reason"]
    with app.app_context():
        assert db.session.scalar(select(Account.frozen_at)) is None


# --- unlock -----------------------------------------------------------------------------------


def test_unlock_ends_a_sign_in_lock(
    client: FlaskClient, client_key: Headers, make_key: MakeKey, make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    agent_key = make_key("agent")
    assert overview(client, agent_key).get_json()["locked"] is False
    for _ in range(MAX_FAILURES):
        assert verify(client, client_key, "jane", OTHER_STRONG_PASSWORD).status_code == 401
    assert verify(client, client_key, "jane", STRONG_PASSWORD).status_code == 429
    assert overview(client, agent_key).get_json()["locked"] is True

    response = unlock(client, agent_key)
    assert response.status_code == 204
    assert response.get_data() == b""
    assert overview(client, agent_key).get_json()["locked"] is False
    assert verify(client, client_key, "jane", STRONG_PASSWORD).status_code == 200


# --- events -----------------------------------------------------------------------------------


def test_events_come_newest_first(
    client: FlaskClient, make_key: MakeKey, make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    key = make_key("agent")
    overview(client, key)
    send_reset(client, key, method="link")
    unlock(client, key)
    trail = events(client, key).get_json()["events"]
    assert [event["type"] for event in trail] == [
        "account.unlocked", "reset.issued", "reset.requested", "support.viewed", "account.created",
    ]
    times = [datetime.fromisoformat(event["at"]) for event in trail]
    assert times == sorted(times, reverse=True)
    assert {"at", "type", "actor", "ip"} <= set(trail[0])
    assert trail[0]["actor"] == "key:agent-0"
    assert trail[0]["ip"] == "127.0.0.1"


def test_events_are_paged_without_gaps_or_overlap(
    client: FlaskClient, make_key: MakeKey, make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    key = make_key("agent")
    for _ in range(4):
        unlock(client, key)
    everything = events(client, key).get_json()
    assert everything["has_more"] is False and len(everything["events"]) == 5

    pages = []
    for page in (1, 2, 3):
        body = events(client, key, page=page, per_page=2).get_json()
        assert body["page"] == page and body["per_page"] == 2
        assert body["has_more"] is (page < 3)
        pages.extend(body["events"])
    assert pages == everything["events"]
    assert events(client, key, per_page=1000).get_json()["per_page"] == 50


# --- the agent's hourly quota -----------------------------------------------------------------


def test_an_agent_key_may_send_only_so_many_resets_an_hour(
    client: FlaskClient, make_key: MakeKey, make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    make_account("john", email="john@example.com")
    busy_key, other_key = make_key("agent"), make_key("agent")
    start = datetime.now(UTC)

    for username in ("jane", "john"):
        assert send_reset(client, busy_key, username).status_code == 202
    refused = send_reset(client, busy_key, "jane")
    assert_problem(refused, 429, "rate_limited")
    assert int(refused.headers["Retry-After"]) > 0
    assert send_reset(client, other_key, "jane").status_code == 202

    with time_machine.travel(start + timedelta(minutes=30)):
        later = send_reset(client, busy_key, "jane")
        assert_problem(later, 429, "rate_limited")
        # The quota frees up when the first reset is an hour old: about 30 minutes from here.
        assert 25 * 60 <= int(later.headers["Retry-After"]) <= 31 * 60
    with time_machine.travel(start + timedelta(hours=1, minutes=1)):
        assert send_reset(client, busy_key, "jane").status_code == 202


def test_refused_resets_do_not_use_up_the_quota(
    client: FlaskClient, make_key: MakeKey, make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    make_account("noemail", email=None)
    key = make_key("agent")
    for _ in range(RESETS_PER_HOUR + 1):
        assert send_reset(client, key, "noemail").status_code == 409
        assert send_reset(client, key, "nobody").status_code == 404
    assert send_reset(client, key, "jane").status_code == 202


# --- admin ------------------------------------------------------------------------------------

ADMIN_CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/api/v1/admin/api-keys", {"name": "new-key", "role": "agent"}),
    ("DELETE", "/api/v1/admin/api-keys/client-0", None),
    ("POST", "/api/v1/admin/agents", {"username": "sam", "email": "sam@example.com"}),
]


def test_admin_calls_are_refused_to_agent_and_client_keys(
    app: Flask, client: FlaskClient, make_key: MakeKey
) -> None:
    keys = {"client": make_key("client"), "agent": make_key("agent")}
    for method, url, body in ADMIN_CALLS:
        assert_problem(client.open(url, method=method, json=body), 401, "unauthorized", where=url)
        for role, key in keys.items():
            assert_problem(client.open(url, method=method, json=body, headers=key), 403, "forbidden", where=f"{role} {url}")
    # The client key named in the DELETE still works: nothing was revoked.
    still_works = client.post("/api/v1/auth/verify", json={"username": "x", "password": "y"}, headers=keys["client"])
    assert_problem(still_works, 401, "invalid_credentials")


def test_an_admin_creates_a_key_that_works_at_once(
    client: FlaskClient, make_key: MakeKey, make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    admin = make_key("admin")
    response = client.post("/api/v1/admin/api-keys", json={"name": "helpdesk", "role": "agent"}, headers=admin)
    assert response.status_code == 201
    body = response.get_json()
    assert body["name"] == "helpdesk" and body["role"] == "agent" and body["key"].startswith("rdk_")
    new_key = {"Authorization": f"Bearer {body['key']}"}
    assert usernames(search(client, new_key, "jane")) == ["jane"]
    assert send_reset(client, new_key).status_code == 202
    assert events(client, new_key).get_json()["events"][0]["actor"] == "key:helpdesk"

    website = client.post("/api/v1/admin/api-keys", json={"name": "website", "role": "client"}, headers=admin)
    website_key = {"Authorization": f"Bearer {website.get_json()['key']}"}
    assert_problem(search(client, website_key, "jane"), 403, "forbidden")
    bad_role = client.post("/api/v1/admin/api-keys", json={"name": "x", "role": "root"}, headers=admin)
    assert_problem(bad_role, 400, "validation_failed")


@pytest.mark.parametrize(
    "name", ["ja/ne", "two\nlines", "right\u202eleft", "\ufeffbom", "zero\u200bwidth", "-dash", "x" * 101, "café"]
)
def test_a_key_name_is_plain_letters_digits_and_dots_dashes_underscores(
    client: FlaskClient, make_key: MakeKey, name: str
) -> None:
    """The name is the actor of every event the key causes and the address that revokes it:
    `ja/ne` could not be revoked over the API, and a line break or a right-to-left mark would
    have gone into the trail and webhooks as it was."""
    admin = make_key("admin")
    refused = client.post("/api/v1/admin/api-keys", json={"name": name, "role": "agent"}, headers=admin)
    assert_problem(refused, 400, "validation_failed")


def test_a_key_name_is_taken_in_any_case(client: FlaskClient, make_key: MakeKey) -> None:
    admin = make_key("admin")
    assert client.post("/api/v1/admin/api-keys", json={"name": "web.site_2", "role": "client"}, headers=admin).status_code == 201
    again = client.post("/api/v1/admin/api-keys", json={"name": "WEB.site_2", "role": "client"}, headers=admin)
    assert_problem(again, 400, "validation_failed")


def test_a_revoked_key_is_refused_at_once(
    client: FlaskClient, make_key: MakeKey, make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    admin = make_key("admin")
    created = client.post("/api/v1/admin/api-keys", json={"name": "temp", "role": "agent"}, headers=admin).get_json()
    key = {"Authorization": f"Bearer {created['key']}"}
    assert search(client, key, "jane").status_code == 200

    assert client.delete("/api/v1/admin/api-keys/temp", headers=admin).status_code == 204
    for name, call, _allowed in SUPPORT_CALLS:
        assert_problem(call(client, key), 401, "unauthorized", where=name)
    assert_problem(client.delete("/api/v1/admin/api-keys/temp", headers=admin), 404, "api_key_not_found")


def test_an_admin_creates_an_agent_who_can_sign_in(app: Flask, client: FlaskClient, make_key: MakeKey) -> None:
    admin = make_key("admin")
    response = client.post(
        "/api/v1/admin/agents",
        json={"username": "sam", "email": "sam@example.com", "password": "agent horse battery staple"},
        headers=admin,
    )
    assert response.status_code == 201
    assert response.get_json() == {"username": "sam", "email": "sam@example.com", "status": "active"}
    with app.app_context():
        agent = sign_in_agent(db.session, "sam", "agent horse battery staple", ip=None, now=utcnow())
        assert agent is not None and agent.username == "sam"

    weak = client.post(
        "/api/v1/admin/agents", json={"username": "kim", "email": "kim@example.com", "password": "password"},
        headers=admin,
    )
    assert_problem(weak, 400, "weak_password")
    taken = client.post("/api/v1/admin/agents", json={"username": "SAM", "email": "s2@example.com"}, headers=admin)
    assert_problem(taken, 409, "username_taken")


def test_absurd_page_numbers_are_clamped_not_a_500(
    client: FlaskClient, make_key: MakeKey, make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    key = make_key("agent")
    huge = "99999999999999999999"
    found = search(client, key, "j", page=huge)
    assert found.status_code == 200 and found.get_json()["accounts"] == []
    assert events(client, key, page=huge).status_code == 200
