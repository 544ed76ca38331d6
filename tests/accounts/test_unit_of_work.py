"""One unit of work per request: a refused step leaves nothing behind, in any table.

Each test takes a row count of every table before a refused call and after it, and checks
that what the refusal touched (a temporary password, a link, an agent's quota) is as it was.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from service.models import Account, AgentResetQuota, AuditEvent, Base, OutboxMessage, PasswordReset
from service.outbox.queue import open_body
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.resets.issuing import issue_reset
from service.resets.policy import reset_policy
from service.support.agents import create_agent
from tests.conftest import OTHER_STRONG_PASSWORD, STRONG_PASSWORD
from tests.formtools import csrf_token_in, post_form

WEAK_PASSWORD = "password"
AGENT_PASSWORD = "agent horse battery staple"
TEMPORARY_PASSWORD_LINE = re.compile(r"^ {4}(\S+)\r?$", re.MULTILINE)
LINK_TOKEN = re.compile(r"http://localhost/reset-password/(\S+)")

MakeKey = Callable[[str], dict[str, str]]


# --- helpers ----------------------------------------------------------------------------------


def row_counts(app: Flask) -> dict[str, int]:
    """How many rows every table holds."""
    with app.app_context():
        return {
            table.name: db.session.scalar(select(func.count()).select_from(table))
            for table in Base.metadata.sorted_tables
        }


def problem_code(response: TestResponse) -> str:
    assert response.mimetype == "application/problem+json", response.get_data(as_text=True)
    code: str = response.get_json()["code"]
    return code


def issue(app: Flask, account_id: int, method: str) -> tuple[int, str]:
    """Issue a reset the way the dispatcher does and commit it; returns its id and the secret
    its (still queued) mail carries: the temporary password, or the link's token."""
    with app.app_context():
        account = db.session.get(Account, account_id)
        issued = issue_reset(
            db.session, account, method, policy=reset_policy(), requested_by="cli", ip=None, now=utcnow()
        )
        db.session.commit()
        body = db.session.scalars(select(OutboxMessage.text_body).order_by(OutboxMessage.id.desc())).first()
        pattern = LINK_TOKEN if method == "link" else TEMPORARY_PASSWORD_LINE
        match = pattern.search(open_body(body) if body else "")
        assert match, body
        return issued.reset_id, match.group(1)


def reset_row(app: Flask, reset_id: int) -> PasswordReset:
    with app.app_context():
        reset = db.session.get(PasswordReset, reset_id)
        db.session.expunge(reset)
        return reset


def account_row(app: Flask, username: str) -> Account:
    with app.app_context():
        account = db.session.scalar(select(Account).where(Account.username == username))
        db.session.expunge(account)
        return account


def event_types(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent.type).order_by(AuditEvent.id)))


def quota_used(app: Flask) -> dict[str, int]:
    with app.app_context():
        return dict(db.session.execute(select(AgentResetQuota.actor, AgentResetQuota.used)).all())


def verify(client: FlaskClient, key: dict[str, str], username: str, password: str) -> TestResponse:
    return client.post("/api/v1/auth/verify", json={"username": username, "password": password}, headers=key)


def change_password(client: FlaskClient, key: dict[str, str], current: str, new: str) -> TestResponse:
    return client.post(
        "/api/v1/accounts/jane/password", json={"current_password": current, "new_password": new}, headers=key
    )


# --- a password change signed in with a temporary password ------------------------------------


