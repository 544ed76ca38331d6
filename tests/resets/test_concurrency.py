"""Races: many confirms of one link, and two dispatchers over one queue, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from flask import Flask
from sqlalchemy import func, select, update

from service.models import Account, AuditEvent, OutboxMessage, ResetRequest
from service.outbox.mail import RenderedEmail
from service.outbox.queue import claim_messages, queue_email
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.resets.policy import reset_policy
from service.resets.requests import request_reset, take_due_requests
from service.worker.dispatcher import Dispatcher, resolve_requests
from tests.conftest import OTHER_STRONG_PASSWORD, SmtpSink, run_dispatcher, smtp_settings

THREADS = 8
EMAIL = RenderedEmail(subject="Hello", text_body="Plain words.", html_body="<p>Plain words.</p>")
T = TypeVar("T")


@pytest.fixture
def app_settings(smtp: SmtpSink) -> dict[str, Any]:
    # Every thread comes from one address: keep the per-IP limits out of the race.
    return {**smtp_settings(smtp), "RATELIMIT_ENABLED": False}


def run_together(count: int, work: Callable[[int], T], timeout: float = 30) -> list[T]:
    """Run `work(i)` in `count` threads released at once by a barrier; re-raise any thread's error."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout)
            results[index] = work(index)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    if errors:
        raise errors[0]
    return results


def count_rows(app: Flask, model: Any, *conditions: Any) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*conditions))


def test_many_simultaneous_confirms_of_one_link_let_exactly_one_win(
    app: Flask, client_key: dict[str, str], make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    make_account()
    assert app.test_client().post("/api/v1/password-resets", json={"username": "jane"}).status_code == 202
    run_dispatcher(app)
    [mail] = smtp.to("jane@example.com")
    token = re.search(r"/reset-password/(\S+)", SmtpSink.text_of(mail)).group(1)

    clients = [app.test_client() for _ in range(THREADS)]

    def confirm(index: int) -> tuple[int, str | None]:
        response = clients[index].post(
            "/api/v1/password-resets/confirm",
            json={"token": token, "new_password": f"{OTHER_STRONG_PASSWORD} {index}"},
        )
        body = response.get_json(silent=True) or {}
        return response.status_code, body.get("code")

    answers = run_together(THREADS, confirm)

    statuses = Counter(status for status, _code in answers)
    assert statuses[204] == 1, answers
    assert not [status for status in statuses if status >= 500], answers
    losers = [(status, code) for status, code in answers if status != 204]
    assert len(losers) == THREADS - 1
    assert all(
        status in (400, 409, 410) and code in ("token_used", "token_invalid") for status, code in losers
    ), losers
    assert count_rows(app, AuditEvent, AuditEvent.type == "password.changed") == 1
    assert count_rows(app, OutboxMessage, OutboxMessage.subject == "Your password was changed") == 1

    # The winner's password is the one in force.
    winner = next(i for i, (status, _code) in enumerate(answers) if status == 204)
    verified = app.test_client().post(
        "/api/v1/auth/verify",
        json={"username": "jane", "password": f"{OTHER_STRONG_PASSWORD} {winner}"},
        headers=client_key,
    )
    assert verified.status_code == 200


def test_two_dispatchers_over_the_same_queue_deliver_each_message_once(
    app: Flask, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    usernames = [f"user{n}" for n in range(6)]
    for name in usernames:
        make_account(name, email=f"{name}@example.com")
    with app.app_context():
        for name in usernames:
            request_reset(db.session, name, policy=reset_policy(), ip=None, now=utcnow())
            db.session.commit()
    smtp.delay = 0.05  # a slow server widens the window in which both could send one message
    dispatchers = [Dispatcher(app), Dispatcher(app)]

    def work(index: int) -> int:
        done = 0
        while (handled := dispatchers[index].run_once()) > 0:
            done += handled
        return done

    run_together(2, work)

    recipients = Counter(message["To"] for message in smtp.messages)
    assert recipients == Counter({f"{name}@example.com": 1 for name in usernames})
    assert count_rows(app, OutboxMessage, OutboxMessage.status == "sent") == len(usernames)
    assert count_rows(app, OutboxMessage) == len(usernames)
    assert count_rows(app, ResetRequest, ResetRequest.status == "processed") == len(usernames)
    assert count_rows(app, AuditEvent, AuditEvent.type == "reset.requested") == len(usernames)


def test_two_dispatchers_over_already_queued_mail_send_each_message_once(
    app: Flask, make_account: Callable[..., Account], smtp: SmtpSink
) -> None:
    usernames = [f"user{n}" for n in range(8)]
    for name in usernames:
        make_account(name, email=f"{name}@example.com")
    with app.app_context():
        for name in usernames:
            request_reset(db.session, name, policy=reset_policy(), ip=None, now=utcnow())
            db.session.commit()
    # Resolve the requests with mail down, so that only delivery is left to race over.
    smtp.stop()
    Dispatcher(app).run_once()
    smtp.start()
    with app.app_context():
        db.session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))  # due again now
        db.session.commit()
    assert count_rows(app, OutboxMessage, OutboxMessage.status == "pending") == len(usernames)
    smtp.delay = 0.05
    dispatchers = [Dispatcher(app), Dispatcher(app)]

    results = run_together(2, lambda index: dispatchers[index].run_once())

    assert sum(results) == len(usernames)
    recipients = Counter(message["To"] for message in smtp.messages)
    assert recipients == Counter({f"{name}@example.com": 1 for name in usernames})
    assert count_rows(app, OutboxMessage, OutboxMessage.status == "sent") == len(usernames)


