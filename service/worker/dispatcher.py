"""The dispatcher: pass after pass over the queues, each item in its own transaction."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from flask import Flask, Response, current_app
from sqlalchemy import Connection, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from service.outbox.delivery import SentGroup, attempt, closed_accounts, record_failure
from service.outbox.mail import Courier
from service.outbox.queue import ANY_DUE as ANY_DUE_MAIL
from service.outbox.queue import CLAIM_LEASE, any_due, claim_messages, due_times, release, renew_claim
from service.platform.clock import utcnow
from service.platform.database import DbSession, take_queued_work
from service.platform.extensions import db
from service.resets.policy import ResetPolicy, reset_policy
from service.resets.requests import (
    ANY_DUE_REQUEST,
    forget_typed_names,
    in_lock_order,
    record_request_failure,
    resolve_request,
    take_due_requests,
)
from service.worker.housekeeping import retention_policy, run_housekeeping

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0
ERROR_PAUSE_SECONDS = 5.0
REQUEST_BATCH = 20
# On SQLite a batch holds the database's one write lock from its first request to its commit,
# and every writer waits for it (the request path's INSERT too): a smaller batch there.
SQLITE_REQUEST_BATCH = 5
MESSAGE_BATCH = 50
# How long a pass may deliver before it hands back the rest of its batch and looks for
# reset requests again: with a fast server a whole batch, with a slow one a message or two.
DELIVERY_SLICE_SECONDS = 1.0
# Under inline dispatch, how long a pass waits for more work to arrive before it starts. Each
# request wakes its worker's dispatcher; without the wait a pass under load found one or two
# requests, and paid its fixed costs (the look at the queues, the take, the commits, the claim)
# for each of them. With it a pass takes what the next few milliseconds bring, in one batch:
# a quarter less CPU for a whole reset, for mail 10 ms later. `outbox run` workers do not wait:
# nothing wakes them, and their passes are full batches already.
INLINE_GATHER_SECONDS = 0.01
# Housekeeping inside the dispatcher stays small: the rest waits for the next interval.
HOUSEKEEPING_BATCHES_PER_PASS = 10


def _clock(now: datetime | None) -> Callable[[], datetime]:
    """The time a pass reads: the real clock, or a fixed moment a test hands in."""
    return utcnow if now is None else (lambda: now)


def resolve_requests(
    session: DbSession, *, policy: ResetPolicy, limit: int | None = None, now: datetime | None = None
) -> int:
    """Resolve a batch of pending reset requests in one transaction; returns how many were handled.

    Each request is resolved inside a savepoint of its own. One whose handling raises is
    rolled back to its savepoint alone (its reset, mail and events undone, its typed name
    restored), its failure recorded (retried with backoff, given up after its last attempt),
    and the batch goes on; the batch commits once. A request's mail is queued in the same
    transaction as its resolution, so nothing is sent for a batch that did not commit, and a
    batch that does not commit leaves its requests pending for the next pass.
    """
    utcnow = _clock(now)
    if limit is None:
        limit = SQLITE_REQUEST_BATCH if session.get_bind().dialect.name == "sqlite" else REQUEST_BATCH
    taken = take_due_requests(session, now=utcnow(), limit=limit)
    if not taken:
        session.rollback()
        return 0
    resolved: list[int] = []
    for request in in_lock_order(taken):
        try:
            with session.begin_nested():
                resolve_request(session, request, policy=policy, now=utcnow())
            resolved.append(request.id)
        # The isolation boundary of one work item: whatever went wrong is this request's.
        except Exception as error:  # noqa: BLE001
            log.warning("reset request %s failed: %s", request.id, type(error).__name__)
            record_request_failure(session, request, error, now=utcnow())
    forget_typed_names(session, resolved)
    session.commit()
    return len(taken)


@dataclass
class DeliveryReport:
    """What one pass over the outbox did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0

    @property
    def handled(self) -> int:
        return self.sent + self.retried + self.failed


