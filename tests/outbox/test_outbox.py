"""The outbox: mail waits out an SMTP outage with backoff, is delivered once, and fails loudly."""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy
import time_machine
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import select

from service import create_app
from service.models import Account, AuditEvent, OutboxMessage
from service.outbox.delivery import FAILED_BODY, SentGroup, deliver
from service.outbox.mail import Courier, RenderedEmail
from service.outbox.queue import (
    CLAIM_LEASE,
    MAX_ATTEMPTS,
    any_due,
    claim_due,
    claim_messages,
    open_body,
    queue_email,
    release,
    renew_claim,
)
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.worker.dispatcher import deliver_due
from tests.conftest import SmtpSink, run_dispatcher, smtp_settings
from tests.conftest import test_settings as settings_for

EMAIL = RenderedEmail(subject="Hello", text_body="Plain words.", html_body="<p>Plain words.</p>")


@pytest.fixture
def app_settings(request: pytest.FixtureRequest, smtp: SmtpSink) -> dict[str, Any]:
    """Mail to the sink; `silent` sends it to a server that never answers, with MAIL_TIMEOUT=1."""
    if getattr(request, "param", None) == "silent":
        return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": request.getfixturevalue("silent_server"), "MAIL_TIMEOUT": 1}
    return smtp_settings(smtp)


def queue(app: Flask, recipient: str = "jane@example.com", count: int = 1) -> list[int]:
    """Queue `count` emails to an account's address, as a change would; returns their ids.

    Mail of an account, as all but username reminders are: a mail of no account keeps no address
    once sent (test_reminders.py).
    """
    with app.app_context():
        account_id = db.session.scalar(select(Account.id).where(Account.email == recipient))
        if account_id is None:
            owner = Account(username=f"owner{secrets.token_hex(4)}", email=recipient)
            owner.username_key = owner.username
            db.session.add(owner)
            db.session.flush()
            account_id = owner.id
        ids = [queue_email(db.session, recipient, EMAIL, account_id=account_id, now=utcnow()) for _ in range(count)]
        db.session.commit()
        return ids


def message(app: Flask, message_id: int) -> OutboxMessage:
    with app.app_context():
        found = db.session.get(OutboxMessage, message_id)
        db.session.expunge(found)
        return found


# --- SMTP down, then up -----------------------------------------------------------------------


def test_mail_waits_out_an_smtp_outage_and_then_arrives_exactly_once(app: Flask, smtp: SmtpSink) -> None:
    [message_id] = queue(app)
    smtp.stop()
    run_dispatcher(app)

    waiting = message(app, message_id)
    assert waiting.status == "pending"
    assert waiting.attempts == 1
    assert waiting.last_error
    assert waiting.next_attempt_at > utcnow() + timedelta(seconds=5)  # backoff, not a busy retry

    smtp.start()
    run_dispatcher(app)  # back up, but the retry is not due yet
    assert smtp.messages == []
    assert message(app, message_id).status == "pending"

    with time_machine.travel(waiting.next_attempt_at + timedelta(seconds=1), tick=False):
        run_dispatcher(app)
        run_dispatcher(app)
    assert len(smtp.to("jane@example.com")) == 1
    assert len(smtp.messages) == 1
    delivered = message(app, message_id)
    assert delivered.status == "sent"
    assert delivered.attempts == 2
    assert delivered.sent_at is not None


def test_backoff_grows_with_each_failed_attempt(app: Flask, smtp: SmtpSink) -> None:
    [message_id] = queue(app)
    smtp.stop()
    now = utcnow()
    waits = []
    with app.app_context():
        for _ in range(4):
            deliver_due(db.session, now=now, limit=10)
            retry_at = db.session.get(OutboxMessage, message_id).next_attempt_at
            waits.append(retry_at - now)
            now = retry_at + timedelta(seconds=1)
            db.session.remove()
    # Each wait is drawn from [half, all] of a ceiling that doubles: the third beats the first.
    assert waits[0] >= timedelta(seconds=15)
    assert waits[2] > waits[0] and waits[3] > waits[1]