def test_a_weak_new_password_after_a_temporary_one_leaves_the_temporary_password_pending(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    account = make_account()
    reset_id, temporary = issue(app, account.id, "temporary_password")
    before_counts, before_events = row_counts(app), event_types(app)
    before_account = account_row(app, "jane")

    refused = change_password(client, client_key, temporary, WEAK_PASSWORD)
    assert refused.status_code == 400
    assert problem_code(refused) == "weak_password"

    assert row_counts(app) == before_counts  # no event, no queued mail, nothing else
    assert event_types(app) == before_events
    assert "password.changed" not in before_events
    reset = reset_row(app, reset_id)
    assert reset.used_at is None and reset.revoked_at is None
    after_account = account_row(app, "jane")
    assert after_account.must_change_password is before_account.must_change_password is False
    assert after_account.password_hash == before_account.password_hash
    assert after_account.password_changed_at == before_account.password_changed_at

    # The temporary password still signs in, once, and must then be changed.
    signed_in = verify(client, client_key, "jane", temporary)
    assert signed_in.status_code == 200, signed_in.get_data(as_text=True)
    assert signed_in.get_json()["must_change_password"] is True
    assert reset_row(app, reset_id).used_at is not None


def test_a_weak_new_password_after_a_temporary_one_can_be_followed_by_a_good_one(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    account = make_account()
    _reset_id, temporary = issue(app, account.id, "temporary_password")
    assert change_password(client, client_key, temporary, WEAK_PASSWORD).status_code == 400
    assert change_password(client, client_key, temporary, OTHER_STRONG_PASSWORD).status_code == 204
    assert event_types(app).count("password.changed") == 2  # the temporary one used, then the new one
    after = verify(client, client_key, "jane", OTHER_STRONG_PASSWORD)
    assert after.status_code == 200 and after.get_json()["must_change_password"] is False


def test_a_weak_new_password_with_the_current_password_changes_nothing(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    make_account()
    before = row_counts(app)
    assert problem_code(change_password(client, client_key, STRONG_PASSWORD, WEAK_PASSWORD)) == "weak_password"
    assert row_counts(app) == before
    assert verify(client, client_key, "jane", STRONG_PASSWORD).status_code == 200


# --- account creation -------------------------------------------------------------------------


@pytest.mark.parametrize("username", ["jane", " JANE "])
def test_creating_an_account_under_a_taken_name_writes_nothing(
    app: Flask,
    client: FlaskClient,
    client_key: dict[str, str],
    make_account: Callable[..., Account],
    username: str,
) -> None:
    make_account()
    before = row_counts(app)
    refused = client.post(
        "/api/v1/accounts",
        json={"username": username, "email": "other@example.com", "password": OTHER_STRONG_PASSWORD},
        headers=client_key,
    )
    assert refused.status_code == 409
    assert problem_code(refused) == "username_taken"
    assert row_counts(app) == before
    assert account_row(app, "jane").email == "jane@example.com"


@pytest.mark.parametrize(
    "body, code",
    [
        ({"username": "bob", "email": "bob@example.com", "password": WEAK_PASSWORD}, "weak_password"),
        ({"username": "bob", "email": "not an address", "password": STRONG_PASSWORD}, "validation_failed"),
    ],
    ids=["weak-password", "bad-email"],
)
def test_a_refused_account_creation_writes_nothing(
    app: Flask, client: FlaskClient, client_key: dict[str, str], body: dict[str, Any], code: str
) -> None:
    before = row_counts(app)
    refused = client.post("/api/v1/accounts", json=body, headers=client_key)
    assert refused.status_code == 400
    assert problem_code(refused) == code
    assert row_counts(app) == before


# --- confirming a reset link ------------------------------------------------------------------


def test_a_weak_password_through_a_link_over_the_api_leaves_the_link_usable(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    account = make_account()
    reset_id, token = issue(app, account.id, "link")
    before_counts, before_events = row_counts(app), event_types(app)

    refused = client.post("/api/v1/password-resets/confirm", json={"token": token, "new_password": WEAK_PASSWORD})
    assert refused.status_code == 400
    assert problem_code(refused) == "weak_password"

    assert row_counts(app) == before_counts
    assert event_types(app) == before_events
    assert reset_row(app, reset_id).used_at is None
    assert verify(client, client_key, "jane", STRONG_PASSWORD).status_code == 200
    assert client.get(f"/api/v1/password-resets/{token}").status_code == 200
    confirmed = client.post(
        "/api/v1/password-resets/confirm", json={"token": token, "new_password": OTHER_STRONG_PASSWORD}
    )
    assert confirmed.status_code == 204


def test_a_weak_password_through_a_link_on_the_page_leaves_the_link_usable(
    app: Flask, client: FlaskClient, make_account: Callable[..., Account]
) -> None:
    account = make_account()
    reset_id, token = issue(app, account.id, "link")
    assert client.get(f"/reset-password/{token}").status_code == 302
    before_counts, before_events = row_counts(app), event_types(app)

    refused = post_form(
        client, "/reset-password/new", {"new_password": WEAK_PASSWORD, "confirm_password": WEAK_PASSWORD}
    )
    assert refused.status_code == 400, refused.get_data(as_text=True)

    assert row_counts(app) == before_counts
    assert event_types(app) == before_events
    assert reset_row(app, reset_id).used_at is None
    done = post_form(
        client, "/reset-password/new", {"new_password": OTHER_STRONG_PASSWORD, "confirm_password": OTHER_STRONG_PASSWORD}
    )
    assert done.status_code == 302 and done.headers["Location"].endswith("/reset-password/done")


# --- an agent's reset -------------------------------------------------------------------------


@pytest.fixture
def app_settings() -> dict[str, Any]:
    return {"AGENT_RESETS_PER_HOUR": 2}


def agent_reset(client: FlaskClient, key: dict[str, str], username: str) -> TestResponse:
    return client.post(f"/api/v1/support/accounts/{username}/password-resets", json={"method": "link"}, headers=key)


def test_an_agent_reset_for_a_missing_account_writes_nothing_and_takes_no_quota(
    app: Flask, client: FlaskClient, make_key: MakeKey
) -> None:
    agent = make_key("agent")
    before = row_counts(app)
    refused = agent_reset(client, agent, "nobody")
    assert refused.status_code == 404
    assert problem_code(refused) == "account_not_found"
    assert row_counts(app) == before
    assert quota_used(app) == {}  # not even the quota row


def test_refused_agent_resets_give_their_quota_back(
    app: Flask, client: FlaskClient, make_key: MakeKey, make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    make_account("bob", email=None)
    agent = make_key("agent")
    assert agent_reset(client, agent, "jane").status_code == 202
    [(actor, used)] = quota_used(app).items()
    assert used == 1

    before = row_counts(app)
    for username, status, code in [("nobody", 404, "account_not_found"), ("bob", 409, "no_email_on_file")] * 2:
        refused = agent_reset(client, agent, username)
        assert refused.status_code == status
        assert problem_code(refused) == code
    assert row_counts(app) == before
    assert quota_used(app) == {actor: 1}

    # The hour's second (and last) reset is still there to take.
    assert agent_reset(client, agent, "jane").status_code == 202
    assert agent_reset(client, agent, "jane").status_code == 429


def test_a_console_reset_for_an_account_without_email_takes_no_quota(
    app: Flask, make_account: Callable[..., Account]
) -> None:
    make_account("bob", email=None)
    with app.app_context():
        create_agent(db.session, username="alice", email="alice@shop.example", password=AGENT_PASSWORD, now=utcnow())
        db.session.commit()
    browser = app.test_client()
    signed_in = post_form(browser, "/support/login", {"username": "alice", "password": AGENT_PASSWORD})
    assert signed_in.status_code == 302
    before = row_counts(app)

    page = browser.get("/support")
    assert page.status_code == 200
    answer = browser.post(
        "/support/accounts/bob/reset-link",
        data={"csrf_token": csrf_token_in(page.get_data(as_text=True)), "verified_by": "callback"},
    )
    assert answer.status_code == 302
    assert "No email address on file" in browser.get("/support/accounts/bob").get_data(as_text=True)

    after = row_counts(app)
    # The pages' views are audited (support.viewed); nothing else was written.
    assert {name: count for name, count in after.items() if name != "audit_events"} == {
        name: count for name, count in before.items() if name != "audit_events"
    }
    assert "reset.requested" not in event_types(app)
    assert quota_used(app) == {}


# --- administration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [{"name": "taken", "role": "client"}, {"name": " taken ", "role": "agent"}, {"name": "new", "role": "root"}],
    ids=["same-name", "same-name-padded", "bad-role"],
)
def test_a_refused_api_key_creation_writes_nothing(
    app: Flask, client: FlaskClient, make_key: MakeKey, body: dict[str, str]
) -> None:
    admin = make_key("admin")
    assert client.post("/api/v1/admin/api-keys", json={"name": "taken", "role": "client"}, headers=admin).status_code == 201
    before = row_counts(app)
    refused = client.post("/api/v1/admin/api-keys", json=body, headers=admin)
    assert refused.status_code == 400
    assert problem_code(refused) == "validation_failed"
    assert row_counts(app) == before


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"username": "ALICE", "email": "alice2@shop.example"}, 409, "username_taken"),
        ({"username": "sam", "email": "sam@shop.example", "password": WEAK_PASSWORD}, 400, "weak_password"),
        ({"username": "sam", "email": "no address"}, 400, "validation_failed"),
    ],
    ids=["taken", "weak-password", "bad-email"],
)
def test_a_refused_agent_creation_writes_nothing(
    app: Flask, client: FlaskClient, make_key: MakeKey, body: dict[str, str], status: int, code: str
) -> None:
    admin = make_key("admin")
    created = client.post("/api/v1/admin/agents", json={"username": "alice", "email": "alice@shop.example"}, headers=admin)
    assert created.status_code == 201
    before = row_counts(app)
    refused = client.post("/api/v1/admin/agents", json=body, headers=admin)
    assert refused.status_code == status
    assert problem_code(refused) == code
    assert row_counts(app) == before
