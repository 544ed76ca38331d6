"""The worker loop isolates each item: a reset request or a message whose handling raises is
recorded (attempts, last error), retried with backoff or given up on, and every other item,
and the loop itself, goes on. Inline passes first, then real `flask ... outbox run` workers."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
import time_machine
from flask import Flask
from sqlalchemy import select

from service import create_app
from service.accounts.records import create_account
from service.models import Account, AuditEvent, OutboxMessage, PasswordReset, ResetRequest
from service.outbox import delivery
from service.outbox.mail import RenderedEmail
from service.outbox.queue import queue_email
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.platform.sealing import TYPED_USERNAME, open_sealed
from service.resets import requests
from service.resets.policy import reset_policy
from service.resets.requests import REQUEST_MAX_ATTEMPTS, request_reset
from service.worker.dispatcher import resolve_requests
from tests.conftest import SmtpSink, run_dispatcher, smtp_settings
from tests.conftest import test_settings as settings_for
from tests.processes import BIN, PROJECT, flask, free_port, service_env
from tests.worker.poisoned_app import POISON, POISON_ERROR, poisoned_resolve

GOOD = ("jane", "bob", "carol")
EMAIL = RenderedEmail(subject="Hello", text_body="Plain words.", html_body="<p>Plain words.</p>")
# Flask-Mail refuses a header with a line break in it (BadHeaderError, not an SMTP error).
UNSENDABLE = "bad\n@example.com"
# The first retry comes after 15 to 30 s: well after "now", whatever the jitter.
FIRST_BACKOFF_MIN = timedelta(seconds=10)
WAIT_SECONDS = 60
STOP_GRACE_SECONDS = 15


@pytest.fixture
def app_settings(smtp: SmtpSink) -> dict[str, Any]:
    return smtp_settings(smtp)


def address(username: str) -> str:
    return f"{username}@example.com"


def one_pass(app: Flask) -> int:
    """One dispatcher pass, as the loop makes it."""
    handled: int = app.extensions["resetdesk.dispatcher"].run_once()
    return handled


def seed_requests(app: Flask, usernames: tuple[str, ...], other_mail: int) -> dict[str, int]:
    """An account and a self-service request for each username, in that order, and `other_mail`
    emails to other@example.com already queued. Returns each username's request id (the
    request keeps the typed name only sealed)."""
    with app.app_context():
        now = utcnow()
        for username in usernames:
            create_account(db.session, username=username, email=address(username), password=None, actor="cli", now=now)
        for username in usernames:
            request_reset(db.session, username, policy=reset_policy(), ip=None, now=now)
        for _ in range(other_mail):
            queue_email(db.session, "other@example.com", EMAIL, account_id=None, now=now)
        db.session.commit()
        request_ids = db.session.scalars(select(ResetRequest.id).order_by(ResetRequest.id)).all()
    assert len(request_ids) == len(usernames)
    return dict(zip(usernames, request_ids, strict=True))


def seed_messages(app: Flask, recipients: tuple[str, ...]) -> None:
    """An email to each recipient, each of an account of its own (mail of no account keeps no
    address once sent, and these tests find the messages by it)."""
    with app.app_context():
        for number, recipient in enumerate(recipients):
            owner = Account(username=f"owner{number}", username_key=f"owner{number}", email=recipient)
            db.session.add(owner)
            db.session.flush()
            queue_email(db.session, recipient, EMAIL, account_id=owner.id, now=utcnow())
        db.session.commit()


def request_row(app: Flask, request_id: int) -> ResetRequest:
    with app.app_context():
        row = db.session.get(ResetRequest, request_id)
        assert row is not None
        db.session.expunge(row)
        return row


def typed_name_in(app: Flask, request_id: int) -> str:
    """The name a request still holds, sealed, for its next attempt ("" once resolved)."""
    sealed = request_row(app, request_id).username_sealed
    if not sealed:
        return ""
    with app.app_context():
        return open_sealed(TYPED_USERNAME, sealed)


def message_row(app: Flask, recipient: str) -> OutboxMessage:
    with app.app_context():
        row = db.session.scalar(select(OutboxMessage).where(OutboxMessage.recipient == recipient))
        db.session.expunge(row)
        return row


def nothing_left_of_the_poison(app: Flask) -> None:
    """The poisoned request's own work (a reset, its mail, its event) was rolled back."""
    with app.app_context():
        poison = db.session.scalar(select(Account).where(Account.username == POISON))
        assert db.session.scalars(select(PasswordReset).where(PasswordReset.account_id == poison.id)).all() == []
        assert db.session.scalars(select(OutboxMessage).where(OutboxMessage.recipient == address(POISON))).all() == []
        good = db.session.scalars(select(Account.id).where(Account.username.in_(GOOD))).all()
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.type == "reset.requested")).all()
        assert sorted(event.account_id for event in events) == sorted(good)