def test_after_max_attempts_the_email_fails_is_listed_and_keeps_no_body_to_requeue(
    app: Flask, runner: FlaskCliRunner, smtp: SmtpSink
) -> None:
    [message_id] = queue(app)
    smtp.stop()
    now = utcnow()
    with app.app_context():
        for attempt in range(1, MAX_ATTEMPTS + 1):
            report = deliver_due(db.session, now=now, limit=10)
            assert report.handled == 1, attempt
            now = db.session.get(OutboxMessage, message_id).next_attempt_at + timedelta(seconds=1)
            db.session.remove()
        assert deliver_due(db.session, now=now + timedelta(days=1), limit=10).handled == 0
        db.session.remove()

    failed = message(app, message_id)
    assert failed.status == "failed"
    assert failed.attempts == MAX_ATTEMPTS
    with app.app_context():
        assert db.session.scalars(select(AuditEvent.type).where(AuditEvent.type == "mail.failed")).all() == [
            "mail.failed"
        ]

    status = runner.invoke(args=["outbox", "status"])
    assert status.exit_code == 0, status.output
    assert "failed\t1" in status.output
    assert f"failed #{message_id} to jane@example.com after {MAX_ATTEMPTS} attempts" in status.output

    assert (failed.text_body, failed.html_body) == (FAILED_BODY, None)

    retried = runner.invoke(args=["outbox", "retry-failed"])
    assert retried.exit_code == 0, retried.output
    assert "Requeued 0 message(s)." in retried.output
    smtp.start()
    run_dispatcher(app)
    assert smtp.to("jane@example.com") == []
    assert message(app, message_id).status == "failed"


# --- a silent server --------------------------------------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts connections and never says a word; yields the port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    accepted: list[socket.socket] = []
    stopping = threading.Event()

    def accept() -> None:
        while not stopping.is_set():
            try:
                connection, _address = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stopping.set()
    thread.join(5)
    for connection in accepted:
        connection.close()
    listener.close()


@pytest.mark.parametrize("app_settings", ["silent"], indirect=True)
def test_a_silent_smtp_server_fails_the_delivery_within_mail_timeout(app: Flask) -> None:
    [message_id] = queue(app)
    outcome: dict[str, Any] = {}

    def deliver() -> None:
        started = time.monotonic()
        with app.app_context():
            outcome["report"] = deliver_due(db.session, now=utcnow(), limit=10)
            db.session.remove()
        outcome["seconds"] = time.monotonic() - started

    worker = threading.Thread(target=deliver, daemon=True)
    worker.start()
    worker.join(15)
    assert not worker.is_alive(), "delivery hung on a silent server"
    assert outcome["report"].retried == 1
    assert outcome["seconds"] < 5
    waiting = message(app, message_id)
    assert waiting.status == "pending"
    assert waiting.attempts == 1
    assert "timed out" in waiting.last_error.lower() or "timeout" in waiting.last_error.lower()


# --- no SMTP server at all --------------------------------------------------------------------