def test_two_dispatchers_resolving_the_same_accounts_in_opposite_orders_do_not_deadlock(
    app: Flask, make_account: Callable[..., Account]
) -> None:
    # Each batch locks every account it resolves (its mail cap, its pending resets) until it
    # commits. Taken in the order asked, one batch would hold A and want B while the other
    # holds B and wants A: PostgreSQL kills one, and its requests wait out a backoff.
    for name in ("anna", "bruno"):
        make_account(name, email=f"{name}@example.com")
    with app.app_context():
        for pattern in (("anna", "bruno") * 5, ("bruno", "anna") * 5):
            for name in pattern:
                request_reset(db.session, name, policy=reset_policy(), ip=None, now=utcnow())
        db.session.commit()
    policy = reset_policy_of(app)

    def work(_index: int) -> int:
        with app.app_context():
            handled = resolve_requests(db.session, policy=policy, limit=10)
            db.session.remove()
            return handled

    assert run_together(2, work) == [10, 10]
    assert count_rows(app, ResetRequest, ResetRequest.attempts > 0) == 0
    assert count_rows(app, ResetRequest, ResetRequest.status == "processed") == 20


def reset_policy_of(app: Flask) -> Any:
    with app.app_context():
        return reset_policy()


def test_taken_requests_stay_taken_only_if_their_transaction_commits(app: Flask) -> None:
    # A worker that dies between taking requests and committing their resolution must leave
    # them to the next one: the take is part of the batch's transaction, on SQLite too.
    with app.app_context():
        for number in range(3):
            request_reset(db.session, f"someone{number}", policy=reset_policy(), ip=None, now=utcnow())
        db.session.commit()
        assert len(take_due_requests(db.session, now=utcnow(), limit=3)) == 3
        db.session.rollback()
        statuses = db.session.scalars(select(ResetRequest.status)).all()
    assert statuses == ["pending"] * 3


def test_two_workers_taking_requests_at_once_take_disjoint_batches(app: Flask) -> None:
    with app.app_context():
        for number in range(6):
            request_reset(db.session, f"someone{number}", policy=reset_policy(), ip=None, now=utcnow())
        db.session.commit()
        pending = set(db.session.scalars(select(ResetRequest.id)))

    take_in_two_workers_at_once(app, lambda: [r.id for r in take_due_requests(db.session, now=utcnow(), limit=3)], pending)


def take_in_two_workers_at_once(app: Flask, take: Callable[[], list[int]], everything: set[int]) -> None:
    """Two workers take 3 rows each at once, holding them a while: disjoint halves of everything."""

    def work(_index: int) -> list[int]:
        with app.app_context():
            taken = take()
            # Still inside the transaction: on PostgreSQL the other worker skips these rows
            # (SKIP LOCKED) rather than waiting; on SQLite it waits for the write lock.
            time.sleep(0.3)
            db.session.commit()
            db.session.remove()
            return taken

    first, second = run_together(2, work)
    assert len(first) == len(second) == 3
    assert set(first).isdisjoint(second)
    assert set(first) | set(second) == everything


def test_two_workers_claiming_mail_at_once_claim_disjoint_batches(app: Flask) -> None:
    with app.app_context():
        for number in range(6):
            queue_email(db.session, f"someone{number}@example.com", EMAIL, account_id=None, now=utcnow())
        db.session.commit()
        queued = set(db.session.scalars(select(OutboxMessage.id)))

    take_in_two_workers_at_once(app, lambda: [m.id for m in claim_messages(db.session, now=utcnow(), limit=3)], queued)