# --- a poisoned reset request, inline ---------------------------------------------------------


def test_a_poisoned_request_fails_alone_and_the_pass_goes_on(
    app: Flask, smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(requests, "resolve_reset_request", poisoned_resolve)
    ids = seed_requests(app, (POISON, *GOOD), other_mail=2)
    started = utcnow()

    one_pass(app)

    for username in GOOD:
        [mail] = smtp.to(address(username))
        assert mail["Subject"] == "Reset your password"
        assert request_row(app, ids[username]).status == "processed"
        assert typed_name_in(app, ids[username]) == ""
    assert len(smtp.to("other@example.com")) == 2
    assert smtp.to(address(POISON)) == []
    assert len(smtp.messages) == len(GOOD) + 2

    poisoned = request_row(app, ids[POISON])
    assert poisoned.status == "pending"
    assert poisoned.attempts == 1
    assert typed_name_in(app, ids[POISON]) == POISON  # the rollback kept it for the retry
    assert poisoned.last_error == f"RuntimeError: {POISON_ERROR}"
    assert poisoned.next_attempt_at is not None and poisoned.next_attempt_at > started + FIRST_BACKOFF_MIN
    nothing_left_of_the_poison(app)
    assert run_dispatcher(app) == 0  # nothing is due until its backoff is over


def test_a_batch_of_requests_commits_once_and_rolls_the_poison_back_to_its_savepoint(
    app: Flask, smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(requests, "resolve_reset_request", poisoned_resolve)
    ids = seed_requests(app, (GOOD[0], POISON, *GOOD[1:]), other_mail=0)
    commits: list[int] = []
    savepoints = {"opened": 0, "rolled back": 0}
    with app.app_context():
        engine = db.engine
    listeners: list[tuple[str, Callable[..., None]]] = [
        ("commit", lambda _connection: commits.append(1)),
        ("savepoint", lambda *_args: savepoints.__setitem__("opened", savepoints["opened"] + 1)),
        ("rollback_savepoint", lambda *_args: savepoints.__setitem__("rolled back", savepoints["rolled back"] + 1)),
    ]
    for name, listener in listeners:
        sqlalchemy.event.listen(engine, name, listener)
    try:
        with app.app_context():
            assert resolve_requests(db.session, policy=reset_policy()) == len(GOOD) + 1
            db.session.remove()
    finally:
        for name, listener in listeners:
            sqlalchemy.event.remove(engine, name, listener)

    assert len(commits) == 1
    assert savepoints == {"opened": len(GOOD) + 1, "rolled back": 1}
    for username in GOOD:
        assert request_row(app, ids[username]).status == "processed"
    poisoned = request_row(app, ids[POISON])
    assert (poisoned.status, poisoned.attempts) == ("pending", 1)
    assert typed_name_in(app, ids[POISON]) == POISON
    nothing_left_of_the_poison(app)
    run_dispatcher(app)
    assert sorted(message["To"] for message in smtp.messages) == sorted(map(address, GOOD))


def test_a_request_that_keeps_failing_is_given_up_after_its_last_attempt(
    app: Flask, smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(requests, "resolve_reset_request", poisoned_resolve)
    ids = seed_requests(app, (POISON, *GOOD), other_mail=0)
    run_dispatcher(app)
    assert request_row(app, ids[POISON]).attempts == 1

    for attempt in range(2, REQUEST_MAX_ATTEMPTS + 1):
        due = request_row(app, ids[POISON]).next_attempt_at
        assert due is not None
        with time_machine.travel(due + timedelta(seconds=1), tick=False):
            assert one_pass(app) == 1
        poisoned = request_row(app, ids[POISON])
        assert poisoned.attempts == attempt
        assert poisoned.last_error == f"RuntimeError: {POISON_ERROR}"

    given_up = request_row(app, ids[POISON])
    assert given_up.status == "failed"
    assert given_up.processed_at is not None
    with time_machine.travel(utcnow() + timedelta(days=2), tick=False):
        assert run_dispatcher(app) == 0
    assert request_row(app, ids[POISON]).attempts == REQUEST_MAX_ATTEMPTS
    assert smtp.to(address(POISON)) == []
    assert len(smtp.messages) == len(GOOD)
    nothing_left_of_the_poison(app)


# --- a poisoned message, inline ---------------------------------------------------------------


def test_a_message_whose_sending_raises_anything_fails_alone_and_is_retried(
    app: Flask, smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    send = delivery.send

    def poisoned_send(message: OutboxMessage, *args: Any, **kwargs: Any) -> None:
        if message.recipient == address(POISON):
            raise ValueError("a poisoned message")
        send(message, *args, **kwargs)

    monkeypatch.setattr(delivery, "send", poisoned_send)
    seed_messages(app, (address(POISON), *map(address, GOOD)))
    started = utcnow()

    one_pass(app)

    assert sorted(message["To"] for message in smtp.messages) == sorted(map(address, GOOD))
    for username in GOOD:
        assert message_row(app, address(username)).status == "sent"
    poisoned = message_row(app, address(POISON))
    assert (poisoned.status, poisoned.attempts) == ("pending", 1)
    assert poisoned.last_error == "ValueError: a poisoned message"
    assert poisoned.next_attempt_at > started + FIRST_BACKOFF_MIN
    assert run_dispatcher(app) == 0

    monkeypatch.undo()  # whatever it was, it is gone by the retry
    with time_machine.travel(poisoned.next_attempt_at + timedelta(seconds=1), tick=False):
        assert run_dispatcher(app) == 1
    assert len(smtp.to(address(POISON))) == 1
    delivered = message_row(app, address(POISON))
    assert (delivered.status, delivered.attempts) == ("sent", 2)


def test_an_address_the_mail_library_refuses_fails_alone(app: Flask, smtp: SmtpSink) -> None:
    seed_messages(app, (UNSENDABLE, *map(address, GOOD)))
    started = utcnow()

    one_pass(app)

    assert sorted(message["To"] for message in smtp.messages) == sorted(map(address, GOOD))
    refused = message_row(app, UNSENDABLE)
    assert (refused.status, refused.attempts) == ("pending", 1)
    assert refused.last_error is not None and refused.last_error.startswith("BadHeaderError")
    assert refused.next_attempt_at > started + FIRST_BACKOFF_MIN


# --- real `outbox run` workers ----------------------------------------------------------------


def worker_env(tmp_path: Path, database_url: str, smtp: SmtpSink) -> dict[str, str]:
    """What a deployment gives an outbox worker: its database and mail server, dispatch external."""
    env = service_env(tmp_path, free_port(), smtp)
    env.update(DATABASE_URL=database_url, OUTBOX_DISPATCH="external")
    return env


@contextmanager
def seeding_app(database_url: str, secret_key: str) -> Iterator[Flask]:
    """An app on the workers' database, with their key (what it queues is sealed with it)."""
    app = create_app(settings_for(database_url, SECRET_KEY=secret_key))
    try:
        yield app
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@contextmanager
def outbox_worker(env: dict[str, str], app_target: str, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """One `flask --app <app_target> outbox run` process; killed if the test leaves it running."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "flask"), "--app", app_target, "outbox", "run"],
            cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def wait_for(what: str, done: Callable[[], bool], process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Wait (bounded) until `done`, the worker staying alive all along."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not done():
        assert process.poll() is None, f"the worker died:\n{log_path.read_text()}"
        assert time.monotonic() < deadline, f"after {WAIT_SECONDS} s, still not {what}:\n{log_path.read_text()}"
        time.sleep(0.1)


def stop_cleanly(process: subprocess.Popen[bytes], log_path: Path) -> None:
    """The worker is still running after the poison, and stops as asked."""
    time.sleep(1)  # a few more passes over the queue, poison included
    assert process.poll() is None, f"the worker died:\n{log_path.read_text()}"
    process.send_signal(signal.SIGTERM)
    returncode = process.wait(STOP_GRACE_SECONDS)
    output = log_path.read_text()
    assert returncode == 0, output
    assert "Outbox worker stopped." in output, output


def column(engine: sqlalchemy.Engine, statement: Any) -> Any:
    with engine.connect() as connection:
        return connection.execute(statement).one_or_none()


@pytest.mark.slow
def test_an_outbox_worker_outlives_a_message_it_cannot_send(
    tmp_path: Path, database_url: str, smtp: SmtpSink
) -> None:
    env = worker_env(tmp_path, database_url, smtp)
    flask(env, "db", "upgrade")
    with seeding_app(database_url, env["SECRET_KEY"]) as app:
        seed_messages(app, (UNSENDABLE, *map(address, GOOD)))
    engine = sqlalchemy.create_engine(database_url)
    unsendable = select(OutboxMessage.status, OutboxMessage.attempts, OutboxMessage.last_error).where(
        OutboxMessage.recipient == UNSENDABLE
    )
    log_path = tmp_path / "worker.log"
    try:
        with outbox_worker(env, "wsgi", log_path) as worker:
            wait_for("all sent", lambda: len(smtp.messages) == len(GOOD), worker, log_path)
            wait_for("the refusal recorded", lambda: column(engine, unsendable)[1] >= 1, worker, log_path)
            stop_cleanly(worker, log_path)
        assert sorted(message["To"] for message in smtp.messages) == sorted(map(address, GOOD))
        status, attempts, last_error = column(engine, unsendable)
        assert (status, attempts) == ("pending", 1)
        assert last_error.startswith("BadHeaderError")
    finally:
        engine.dispose()


@pytest.mark.slow
def test_an_outbox_worker_outlives_a_reset_request_it_cannot_resolve(
    tmp_path: Path, database_url: str, smtp: SmtpSink
) -> None:
    env = worker_env(tmp_path, database_url, smtp)
    flask(env, "db", "upgrade")
    with seeding_app(database_url, env["SECRET_KEY"]) as app:
        ids = seed_requests(app, (POISON, *GOOD), other_mail=1)
    engine = sqlalchemy.create_engine(database_url)
    poisoned = select(ResetRequest.status, ResetRequest.attempts, ResetRequest.last_error).where(
        ResetRequest.id == ids[POISON]
    )
    log_path = tmp_path / "worker.log"
    try:
        with outbox_worker(env, "tests.worker.poisoned_app:create_poisoned_app()", log_path) as worker:
            wait_for("all sent", lambda: len(smtp.messages) == len(GOOD) + 1, worker, log_path)
            wait_for("the failure recorded", lambda: column(engine, poisoned)[1] >= 1, worker, log_path)
            stop_cleanly(worker, log_path)
        assert sorted(message["To"] for message in smtp.messages) == sorted([*map(address, GOOD), "other@example.com"])
        assert column(engine, poisoned) == ("pending", 1, f"RuntimeError: {POISON_ERROR}")
        with engine.connect() as connection:
            statuses = dict(connection.execute(select(ResetRequest.id, ResetRequest.status)).all())
        assert [statuses[ids[username]] for username in GOOD] == ["processed"] * len(GOOD)
    finally:
        engine.dispose()