@pytest.mark.parametrize("app_settings", [{"MAIL_SERVER": ""}], ids=["no-mail-server"])
def test_without_a_mail_server_mail_is_written_to_the_log_and_marked_sent(
    app: Flask, smtp: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    [message_id] = queue(app, recipient="log@example.com")
    with caplog.at_level(logging.INFO, logger="service.mail"):
        run_dispatcher(app)
    logged = "\n".join(record.getMessage() for record in caplog.records if record.name == "service.mail")
    assert "log@example.com" not in logged  # no address in a log line
    assert "Hello" in logged
    assert "Plain words." in logged
    assert message(app, message_id).status == "sent"
    assert smtp.messages == []


# --- claiming ---------------------------------------------------------------------------------


def test_a_claimed_message_is_not_claimed_again(app: Flask) -> None:
    ids = queue(app, count=3)
    with app.app_context():
        assert claim_due(db.session, now=utcnow(), limit=10) == ids
        assert claim_due(db.session, now=utcnow(), limit=10) == []
        statuses = set(db.session.scalars(select(OutboxMessage.status)))
    assert statuses == {"sending"}


def test_claim_due_respects_its_limit_and_leaves_the_rest(app: Flask) -> None:
    ids = queue(app, count=5)
    with app.app_context():
        first = claim_due(db.session, now=utcnow(), limit=2)
        second = claim_due(db.session, now=utcnow(), limit=10)
    assert first == ids[:2]
    assert second == ids[2:]


def test_simultaneous_claimers_never_share_a_message(app: Flask) -> None:
    ids = queue(app, count=40)
    barrier = threading.Barrier(4)
    claims: list[list[int]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def claim(index: int) -> None:
        try:
            with app.app_context():
                barrier.wait(10)
                while taken := claim_due(db.session, now=utcnow(), limit=3):
                    db.session.commit()
                    claims[index].extend(taken)
                db.session.remove()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    every = [message_id for claimed in claims for message_id in claimed]
    assert sorted(every) == ids  # each one claimed, none twice


def test_a_message_whose_claimer_died_is_due_again_after_the_lease(app: Flask) -> None:
    [message_id] = queue(app)
    with app.app_context():
        assert claim_due(db.session, now=utcnow(), limit=10) == [message_id]
        assert claim_due(db.session, now=utcnow() + timedelta(minutes=1), limit=10) == []
        assert claim_due(db.session, now=utcnow() + timedelta(minutes=10), limit=10) == [message_id]


# --- the worker command -----------------------------------------------------------------------


def test_outbox_run_once_delivers_what_is_due(app: Flask, runner: FlaskCliRunner, smtp: SmtpSink) -> None:
    queue(app, recipient="someone@example.com", count=2)
    result = runner.invoke(args=["outbox", "run", "--once"])
    assert result.exit_code == 0, result.output
    assert "Handled 2 item(s)." in result.output
    assert len(smtp.to("someone@example.com")) == 2
    with app.app_context():
        assert set(db.session.scalars(select(OutboxMessage.status))) == {"sent"}
    received = smtp.to("someone@example.com")[0]
    assert received["Subject"] == "Hello"
    assert SmtpSink.text_of(received).strip() == "Plain words."


def test_a_delivered_email_keeps_no_body_and_a_waiting_one_keeps_it_sealed_for_retry(app: Flask, smtp: SmtpSink) -> None:
    [sent_id] = queue(app, "jane@example.com")
    run_dispatcher(app)
    delivered = message(app, sent_id)
    assert delivered.status == "sent"
    assert "Plain words" not in delivered.text_body and delivered.html_body is None

    smtp.stop()
    [waiting_id] = queue(app, "ann@example.com")
    run_dispatcher(app)
    waiting = message(app, waiting_id)
    assert waiting.status == "pending"
    assert "Plain words" not in waiting.text_body  # sealed while it waits for the next attempt
    with app.app_context():
        assert open_body(waiting.text_body) == "Plain words."


def test_a_worker_whose_claim_was_taken_over_after_the_lease_does_not_send(
    app: Flask, smtp: SmtpSink
) -> None:
    [message_id] = queue(app, "jane@example.com")
    first_claim = utcnow()
    with app.app_context():
        assert claim_due(db.session, now=first_claim, limit=10) == [message_id]
        db.session.commit()
    # The first worker is still busy with earlier messages when the lease runs out.
    second_claim = first_claim + CLAIM_LEASE + timedelta(seconds=1)
    with app.app_context():
        [taken_over] = claim_messages(db.session, now=second_claim, limit=10)
        assert taken_over.id == message_id
        db.session.commit()
        assert renew_claim(db.session, message_id, first_claim, now=second_claim) is False
        assert renew_claim(db.session, message_id, second_claim, now=second_claim) is True
        courier = Courier()
        assert deliver(db.session, taken_over, courier=courier, now=second_claim) == "sent"
        courier.close()
        db.session.commit()
    assert len(smtp.to("jane@example.com")) == 1


def test_a_pass_sends_its_whole_batch_over_one_smtp_connection(
    app: Flask, smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.outbox.mail import TimedConnection

    queue(app, recipient="many@example.com", count=5)
    opened: list[int] = []
    configure_host = TimedConnection.configure_host

    def counting_configure_host(self: TimedConnection) -> Any:
        opened.append(1)
        return configure_host(self)

    monkeypatch.setattr(TimedConnection, "configure_host", counting_configure_host)
    run_dispatcher(app)
    assert len(smtp.to("many@example.com")) == 5
    assert len(opened) == 1


def test_a_server_that_hung_up_between_messages_is_reconnected_once(app: Flask, smtp: SmtpSink) -> None:
    from service.outbox.mail import Courier

    with app.app_context():
        courier = Courier()
        courier.send("first@example.com", "One", "text", None)
        assert courier._connection is not None and courier._connection.host is not None
        courier._connection.host.close()  # as if the server had dropped an idle connection
        courier.send("second@example.com", "Two", "text", None)
        courier.close()
    assert [m["To"] for m in smtp.messages] == ["first@example.com", "second@example.com"]


def test_a_long_pass_checks_its_claim_before_each_late_send(app: Flask, smtp: SmtpSink) -> None:
    first_id, second_id = queue(app, "jane@example.com", count=2)
    start = utcnow()
    with time_machine.travel(start, tick=False) as traveller, app.app_context():
        calls = 0

        def slow_first_message_then_a_takeover() -> bool:
            nonlocal calls
            calls += 1
            if calls == 2:
                # The first send took longer than the lease: another worker has claimed the rest.
                traveller.shift(CLAIM_LEASE + timedelta(seconds=1))
                with app.app_context():
                    assert claim_due(db.session, now=utcnow(), limit=10) == [second_id]
                    db.session.commit()
                    db.session.remove()
            return False

        # Each sent message marked at once: the takeover must find the first one sent.
        report = deliver_due(db.session, should_stop=slow_first_message_then_a_takeover, sent_group=SentGroup(size=1))
    assert report.sent == 1
    assert len(smtp.to("jane@example.com")) == 1
    assert message(app, first_id).status == "sent"
    assert message(app, second_id).status == "sending"  # the other worker's now


# --- the sent mark ----------------------------------------------------------------------------


# How the statements of a delivery pass read (their start), and how many rows each carried.
MARK, EVENT, FAILURE, RELEASE = (
    "UPDATE outbox SET text_body", "INSERT INTO audit_events (at,", "UPDATE outbox SET status", "UPDATE outbox SET status"
)


@contextmanager
def transactions() -> Iterator[list[list[tuple[str, int]]]]:
    """The statements of each committed transaction on the app's engine, in order: each as its
    start and how many parameter sets it carried (an executemany's rows). Inside an app context."""
    committed: list[list[tuple[str, int]]] = []
    statements: list[tuple[str, int]] = []
    engine = db.engine

    def seen(_connection: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool) -> None:
        statements.append((" ".join(statement.split("=")[0].split()[:4]), len(parameters) if many else 1))

    def commit(_connection: Any) -> None:
        committed.append(statements[:])
        statements.clear()

    sqlalchemy.event.listen(engine, "before_cursor_execute", seen)
    sqlalchemy.event.listen(engine, "commit", commit)
    try:
        yield committed
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", seen)
        sqlalchemy.event.remove(engine, "commit", commit)


def test_a_group_of_sent_messages_is_marked_in_one_durable_commit(
    app: Flask, smtp: SmtpSink, database_url: str
) -> None:
    # A commit waits for the disk: one for the claim and one for the group, not one a message.
    # A sent mark forgotten by a crash of the database server would send that message again,
    # so the commits stay durable.
    ids = queue(app, "jane@example.com", count=3)
    statements: list[str] = []
    commits: list[int] = []
    with app.app_context():
        engine = db.engine

        def seen(_connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            statements.append(" ".join(statement.split())[:40])

        def committed(_connection: Any) -> None:
            commits.append(1)

        sqlalchemy.event.listen(engine, "before_cursor_execute", seen)
        sqlalchemy.event.listen(engine, "commit", committed)
        try:
            report = deliver_due(db.session, limit=10)
        finally:
            sqlalchemy.event.remove(engine, "before_cursor_execute", seen)
            sqlalchemy.event.remove(engine, "commit", committed)
    assert report.sent == 3
    assert len(smtp.to("jane@example.com")) == 3
    assert len(commits) == 2
    # Whether anything is due, the claim, which of the batch's accounts are closed, then one
    # UPDATE marking the three and one INSERT of their three events.
    # (The claim starts with its CTE on PostgreSQL; on SQLite with UPDATE, so that it opens
    # the transaction it belongs to.)
    claim = "WITH" if database_url.startswith("postgresql") else "UPDATE"
    assert [statement.split()[0] for statement in statements] == ["SELECT", claim, "SELECT", "UPDATE", "INSERT"]
    assert statements[-2].startswith("UPDATE outbox SET") and statements[-1].startswith("INSERT INTO audit_events")
    assert not [statement for statement in statements if "synchronous_commit" in statement]
    with app.app_context():
        rows = db.session.execute(
            select(OutboxMessage.status, OutboxMessage.attempts, OutboxMessage.sent_at).where(OutboxMessage.id.in_(ids))
        ).all()
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.type == "mail.sent")).all()
        owner = db.session.scalar(select(Account.id).where(Account.email == "jane@example.com"))
    assert [(status, attempts) for status, attempts, _at in rows] == [("sent", 1)] * 3
    # Each event as marking its message alone wrote it: its own time, the outbox, the subject.
    assert sorted(event.at for event in events) == sorted(sent_at for *_rest, sent_at in rows)
    assert [(event.actor, event.ip, event.account_id, event.details) for event in events] == [
        ("outbox", None, owner, {"subject": "Hello"})
    ] * 3


def test_a_failing_message_in_the_middle_of_a_group_fails_alone(
    app: Flask, smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.outbox import delivery

    first, poisoned, *rest = queue(app, "jane@example.com", count=5)
    send = delivery.send

    def poisoned_send(claimed: Any, courier: Courier) -> None:
        if claimed.id == poisoned:
            raise ValueError("a poisoned message")
        send(claimed, courier)

    monkeypatch.setattr(delivery, "send", poisoned_send)
    with app.app_context(), transactions() as committed:
        report = deliver_due(db.session, limit=10, sent_group=SentGroup(size=25))
    assert (report.sent, report.retried) == (4, 1)
    assert len(smtp.to("jane@example.com")) == 4
    assert message(app, first).status == "sent"
    assert [message(app, message_id).status for message_id in rest] == ["sent"] * 3
    failed = message(app, poisoned)
    assert (failed.status, failed.attempts, failed.last_error) == ("pending", 1, "ValueError: a poisoned message")
    assert failed.next_attempt_at > utcnow()
    # The first message was marked in a commit of its own before the failure was recorded in
    # another; the three after it together, at the end of the batch.
    assert committed[1:] == [[(MARK, 1), (EVENT, 1)], [(FAILURE, 1)], [(MARK, 3), (EVENT, 3)]]


def test_a_stop_mid_batch_marks_the_sent_ones_and_hands_the_rest_back_in_one_commit(
    app: Flask, smtp: SmtpSink
) -> None:
    ids = queue(app, "jane@example.com", count=6)
    asked = 0

    def stop_after_three() -> bool:
        nonlocal asked
        asked += 1
        return asked > 3

    with app.app_context(), transactions() as committed:
        report = deliver_due(db.session, limit=10, should_stop=stop_after_three, sent_group=SentGroup(size=25))
    assert report.sent == 3
    assert len(smtp.to("jane@example.com")) == 3
    assert [message(app, message_id).status for message_id in ids] == ["sent"] * 3 + ["pending"] * 3
    assert [message(app, message_id).claimed_at for message_id in ids[3:]] == [None] * 3
    # The claim; then the three marks, their events and the rest handed back, together.
    assert len(committed) == 2
    assert committed[1] == [(MARK, 3), (EVENT, 3), (RELEASE, 1)]


def test_a_pass_interrupted_mid_group_marks_what_the_server_accepted_and_hands_back_the_rest(
    app: Flask, smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.outbox import delivery

    ids = queue(app, "jane@example.com", count=5)
    send = delivery.send

    def interrupted_on_the_third(claimed: Any, courier: Courier) -> None:
        if claimed.id == ids[2]:
            raise KeyboardInterrupt
        send(claimed, courier)

    monkeypatch.setattr(delivery, "send", interrupted_on_the_third)
    with app.app_context(), pytest.raises(KeyboardInterrupt):
        deliver_due(db.session, limit=10, sent_group=SentGroup(size=25))
    assert len(smtp.to("jane@example.com")) == 2
    statuses = [message(app, message_id).status for message_id in ids]
    # The one in flight may have reached the server: it waits for its claim lease, as after a
    # crash. The two after it were never tried: back in the queue at once.
    assert statuses == ["sent", "sent", "sending", "pending", "pending"]


def test_a_sent_group_is_due_when_full_or_when_its_first_message_has_waited(app: Flask) -> None:
    [message_id] = queue(app)
    with app.app_context():
        [claimed] = claim_messages(db.session, now=utcnow(), limit=10)
    by_size = SentGroup(size=2, seconds=60)
    by_size.add(claimed, at=utcnow())
    assert not by_size.due
    by_size.add(claimed, at=utcnow())
    assert by_size.due
    by_time = SentGroup(size=100, seconds=0.05)
    assert not by_time.due  # an empty group is never due
    by_time.add(claimed, at=utcnow())
    time.sleep(0.06)
    assert by_time.due
    assert by_time.message_ids == [message_id]


def test_handing_back_leaves_alone_a_message_another_worker_took_over(app: Flask) -> None:
    [message_id] = queue(app)
    first_claim = utcnow()
    with app.app_context():
        assert claim_due(db.session, now=first_claim, limit=10) == [message_id]
        db.session.commit()
        second_claim = first_claim + CLAIM_LEASE + timedelta(seconds=1)
        assert claim_due(db.session, now=second_claim, limit=10) == [message_id]
        db.session.commit()
        # The first worker, late, hands back what it believes is still its own.
        release(db.session, [message_id], claimed_at=first_claim)
        db.session.commit()
    taken = message(app, message_id)
    assert (taken.status, taken.claimed_at) == ("sending", second_claim)


class RefusingServer:
    """An SMTP server that refuses one recipient and keeps what it accepts."""

    def __init__(self) -> None:
        self.received: list[str] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("nobody@"):
            return f"550 5.1.1 <{address.upper()}>: Recipient address rejected: no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.extend(envelope.rcpt_tos)
        return "250 OK"


@pytest.fixture
def refusing_server() -> Iterator[tuple[RefusingServer, int]]:
    from aiosmtpd.controller import Controller

    handler = RefusingServer()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def test_a_refused_recipient_is_retried_later_and_the_next_message_still_goes(
    database_url: str, refusing_server: tuple[RefusingServer, int]
) -> None:
    handler, port = refusing_server
    app = create_app(settings_for(database_url, MAIL_SERVER="127.0.0.1", MAIL_PORT=port, MAIL_TIMEOUT=5))
    with app.app_context():
        db.create_all()
    try:
        [refused_id] = queue(app, "nobody@example.com")
        [accepted_id] = queue(app, "jane@example.com")
        with app.app_context():
            report = deliver_due(db.session, limit=10)
        assert (report.sent, report.retried) == (1, 1)
        assert handler.received == ["jane@example.com"]
        refused = message(app, refused_id)
        assert (refused.status, refused.attempts) == ("pending", 1)
        assert refused.last_error is not None and refused.last_error.startswith("SMTPRecipientsRefused")
        assert "550" in refused.last_error
        # The row outlives the message by months: the server's answer, not the address, even
        # where the server quotes it (in any case).
        assert refused.last_error == (
            "SMTPRecipientsRefused: 550 5.1.1 <(the recipient)>: Recipient address rejected: no such user here"
        )
        assert message(app, accepted_id).status == "sent"
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


# --- the claim at scale ------------------------------------------------------------------------


def plans_of(app: Flask, call: Any) -> list[str]:
    """The database's plan of every SELECT and UPDATE `call` sends (run, then rolled back)."""
    captured: list[tuple[str, Any]] = []

    def capture(_connection: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "WITH")):
            captured.append((statement, parameters))

    with app.app_context():
        engine = db.engine
        sqlalchemy.event.listen(engine, "before_cursor_execute", capture)
        try:
            call(db.session)
        finally:
            sqlalchemy.event.remove(engine, "before_cursor_execute", capture)
            db.session.rollback()
        explain = "EXPLAIN " if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN "
        plans = []
        for statement, parameters in captured:
            raw = engine.raw_connection()
            try:
                cursor = raw.cursor()
                cursor.execute(explain + statement, parameters)
                plans.append("\n".join(" ".join(str(value) for value in row) for row in cursor.fetchall()))
            finally:
                raw.rollback()
                raw.close()
        return plans


def test_the_claim_reads_the_unfinished_messages_not_every_sent_one(app: Flask, database_url: str) -> None:
    now = utcnow()
    sent = {"kind": "email", "recipient": "old@example.com", "subject": "Hi", "text_body": "(sent)", "status": "sent",
            "attempts": 1, "next_attempt_at": now, "created_at": now, "sent_at": now}
    with app.app_context():
        db.session.execute(sqlalchemy.insert(OutboxMessage), [sent] * 20000)
        db.session.commit()
    queue(app, "jane@example.com", count=200)  # a backlog, behind every sent message
    if database_url.startswith("postgresql"):
        with app.app_context():  # autovacuum's statistics, as a running database has them
            db.session.execute(sqlalchemy.text("ANALYZE"))
            db.session.commit()

    plans = [
        *plans_of(app, lambda session: any_due(session, now=utcnow())),
        *plans_of(app, lambda session: claim_messages(session, now=utcnow(), limit=10)),
    ]
    assert len(plans) == 2
    for plan in plans:
        if database_url.startswith("postgresql"):
            assert "ix_outbox_unfinished" in plan, plan
            assert "Seq Scan on outbox" not in plan and "using pk_outbox on outbox outbox_1" not in plan, plan
        else:
            # SQLite picks the partial index or the status index; never a scan of the table.
            assert all(" USING " in line for line in plan.splitlines() if "outbox" in line and "due_ids" not in line), plan