def deliver_due(
    session: DbSession,
    *,
    courier: Courier | None = None,
    limit: int = MESSAGE_BATCH,
    should_stop: Callable[[], bool] = lambda: False,
    now: datetime | None = None,
    slice_seconds: float = DELIVERY_SLICE_SECONDS,
    sent_group: SentGroup | None = None,
) -> DeliveryReport:
    """Claim a batch of due messages and deliver them one at a time over one SMTP connection
    (`courier`'s, kept by the caller; else one of its own for this batch).

    Messages the server accepted are marked sent a group at a time (`sent_group`, by default
    SENT_GROUP_SIZE messages or SENT_GROUP_SECONDS, whichever comes first), each group in one
    durable commit; the group is also written before a failure is recorded (in a commit of its
    own, so one bad message never takes the others' marks with it), before a claim is checked,
    when asked to stop, and at the end of the batch. A worker that dies between the server's
    answers and its group's commit leaves at most that group's messages "sending": they are
    sent again once their claim lease expires, so delivery is at least once, and a repeat is
    bounded to the group in flight. Two live workers never send the same message (a claim is
    one worker's, and checked again when it may have expired). The commits stay durable: a
    crash of the database server does not forget a mark, so it does not send again either.

    When asked to stop, or once the batch has taken `slice_seconds` (a slow server must not
    keep reset requests waiting), the message in flight is finished, the group marked sent and
    the rest handed back at once, in one commit, rather than left for the claim lease.
    """
    utcnow = _clock(now)
    report = DeliveryReport()
    claimed_at = utcnow()
    # Most passes find nothing due: a plain read answers that without taking the write lock.
    if not any_due(session, now=claimed_at):
        session.rollback()
        return report
    claimed = claim_messages(session, now=claimed_at, limit=limit)
    closed = closed_accounts(session, claimed)
    session.commit()
    own_courier = courier is None
    courier = courier or Courier()
    sent = sent_group if sent_group is not None else SentGroup()
    started = time.monotonic()
    # The messages not yet tried: what a stop, or an error on the way out, hands back.
    untried = 0
    try:
        for position, message in enumerate(claimed):
            if should_stop() or (position and time.monotonic() - started > slice_seconds):
                sent.write(session)
                release(session, [rest.id for rest in claimed[position:]], claimed_at=claimed_at)
                session.commit()
                untried = len(claimed)
                break
            untried = position + 1
            # Within half a lease of the claim no other worker can have taken the message over
            # (even with clocks a little apart); later, the claim is checked and renewed first.
            if utcnow() - claimed_at > CLAIM_LEASE / 2:
                sent.write(session)
                renewed = renew_claim(session, message.id, claimed_at, now=utcnow())
                session.commit()
                if not renewed:
                    continue
            accepted_at = utcnow()
            error = attempt(message, courier)
            if error is None:
                sent.add(message, at=accepted_at, account_closed=message.account_id in closed)
                report.sent += 1
                if sent.due:
                    sent.write(session)
                    session.commit()
                continue
            # The others' marks first, in their own commit: a failure recorded alone.
            if len(sent):
                sent.write(session)
                session.commit()
            outcome = record_failure(session, message, error, now=utcnow())
            session.commit()
            setattr(report, outcome, getattr(report, outcome) + 1)
        else:
            untried = len(claimed)
        if len(sent):
            sent.write(session)
            session.commit()
    except BaseException:
        # The message in flight (claimed[untried - 1]) may have reached the server: it keeps its
        # claim, and waits for the lease like a crash's would.
        _save_what_can_be(session, sent, [rest.id for rest in claimed[untried:]], claimed_at)
        raise
    finally:
        if own_courier:
            courier.close()
    return report


def _save_what_can_be(session: DbSession, sent: SentGroup, untried: list[int], claimed_at: datetime) -> None:
    """On the way out of a pass that raised (an interrupt, a database error): mark the messages
    the server accepted and hand back those not tried, if the database still lets us, so the
    first are not sent again and the others do not wait for the claim lease."""
    accepted = sent.message_ids
    if not accepted and not untried:
        return
    try:
        session.rollback()
        sent.write(session)
        if untried:
            release(session, untried, claimed_at=claimed_at)
        session.commit()
    except SQLAlchemyError:
        # They stay "sending": the sent ones are sent again after their claim lease, as a crash
        # would leave them, and the others wait for it.
        log.error("%d sent message(s) not marked sent: %s; %d untried not handed back", len(accepted), accepted,
                  len(untried))
        session.rollback()


# Whether a pass has anything to do, in one read: under inline dispatch every request that
# queues work wakes a pass, and most passes after a busy one find nothing; two ORM reads and
# their rollbacks made such an empty pass cost most of a millisecond.
ANYTHING_DUE = select(ANY_DUE_REQUEST.exists(), ANY_DUE_MAIL.exists())


def anything_due(connection: Connection, *, now: datetime) -> tuple[bool, bool]:
    """Whether reset requests, and whether messages, are due now: a plain read."""
    requests_due, mail_due = connection.execute(ANYTHING_DUE, {"due_at": now, **due_times(now)}).one()
    return bool(requests_due), bool(mail_due)


