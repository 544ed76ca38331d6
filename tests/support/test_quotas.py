"""The agents' hourly reset quota, in its own table: it holds when many resets arrive at once,
on SQLite and PostgreSQL; a refused reset gives its share back; the window restarts after an hour."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from service.models import Account, AgentResetQuota, AuditEvent, PasswordReset
from service.platform.clock import utcnow
from service.platform.errors import RateLimited
from service.platform.extensions import db
from service.support.quotas import QUOTA_WINDOW, take_reset_from_quota

RESETS_PER_HOUR = 5
SIMULTANEOUS = 12
THREAD_WAIT_SECONDS = 60

MakeKey = Callable[[str], dict[str, str]]


@pytest.fixture
def app_settings() -> dict[str, Any]:
    # The account's own cap on reset mails is another rule (tests/resets); here only the agent's quota binds.
    return {"AGENT_RESETS_PER_HOUR": RESETS_PER_HOUR, "RESET_MAILS_PER_HOUR": 100}


def send_reset(client: FlaskClient, key: dict[str, str], username: str = "jane") -> TestResponse:
    return client.post(f"/api/v1/support/accounts/{username}/password-resets", json={"method": "link"}, headers=key)


def quota_rows(app: Flask) -> list[tuple[str, int]]:
    with app.app_context():
        return [(row.actor, row.used) for row in db.session.execute(select(AgentResetQuota.actor, AgentResetQuota.used))]


def count(app: Flask, statement: Any) -> int:
    with app.app_context():
        found: int = db.session.scalar(statement)
        return found


# --- over HTTP, all at once -------------------------------------------------------------------


@pytest.mark.parametrize("earlier_resets", [0, 1], ids=["first-of-the-hour", "one-sent-before"])
def test_simultaneous_resets_from_one_agent_key_issue_exactly_the_quota(
    app: Flask, make_key: MakeKey, make_account: Callable[..., Account], earlier_resets: int
) -> None:
    make_account("jane")
    key = make_key("agent")
    # The key's first call notes when it was used; made here, it keeps the simultaneous calls
    # from queueing behind that one write, which would hide a quota that does not hold. With a
    # reset sent before, the quota's row exists already and every call reads the same count.
    if earlier_resets:
        assert send_reset(app.test_client(), key).status_code == 202
    else:
        assert app.test_client().get("/api/v1/support/accounts/jane", headers=key).status_code == 200
    start = threading.Barrier(SIMULTANEOUS)
    answers: list[tuple[int, str | None]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def agent_on_the_phone() -> None:
        try:
            client = app.test_client()
            with app.app_context():
                start.wait(THREAD_WAIT_SECONDS)
                response = send_reset(client, key)
            with lock:
                answers.append((response.status_code, response.headers.get("Retry-After")))
        except BaseException as error:
            with lock:
                errors.append(error)

    threads = [threading.Thread(target=agent_on_the_phone) for _ in range(SIMULTANEOUS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(THREAD_WAIT_SECONDS)
    assert not errors, errors
    assert len(answers) == SIMULTANEOUS

    statuses = sorted(status for status, _retry_after in answers)
    issued_now = RESETS_PER_HOUR - earlier_resets
    assert statuses == [202] * issued_now + [429] * (SIMULTANEOUS - issued_now)
    for status, retry_after in answers:
        if status == 429:
            assert retry_after is not None and 0 < int(retry_after) <= QUOTA_WINDOW.total_seconds() + 1
    [(_actor, used)] = quota_rows(app)
    assert used == RESETS_PER_HOUR
    assert count(app, select(func.count()).select_from(PasswordReset)) == RESETS_PER_HOUR
    issued = select(func.count()).select_from(AuditEvent).where(AuditEvent.type == "reset.issued")
    assert count(app, issued) == RESETS_PER_HOUR


def test_a_refused_reset_gives_its_share_of_the_quota_back(
    app: Flask, client: FlaskClient, make_key: MakeKey, make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    key = make_key("agent")
    assert send_reset(client, key).status_code == 202
    for _ in range(RESETS_PER_HOUR * 2):
        assert send_reset(client, key, "nobody").status_code == 404
    [(_actor, used)] = quota_rows(app)
    assert used == 1
    for _ in range(RESETS_PER_HOUR - 1):
        assert send_reset(client, key).status_code == 202
    refused = send_reset(client, key)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0


# --- the rule itself --------------------------------------------------------------------------


def take(app: Flask, actor: str, *, quota: int, minutes: float, start: Any) -> None:
    """Take one reset at `start + minutes` and commit, as a door does."""
    with app.app_context():
        try:
            take_reset_from_quota(db.session, actor, quota=quota, now=start + timedelta(minutes=minutes))
        except RateLimited:
            db.session.rollback()
            raise
        db.session.commit()


def quota_row(app: Flask, actor: str) -> tuple[Any, int]:
    with app.app_context():
        row = db.session.get(AgentResetQuota, actor)
        assert row is not None
        return row.window_started_at, row.used


def test_the_quota_window_restarts_an_hour_after_it_began(app: Flask) -> None:
    start = utcnow()
    take(app, "agent:alice", quota=2, minutes=0, start=start)
    take(app, "agent:alice", quota=2, minutes=10, start=start)
    assert quota_row(app, "agent:alice") == (start, 2)

    with pytest.raises(RateLimited) as refused:
        take(app, "agent:alice", quota=2, minutes=20, start=start)
    # Free again when the window that began at `start` ends: 40 minutes on.
    assert refused.value.retry_after == 40 * 60 + 1
    with pytest.raises(RateLimited) as still:
        take(app, "agent:alice", quota=2, minutes=59, start=start)
    assert still.value.retry_after == 60 + 1
    assert quota_row(app, "agent:alice") == (start, 2)

    take(app, "agent:alice", quota=2, minutes=60, start=start)
    assert quota_row(app, "agent:alice") == (start + QUOTA_WINDOW, 1)
    take(app, "agent:alice", quota=2, minutes=61, start=start)
    with pytest.raises(RateLimited) as next_hour:
        take(app, "agent:alice", quota=2, minutes=62, start=start)
    assert next_hour.value.retry_after == 58 * 60 + 1


def test_each_actor_has_a_quota_of_its_own(app: Flask) -> None:
    start = utcnow()
    take(app, "agent:alice", quota=1, minutes=0, start=start)
    take(app, "key:support-tool", quota=1, minutes=0, start=start)
    with pytest.raises(RateLimited):
        take(app, "agent:alice", quota=1, minutes=1, start=start)
    assert sorted(quota_rows(app)) == [("agent:alice", 1), ("key:support-tool", 1)]


def test_a_rolled_back_take_leaves_the_count_as_it_was(app: Flask) -> None:
    start = utcnow()
    take(app, "agent:alice", quota=3, minutes=0, start=start)
    with app.app_context():
        take_reset_from_quota(db.session, "agent:alice", quota=3, now=start + timedelta(minutes=1))
        take_reset_from_quota(db.session, "agent:bob", quota=3, now=start + timedelta(minutes=1))
        db.session.rollback()
    assert quota_rows(app) == [("agent:alice", 1)]
