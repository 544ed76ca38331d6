"""What one sign-in costs: the same statements, rows, objects and throttle calls whatever the
name, so timing cannot tell an existing username from a missing one; and a right password
costs no more than it needs (no ORM object, two statements, two trips to Redis)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from passlib.context import CryptContext
from sqlalchemy import event, select

from service import create_app
from service.access.apikeys import create_api_key
from service.accounts.passwords import crypt_context, verify_password
from service.accounts.records import create_account
from service.accounts.throttle import sign_in_throttle
from service.models import Account, ApiKey, OutboxKind, OutboxMessage, PasswordReset
from service.platform.clock import utcnow
from service.platform.extensions import db
from tests.conftest import OTHER_STRONG_PASSWORD, STRONG_PASSWORD, TEST_REDIS_URL, hashed_username, requires_redis
from tests.conftest import test_settings as settings_for

MAX_FAILURES = 3


@pytest.fixture
def app_settings() -> dict[str, Any]:
    return {"LOGIN_MAX_FAILURES": MAX_FAILURES}


@contextmanager
def recorded_statements(app: Flask) -> Iterator[list[str]]:
    """Every SQL statement the app's engine runs inside the block."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(" ".join(statement.split()))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


@contextmanager
def loaded_objects() -> Iterator[list[str]]:
    """The ORM objects built from rows inside the block (the work an existing name would add)."""
    loaded: list[str] = []

    def record(target: Any, _context: Any) -> None:
        loaded.append(type(target).__name__)

    for model in (Account, PasswordReset, ApiKey):
        event.listen(model, "load", record)
    try:
        yield loaded
    finally:
        for model in (Account, PasswordReset, ApiKey):
            event.remove(model, "load", record)


def verify(client: FlaskClient, key: dict[str, str], username: str, password: str) -> int:
    response = client.post("/api/v1/auth/verify", json={"username": username, "password": password}, headers=key)
    return response.status_code