class Dispatcher:
    """Works the queues until told to stop; `wake` starts a pass at once."""

    def __init__(self, app: Flask, poll_seconds: float = POLL_SECONDS, gather_seconds: float = 0.0) -> None:
        self.app = app
        self.poll_seconds = poll_seconds
        # Before each pass of `run_forever`, wait this long for more work (INLINE_GATHER_SECONDS).
        self.gather_seconds = gather_seconds
        self.housekeeping_interval = float(app.config["HOUSEKEEPING_INTERVAL_SECONDS"])
        self._next_housekeeping = time.monotonic() + self.housekeeping_interval
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_pid: int | None = None
        # Touched after every pass that reached the database: a health check reads its age.
        self.heartbeat: Path | None = None
        # One SMTP connection for as long as there is mail to send, closed when a pass finds none.
        self.courier = Courier()
        # One pass at a time (the thread's, or `outbox run --once`'s): they share the connection.
        self._pass_lock = threading.Lock()

    def run_once(self) -> int:
        """One pass: resolve pending reset requests, then deliver due mail. Returns work done."""
        try:
            return self._pass()
        finally:
            self.courier.close()

    def _pass(self) -> int:
        """A pass that leaves the SMTP connection open for the next one: under load most passes
        find one or two requests, half of them for no account, and closing whenever a pass sent
        nothing made the next mail open a new connection (`close_idle_connection` closes it once
        a whole poll goes by without work).

        The pass runs on one database connection of its own, held from start to end: checked
        out of the pool for every transaction (a few per batch of mail), each check-out
        would cost the pool's liveness ping, a round trip to the database.
        """
        with self._pass_lock, self.app.app_context(), db.engine.connect() as connection:
            requests_due, mail_due = anything_due(connection, now=utcnow())
            # Ends the read's transaction, so that the session below begins (and commits) its own.
            connection.rollback()
            if not (requests_due or mail_due or self._housekeeping_due()):
                return 0
            session = Session(bind=connection)
            try:
                policy = reset_policy()
                # Requests first, all of them: a slow SMTP server must not keep resets from
                # being issued (their mail then waits in the outbox like any other).
                resolved = 0
                while requests_due and (batch := resolve_requests(session, policy=policy)) > 0:
                    resolved += batch
                    if self.stopping.is_set():
                        break
                report = DeliveryReport()
                if mail_due or resolved:
                    report = deliver_due(session, courier=self.courier, should_stop=self.stopping.is_set)
                if self.stopping.is_set():
                    self.courier.close()
                self._housekeep_if_due(session)
                return resolved + report.handled
            except BaseException:
                self.courier.close()
                raise
            finally:
                session.close()

    def _housekeeping_due(self) -> bool:
        return bool(self.housekeeping_interval) and time.monotonic() >= self._next_housekeeping

    def _housekeep_if_due(self, session: Session) -> None:
        """Now and then (HOUSEKEEPING_INTERVAL_SECONDS), delete a few batches of old rows."""
        if not self._housekeeping_due():
            return
        self._next_housekeeping = time.monotonic() + self.housekeeping_interval
        run_housekeeping(session, retention_policy(), now=utcnow(), max_batches=HOUSEKEEPING_BATCHES_PER_PASS)

    def run_forever(self) -> None:
        """Pass after pass until `stop`; a database outage pauses the loop, never ends it."""
        try:
            self._work_until_stopped()
        finally:
            self.close_idle_connection()

    def _work_until_stopped(self) -> None:
        while not self.stopping.is_set():
            if self.gather_seconds and self.stopping.wait(self.gather_seconds):
                break
            try:
                busy = self._pass() > 0
            except SQLAlchemyError:
                log.exception("dispatcher pass failed; trying again in %.0f s", ERROR_PAUSE_SECONDS)
                self.stopping.wait(ERROR_PAUSE_SECONDS)
                continue
            if self.heartbeat is not None:
                self.heartbeat.touch()
            if not busy:
                if not self._wake.wait(self.poll_seconds):
                    self.close_idle_connection()
                self._wake.clear()

    def close_idle_connection(self) -> None:
        """Nothing to do for a whole poll: give the SMTP server its connection back."""
        with self._pass_lock:
            self.courier.close()

    def wake(self) -> None:
        """Something was queued: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, wait_seconds: float = 0.0) -> None:
        """Finish the message in flight, then return from `run_forever`; optionally wait for it."""
        self.stopping.set()
        self._wake.set()
        if wait_seconds and self._thread is not None and self._thread_pid == os.getpid():
            self._thread.join(wait_seconds)

    def ensure_thread(self) -> None:
        """Start the background thread in this process, once (gunicorn forks after import)."""
        if self._thread is not None and self._thread.is_alive() and self._thread_pid == os.getpid():
            return
        self._thread_pid = os.getpid()
        self._thread = threading.Thread(target=self.run_forever, name="outbox-dispatcher", daemon=True)
        self._thread.start()


def current_dispatcher() -> Dispatcher:
    """The current app's dispatcher."""
    dispatcher: Dispatcher = current_app.extensions["resetdesk.dispatcher"]
    return dispatcher


def register_dispatcher(app: Flask) -> None:
    """Create the app's dispatcher, and wake it from one place: after any request that queued work.

    With inline dispatch, each worker process runs one in a background thread. It is woken
    once the answer's last byte is out, not before: woken earlier, its work for an existing
    account (a reset, its mail) would compete with the answer still being written, and slow
    it where a missing name's is not.
    """
    inline = app.config["OUTBOX_DISPATCH"] == "inline"
    dispatcher = Dispatcher(app, gather_seconds=INLINE_GATHER_SECONDS if inline else 0.0)
    app.extensions["resetdesk.dispatcher"] = dispatcher
    if inline:
        app.before_request(dispatcher.ensure_thread)

    @app.after_request
    def wake_if_work_was_queued(response: Response) -> Response:
        if take_queued_work(db.session):
            response.call_on_close(dispatcher.wake)
        return response
