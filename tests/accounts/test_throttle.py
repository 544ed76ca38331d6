"""Sign-in throttling: after LOGIN_MAX_FAILURES wrong passwords a username answers 429, for
existing and missing usernames alike, until it is unlocked; counts are shared through Redis."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from service import create_app
from service.access.apikeys import create_api_key
from service.accounts import signin
from service.accounts.records import create_account
from service.accounts.throttle import WINDOW_MINUTES, SignInThrottle, account_throttle_key, sign_in_throttle
from service.models import Account
from service.platform.clock import utcnow
from service.platform.errors import RateLimited
from service.platform.extensions import db
from service.platform.text import normalise_username
from tests.conftest import OTHER_STRONG_PASSWORD, STRONG_PASSWORD, TEST_REDIS_URL, hashed_username, requires_redis
from tests.conftest import test_settings as settings_for
from tests.resets.test_concurrency import run_together

MAX_FAILURES = 3
WRONG = OTHER_STRONG_PASSWORD


@pytest.fixture
def app_settings() -> dict[str, Any]:
    return {"LOGIN_MAX_FAILURES": MAX_FAILURES}


def verify(client: FlaskClient, key: dict[str, str], username: str, password: str) -> TestResponse:
    return client.post("/api/v1/auth/verify", json={"username": username, "password": password}, headers=key)


def fail_times(client: FlaskClient, key: dict[str, str], username: str, times: int) -> None:
    for _ in range(times):
        assert verify(client, key, username, WRONG).status_code == 401


def assert_rate_limited(response: TestResponse) -> None:
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["code"] == "rate_limited"
    assert body["status"] == 429
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= WINDOW_MINUTES * 60 + 1


def test_failures_below_the_limit_do_not_lock(
    client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    fail_times(client, client_key, "jane", MAX_FAILURES - 1)
    assert verify(client, client_key, "jane", STRONG_PASSWORD).status_code == 200


def test_after_the_limit_even_the_right_password_gets_429(
    client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    fail_times(client, client_key, "jane", MAX_FAILURES)
    assert_rate_limited(verify(client, client_key, "jane", STRONG_PASSWORD))
    assert_rate_limited(verify(client, client_key, "jane", WRONG))


def test_a_missing_username_is_throttled_alike(client: FlaskClient, client_key: dict[str, str]) -> None:
    fail_times(client, client_key, "nobody", MAX_FAILURES)
    assert_rate_limited(verify(client, client_key, "nobody", WRONG))


def test_a_locked_existing_and_missing_username_answer_alike(
    client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    fail_times(client, client_key, "jane", MAX_FAILURES)
    fail_times(client, client_key, "nobody", MAX_FAILURES)
    existing = verify(client, client_key, "jane", WRONG)
    missing = verify(client, client_key, "nobody", WRONG)
    assert_rate_limited(existing)
    assert_rate_limited(missing)
    assert existing.get_json() == missing.get_json()


def test_other_usernames_are_unaffected(
    client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    make_account("john", email="john@example.com")
    fail_times(client, client_key, "jane", MAX_FAILURES)
    assert verify(client, client_key, "john", STRONG_PASSWORD).status_code == 200
    assert verify(client, client_key, "john", WRONG).status_code == 401


def test_failures_count_for_the_username_however_spelt(
    client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    for spelling in ("JANE", " jane ", "ｊａｎｅ")[:MAX_FAILURES]:
        assert verify(client, client_key, spelling, WRONG).status_code == 401
    assert_rate_limited(verify(client, client_key, "jane", STRONG_PASSWORD))


def test_a_locked_username_cannot_change_its_password(
    client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    fail_times(client, client_key, "jane", MAX_FAILURES)
    response = client.post(
        "/api/v1/accounts/jane/password",
        json={"current_password": STRONG_PASSWORD, "new_password": "a brand new sunny meadow"},
        headers=client_key,
    )
    assert_rate_limited(response)


def test_unlock_clears_the_failures(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    fail_times(client, client_key, "jane", MAX_FAILURES)
    assert_rate_limited(verify(client, client_key, "jane", STRONG_PASSWORD))
    with app.app_context():
        throttle = sign_in_throttle()
        assert throttle.is_locked(account_throttle_key("jane"))
        throttle.unlock(account_throttle_key("jane"))
        assert not throttle.is_locked(account_throttle_key("jane"))
    assert verify(client, client_key, "jane", STRONG_PASSWORD).status_code == 200


def test_unlock_gives_back_the_full_allowance(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    fail_times(client, client_key, "jane", MAX_FAILURES)
    with app.app_context():
        sign_in_throttle().unlock(account_throttle_key("jane"))
    fail_times(client, client_key, "jane", MAX_FAILURES - 1)
    assert verify(client, client_key, "jane", STRONG_PASSWORD).status_code == 200


def test_a_successful_sign_in_is_not_counted(
    client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    for _ in range(MAX_FAILURES + 2):
        assert verify(client, client_key, "jane", STRONG_PASSWORD).status_code == 200


# --- the throttle on its own ------------------------------------------------------------------


def test_the_throttle_locks_after_max_failures_in_memory() -> None:
    throttle = SignInThrottle("memory://", 2)
    key = "sign-in:account:jane"
    throttle.record_failure(key)
    assert not throttle.is_locked(key)
    throttle.record_failure(key)
    assert throttle.is_locked(key)
    assert 1 <= throttle.seconds_until_unlocked(key) <= WINDOW_MINUTES * 60 + 1
    assert not throttle.is_locked("sign-in:account:john")
    throttle.unlock(key)
    assert not throttle.is_locked(key)


def test_the_throttle_keeps_counting_when_its_shared_storage_is_down() -> None:
    # Nothing listens on port 1: the throttle falls back to memory instead of failing requests.
    throttle = SignInThrottle(
        "redis://127.0.0.1:1/0", 2, {"socket_connect_timeout": 0.2, "socket_timeout": 0.2}
    )
    key = f"sign-in:account:down-{uuid.uuid4().hex}"
    throttle.record_failure(key)
    throttle.record_failure(key)
    assert throttle.is_locked(key)


# --- shared through Redis ---------------------------------------------------------------------


def redis_keys(fragment: str) -> list[str]:
    connection = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        return [key.decode() for key in connection.scan_iter(match=f"*{fragment}*")]
    finally:
        connection.close()


@pytest.fixture
def redis_username() -> Iterator[str]:
    """A username no other test uses, so its counters in the shared test Redis are its own;
    every key for it (under its hash, or naming it) is deleted afterwards."""
    username = f"redis-test-{uuid.uuid4().hex}"
    yield username
    keys = redis_keys(username) + redis_keys(hashed_username(username))
    if keys:
        connection = redis.Redis.from_url(TEST_REDIS_URL)
        try:
            connection.delete(*keys)
        finally:
            connection.close()


def redis_app(database_url: str) -> Flask:
    return create_app(
        settings_for(database_url, LOGIN_MAX_FAILURES=MAX_FAILURES, RATELIMIT_STORAGE_URI=TEST_REDIS_URL)
    )


def dispose(*apps: Flask) -> None:
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.mark.redis
@requires_redis
def test_two_apps_sharing_redis_see_the_same_failures(database_url: str, redis_username: str) -> None:
    username = redis_username
    first, second = redis_app(database_url), redis_app(database_url)
    try:
        with first.app_context():
            db.create_all()
            create_account(db.session, username=username, email=None, password=STRONG_PASSWORD, actor="cli", now=utcnow())
            _key, presented = create_api_key(db.session, "shared-client", "client", now=utcnow())
            db.session.commit()
        key = {"Authorization": f"Bearer {presented}"}
        first_client, second_client = first.test_client(), second.test_client()

        fail_times(first_client, key, username, MAX_FAILURES - 1)
        assert verify(second_client, key, username, STRONG_PASSWORD).status_code == 200
        fail_times(second_client, key, username, 1)
        assert_rate_limited(verify(first_client, key, username, STRONG_PASSWORD))
        assert_rate_limited(verify(second_client, key, username, STRONG_PASSWORD))
        # The counts really are in Redis, not in either process, under the name's keyed hash.
        assert redis_keys(hashed_username(username))

        with second.app_context():
            sign_in_throttle().unlock(account_throttle_key(username))
        assert verify(first_client, key, username, STRONG_PASSWORD).status_code == 200
    finally:
        dispose(first, second)


@pytest.mark.redis
@requires_redis
def test_missing_usernames_are_counted_in_redis_too(database_url: str, redis_username: str) -> None:
    first, second = redis_app(database_url), redis_app(database_url)
    try:
        with first.app_context():
            key = account_throttle_key(redis_username)
            for _ in range(MAX_FAILURES):
                sign_in_throttle().record_failure(key)
        with second.app_context():
            assert sign_in_throttle().is_locked(key)
            assert not sign_in_throttle().is_locked(account_throttle_key(redis_username + "-other"))
        assert redis_keys(hashed_username(redis_username))
    finally:
        dispose(first, second)


# --- simultaneous guesses -----------------------------------------------------------------------

GUESSES = 40


def guess_together(app: Flask, username: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """40 wrong guesses for one username at once; how many had their password checked."""
    real_verify = signin.verify_password

    def slow_verify(password: str, password_hash: str | None) -> tuple[bool, str | None]:
        time.sleep(0.05)  # a real hash takes this long: the window a race needs
        return real_verify(password, password_hash)

    monkeypatch.setattr(signin, "verify_password", slow_verify)
    checked = []

    def guess(_index: int) -> bool:
        with app.app_context():
            try:
                signin.sign_in(db.session, username, WRONG, ip="192.0.2.1", now=utcnow())
            except RateLimited:
                return False
            finally:
                db.session.rollback()
                db.session.remove()
            checked.append(1)
            return True

    return sum(run_together(GUESSES, guess))


def test_simultaneous_guesses_check_at_most_max_failures_in_memory(
    app: Flask, make_account: Callable[..., Account], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_account("jane")
    assert guess_together(app, "jane", monkeypatch) == MAX_FAILURES


@pytest.mark.redis
@requires_redis
def test_simultaneous_guesses_check_at_most_max_failures_in_redis(
    database_url: str, redis_username: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = redis_app(database_url)
    try:
        with app.app_context():
            db.create_all()
        assert guess_together(app, redis_username, monkeypatch) == MAX_FAILURES
    finally:
        dispose(app)


def test_a_completed_reset_lifts_the_sign_in_throttle(
    app: Flask, client: FlaskClient, make_account: Any, make_key: Any
) -> None:
    from sqlalchemy import select

    from service.accounts.changes import set_password

    make_account()
    key = make_key("client")
    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        client.post("/api/v1/auth/verify", json={"username": "jane", "password": "wrong"}, headers=key)
    locked = client.post("/api/v1/auth/verify", json={"username": "jane", "password": "wrong"}, headers=key)
    assert locked.status_code == 429
    new_password = "a brand new strong passphrase"
    with app.app_context():
        account = db.session.scalar(select(Account).where(Account.username_key == "jane"))
        set_password(db.session, account, new_password, actor="self", ip=None, now=utcnow(), via="reset_link")
        db.session.commit()
    signed_in = client.post("/api/v1/auth/verify", json={"username": "jane", "password": new_password}, headers=key)
    assert signed_in.status_code == 200


# --- no typed name in the throttle's keys -----------------------------------------------------

TYPED_NAME = "Hunter2-MyPassword!"  # people type passwords and addresses into the username box


def memory_keys(throttle: SignInThrottle) -> list[str]:
    """Every key the throttle's in-process storage holds (limits' MemoryStorage)."""
    keys: list[str] = []
    for storage in (throttle._shared, throttle._local_limiter.storage):
        for table in ("storage", "expirations", "events", "locks"):
            keys.extend(str(key) for key in getattr(storage, table, {}))
    return keys


def agent_sign_in(client: FlaskClient, username: str, password: str) -> TestResponse:
    from tests.formtools import csrf_token_in

    token = csrf_token_in(client.get("/support/login").get_data(as_text=True))
    return client.post("/support/login", data={"csrf_token": token, "username": username, "password": password})


def test_no_typed_name_is_kept_in_the_throttles_memory_storage(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    fail_times(client, client_key, TYPED_NAME, MAX_FAILURES)
    fail_times(client, client_key, "jane", MAX_FAILURES)
    assert agent_sign_in(client, TYPED_NAME, WRONG).status_code == 401
    with app.app_context():
        throttle = sign_in_throttle()
        keys = memory_keys(throttle)
        assert len(keys) >= 3  # the counts are there, under other names
        assert throttle.is_locked(account_throttle_key("jane"))
    assert not [key for key in keys if TYPED_NAME.casefold() in key.casefold() or "jane" in key]
    assert_rate_limited(verify(client, client_key, TYPED_NAME.upper(), WRONG))


@pytest.mark.redis
@requires_redis
def test_no_typed_name_is_kept_in_redis(database_url: str, redis_username: str) -> None:
    app = redis_app(database_url)
    typed = redis_username.upper()  # typed as it may be; kept (if at all) in its normal form
    try:
        with app.app_context():
            db.create_all()
            _key, presented = create_api_key(db.session, "redis-client", "client", now=utcnow())
            db.session.commit()
        client = app.test_client()
        fail_times(client, {"Authorization": f"Bearer {presented}"}, typed, MAX_FAILURES)
        assert agent_sign_in(client, typed, WRONG).status_code == 401
        with app.app_context():
            assert sign_in_throttle().is_locked(account_throttle_key(normalise_username(typed)))
        assert redis_keys(hashed_username(redis_username))  # the counts are in Redis, under the name's keyed hash
        assert redis_keys(redis_username) == []
    finally:
        dispose(app)