def test_a_failed_sign_in_runs_the_same_statements_and_builds_no_object_for_any_name(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    verify(client, client_key, "warm_up_name", OTHER_STRONG_PASSWORD)
    seen = {}
    for name in ("jane", "nobody_here"):
        with recorded_statements(app) as statements, loaded_objects() as loaded:
            assert verify(client, client_key, name, OTHER_STRONG_PASSWORD) == 401
        seen[name] = (statements, loaded)
    assert seen["jane"] == seen["nobody_here"], seen
    assert seen["jane"][1] == []


def test_a_right_password_costs_the_key_and_the_account_look_ups_and_nothing_else(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    make_account("jane")
    assert verify(client, client_key, "jane", STRONG_PASSWORD) == 200  # the key's last use is noted once
    with recorded_statements(app) as statements, loaded_objects() as loaded:
        response = client.post(
            "/api/v1/auth/verify", json={"username": "jane", "password": STRONG_PASSWORD}, headers=client_key
        )
    assert response.status_code == 200
    assert response.get_json()["username"] == "jane"
    selects = [statement for statement in statements if statement.startswith("SELECT")]
    assert len(selects) == 2, statements  # the API key, the account; nothing read again after the commit
    assert "FROM api_keys" in selects[0] and "accounts.username_key" in selects[1]
    assert loaded == []


def test_no_hash_goes_through_the_same_passlib_calls_as_a_wrong_password(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    with app.app_context():
        stored = crypt_context().hash(STRONG_PASSWORD)
        crypt_context().verify(STRONG_PASSWORD, stored)  # warm: made once, not per call
        verify_password(OTHER_STRONG_PASSWORD, None)
        calls: list[str] = []
        for method in ("identify", "verify", "verify_and_update", "dummy_verify", "needs_update"):
            real = getattr(CryptContext, method)

            def traced(self: CryptContext, *args: Any, _real: Any = real, _name: str = method, **kwargs: Any) -> Any:
                calls.append(_name)
                return _real(self, *args, **kwargs)

            monkeypatch.setattr(CryptContext, method, traced)
        traces = {}
        for label, stored_hash in (("wrong password", stored), ("no account", None), ("damaged", "$argon2id$cut")):
            calls.clear()
            assert verify_password(OTHER_STRONG_PASSWORD, stored_hash) == (False, None)
            traces[label] = list(calls)
    assert traces["wrong password"] == traces["no account"], traces
    assert traces["no account"] == ["identify", "identify", "verify_and_update"]


@contextmanager
def recorded_throttle_calls(app: Flask) -> Iterator[list[str]]:
    """The throttle's calls to its storage (here the memory one), by method name."""
    calls: list[str] = []
    with app.app_context():
        storage = sign_in_throttle()._shared
    originals = {}
    for name in ("incr", "get", "get_moving_window", "acquire_entry", "clear"):
        real = getattr(storage, name)
        originals[name] = real

        def traced(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _real(*args, **kwargs)

        setattr(storage, name, traced)
    try:
        yield calls
    finally:
        for name in originals:
            delattr(storage, name)


def test_the_attempt_that_locks_a_name_makes_the_same_throttle_calls_for_every_name(
    app: Flask, client: FlaskClient, client_key: dict[str, str], make_account: Callable[..., Account]
) -> None:
    make_account("jane", email="jane@example.com")
    seen = {}
    for name in ("jane", "nobody_here"):
        for _ in range(MAX_FAILURES - 1):
            assert verify(client, client_key, name, OTHER_STRONG_PASSWORD) == 401
        with recorded_throttle_calls(app) as calls:
            assert verify(client, client_key, name, OTHER_STRONG_PASSWORD) == 401  # this one locks
        seen[name] = calls
    assert seen["jane"] == seen["nobody_here"], seen


def test_a_subscribed_throttle_event_still_names_its_account_in_a_webhook(
    database_url: str, tmp_path: Any
) -> None:
    # The sign-in hands the audit row an account id, not an ORM object: the webhook, which
    # names the account, must still go out for it (and, as ever, not for a missing name).
    app = create_app(settings_for(
        database_url, LOGIN_MAX_FAILURES=MAX_FAILURES, WEBHOOK_URLS=("http://127.0.0.1:9/hooks",),
        WEBHOOK_SECRET="whsec_c2lnbi1pbi13b3JrLXdlYmhvb2stdGVzdC1rZXktMzI=", WEBHOOK_EVENTS=("sign_in.throttled",),
    ))
    try:
        with app.app_context():
            db.create_all()
            create_account(db.session, username="jane", email="jane@example.com", password=STRONG_PASSWORD,
                           actor="cli", now=utcnow())
            _key, presented = create_api_key(db.session, "hook-client", "client", now=utcnow())
            db.session.commit()
        client, key = app.test_client(), {"Authorization": f"Bearer {presented}"}
        for name in ("jane", "nobody_here"):
            for _ in range(MAX_FAILURES):
                assert verify(client, key, name, OTHER_STRONG_PASSWORD) == 401
        with app.app_context():
            hooks = db.session.scalars(select(OutboxMessage).where(OutboxMessage.kind == OutboxKind.WEBHOOK)).all()
            jane = db.session.scalar(select(Account).where(Account.username_key == "jane"))
            assert jane is not None
            assert [(hook.subject, hook.account_id) for hook in hooks] == [("sign_in.throttled", jane.id)]
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


# --- on Redis: round trips --------------------------------------------------------------------


@pytest.fixture
def redis_names() -> Iterator[list[str]]:
    names = [f"work-test-{uuid.uuid4().hex}" for _ in range(3)]
    yield names
    connection = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        for name in names:
            keys = list(connection.scan_iter(match=f"*{hashed_username(name)}*"))
            if keys:
                connection.delete(*keys)
    finally:
        connection.close()


@contextmanager
def recorded_redis_commands(app: Flask) -> Iterator[list[tuple[str, ...]]]:
    """The commands the sign-in throttle sends to Redis (a script by its SHA, not its keys)."""
    commands: list[tuple[str, ...]] = []
    with app.app_context():
        client = sign_in_throttle()._shared.get_connection()
    real = client.execute_command

    def traced(*args: Any, **kwargs: Any) -> Any:
        name = str(args[0]).upper()
        commands.append((name, str(args[1])) if name in ("EVALSHA", "EVAL") else (name,))
        return real(*args, **kwargs)

    client.execute_command = traced  # type: ignore[method-assign]
    try:
        yield commands
    finally:
        del client.execute_command


@pytest.mark.redis
@requires_redis
def test_every_sign_in_is_the_same_two_trips_to_redis(database_url: str, redis_names: list[str]) -> None:
    existing, missing, warm_up = redis_names
    app = create_app(settings_for(database_url, LOGIN_MAX_FAILURES=MAX_FAILURES, RATELIMIT_STORAGE_URI=TEST_REDIS_URL))
    try:
        with app.app_context():
            db.create_all()
            create_account(db.session, username=existing, email="x@example.com", password=STRONG_PASSWORD,
                           actor="cli", now=utcnow())
            _key, presented = create_api_key(db.session, "work-client", "client", now=utcnow())
            db.session.commit()
        client, key = app.test_client(), {"Authorization": f"Bearer {presented}"}
        assert verify(client, key, existing, STRONG_PASSWORD) == 200  # scripts loaded, key noted
        seen = {}
        for label, name, password, status in (
            ("right", existing, STRONG_PASSWORD, 200),
            ("wrong", existing, OTHER_STRONG_PASSWORD, 401),
            ("missing", missing, OTHER_STRONG_PASSWORD, 401),
        ):
            with recorded_redis_commands(app) as commands:
                assert verify(client, key, name, password) == status
            seen[label] = commands
        assert seen["wrong"] == seen["missing"], seen
        assert len(seen["right"]) == 2 and seen["right"] == seen["wrong"], seen
        # The attempt that locks: the same trips for an account with an email as for no account.
        # A name locked first loads every script that attempt runs: the first to need one on a
        # fresh Redis would otherwise be the only one to send SCRIPT LOAD.
        for _ in range(MAX_FAILURES):
            verify(client, key, warm_up, OTHER_STRONG_PASSWORD)
        for name in (existing, missing):
            for _ in range(MAX_FAILURES - 2):
                assert verify(client, key, name, OTHER_STRONG_PASSWORD) == 401
        with recorded_redis_commands(app) as locking_existing:
            assert verify(client, key, existing, OTHER_STRONG_PASSWORD) == 401
        with recorded_redis_commands(app) as locking_missing:
            assert verify(client, key, missing, OTHER_STRONG_PASSWORD) == 401
        assert locking_existing == locking_missing, (locking_existing, locking_missing)
        with app.app_context():
            assert sign_in_throttle().is_locked(f"sign-in:account:{hashed_username(existing)}")
            assert sign_in_throttle().is_locked(f"sign-in:account:{hashed_username(missing)}")
        assert verify(client, key, existing, STRONG_PASSWORD) == 429
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
