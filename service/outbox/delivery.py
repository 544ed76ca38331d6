"""Sending claimed messages and recording what happened: sent, retried later, or failed.

A message the server accepted is marked sent with others of its group (`SentGroup`): one
UPDATE, one INSERT of their `mail.sent` events and one commit for many messages, rather than a
durable commit each. A failure is recorded alone, the moment it happens.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update

from service.events import audit
from service.models import Account, AccountStatus, OutboxKind, OutboxMessage, OutboxStatus
from service.outbox.mail import Courier
from service.outbox.queue import MAX_ATTEMPTS, ClaimedMessage, backoff, open_body
from service.outbox.smtp import failure_text
from service.outbox.webhooks import post_webhook
from service.platform.counters import count
from service.platform.database import DbSession

log = logging.getLogger(__name__)

OUTBOX_ACTOR = "outbox"
SENT_BODY = "(delivered; the body is not kept)"
FAILED_BODY = "(failed; the body is not kept)"
ERASED_RECIPIENT = "(erased)"
ERROR_MAX_LENGTH = 1000

_OUTBOX = cast(Table, OutboxMessage.__table__)
# How many accepted messages a worker marks sent in one commit, and how long the first of them
# may wait for the others. A worker that dies before the commit leaves its group's messages
# "sending", sent again once their claim lease expires: the group's size and age bound that
# repeat, and a commit per group rather than per message is what lets a worker on PostgreSQL
# keep up with a fast mail server (a durable commit waits for the disk).
SENT_GROUP_SIZE = 25
SENT_GROUP_SECONDS = 0.5
# Built once: the statement a worker runs for each group of messages it sent (executemany).
MARK_SENT = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("message_id"))
    .values(
        status=OutboxStatus.SENT, sent_at=bindparam("sent_at"), attempts=_OUTBOX.c.attempts + 1,
        text_body=SENT_BODY, html_body=None,
    )
)
MARK_SENT_ERASED = MARK_SENT.values(recipient=ERASED_RECIPIENT)


def send(message: ClaimedMessage, courier: Courier) -> None:
    """Open one message's sealed body and hand it to SMTP (or the log), or POST it as a
    webhook; raises whatever went wrong (SealBroken for a body no current key opens)."""
    text_body = open_body(message.text_body)
    if message.kind == OutboxKind.WEBHOOK:
        post_webhook(message.recipient, text_body)
    else:
        html_body = open_body(message.html_body) if message.html_body is not None else None
        courier.send(message.recipient, message.subject, text_body, html_body)


def attempt(message: ClaimedMessage, courier: Courier) -> Exception | None:
    """Send one message this worker has claimed; None once it is accepted, else what went wrong.

    Whatever sending raises (a refusing server, a malformed address, a bug) is this message's
    alone: the caller records it as a failed attempt and goes on with the next message.
    """
    try:
        send(message, courier)
    # The isolation boundary of one work item: any error here is this message's, and must
    # neither stop the worker nor be retried forever without counting.
    except Exception as error:  # noqa: BLE001
        return error
    return None


def deliver(
    session: DbSession, message: ClaimedMessage, *, courier: Courier, now: datetime, account_closed: bool = False
) -> str:
    """Send one message this worker has claimed and record the outcome; the caller commits.

    Returns "sent", "retried" or "failed". A failure is counted as an attempt and retried with
    backoff, or marked failed after its last attempt. `account_closed` says the message's
    account is closed (its closing notice): once sent, its envelope keeps no address.
    """
    error = attempt(message, courier)
    if error is not None:
        return record_failure(session, message, error, now=now)
    record_sent(session, message, now=now, account_closed=account_closed)
    return "sent"


def record_sent(session: DbSession, message: ClaimedMessage, *, now: datetime, account_closed: bool = False) -> None:
    """Mark a message the server accepted as sent, and record `mail.sent`; the caller commits."""
    record_sent_group(session, [Accepted(message, now, account_closed)])


@dataclass(frozen=True)
class Accepted:
    """A message the server accepted, when, and whether its account is closed."""

    message: ClaimedMessage
    at: datetime
    account_closed: bool = False


def record_sent_group(session: DbSession, accepted: list[Accepted]) -> None:
    """Mark messages the server accepted as sent, and record a `mail.sent` for each email;
    the caller commits. One UPDATE (executemany) and one INSERT for the whole group.

    Each row gets what marking it alone gave it: its own sent time, and an event with that time,
    its account and its subject. The body may hold a reset link or a temporary password (or,
    for a webhook, what happened to a customer): once delivered, the outbox keeps only the
    envelope. The closing notice is the one mail a closed account still gets; once it is out,
    its envelope keeps no address, like every other mail of the account.
    """
    if not accepted:
        return
    kept = [{"message_id": item.message.id, "sent_at": item.at} for item in accepted if not keeps_no_address(item)]
    erased = [{"message_id": item.message.id, "sent_at": item.at} for item in accepted if keeps_no_address(item)]
    if kept:
        session.execute(MARK_SENT, kept)
    if erased:
        session.execute(MARK_SENT_ERASED, erased)
    audit.record_events(
        session, "mail.sent",
        [
            audit.Occurrence(at=item.at, account_id=item.message.account_id, details={"subject": item.message.subject})
            for item in accepted if item.message.kind == OutboxKind.EMAIL
        ],
        actor=OUTBOX_ACTOR, ip=None,
    )
    for kind, sent in Counter(item.message.kind for item in accepted).items():
        count("mail", kind, "sent", by=sent)


def keeps_no_address(item: Accepted) -> bool:
    """Whether a sent message's envelope keeps no address: a closed account's (its closing
    notice), or an email of no account (a username reminder, to whatever address was typed,
    which no account's record or export would ever show, nor its closing erase)."""
    return item.account_closed or (item.message.kind == OutboxKind.EMAIL and item.message.account_id is None)


class SentGroup:
    """Messages the server accepted and not yet marked sent, for one `record_sent_group`.

    `due` says the group should be written now: it is full, or its first message has waited
    long enough. Whoever holds one writes it (and commits) when it is due, before recording a
    failure, before checking a claim, and before handing the rest of a batch back.
    """

    def __init__(self, size: int = SENT_GROUP_SIZE, seconds: float = SENT_GROUP_SECONDS) -> None:
        self.size = size
        self.seconds = seconds
        self._accepted: list[Accepted] = []
        self._first_at = 0.0

    def __len__(self) -> int:
        return len(self._accepted)

    def add(self, message: ClaimedMessage, *, at: datetime, account_closed: bool = False) -> None:
        if not self._accepted:
            self._first_at = time.monotonic()
        self._accepted.append(Accepted(message, at, account_closed))

    @property
    def due(self) -> bool:
        return bool(self._accepted) and (
            len(self._accepted) >= self.size or time.monotonic() - self._first_at >= self.seconds
        )

    @property
    def message_ids(self) -> list[int]:
        return [item.message.id for item in self._accepted]

    def write(self, session: DbSession) -> int:
        """Mark the group sent in the caller's transaction, and empty it; returns how many."""
        accepted, self._accepted = self._accepted, []
        record_sent_group(session, accepted)
        return len(accepted)


def closed_accounts(session: DbSession, messages: list[ClaimedMessage]) -> frozenset[int]:
    """Which of these messages' accounts are closed: one query for a whole batch."""
    account_ids = {message.account_id for message in messages if message.account_id is not None}
    if not account_ids:
        return frozenset()
    return frozenset(
        session.scalars(
            select(Account.id).where(Account.id.in_(account_ids), Account.status == AccountStatus.CLOSED)
        )
    )


def record_failure(session: DbSession, message: ClaimedMessage, error: BaseException, *, now: datetime) -> str:
    """Count a failed attempt: retry later with backoff, or give up after the last one."""
    attempts = message.attempts + 1
    changes: dict[str, Any] = {
        "attempts": attempts, "last_error": failure_text(error, message.recipient)[:ERROR_MAX_LENGTH],
    }
    if attempts >= MAX_ATTEMPTS:
        changes["status"] = OutboxStatus.FAILED
        if message.kind == OutboxKind.EMAIL:
            # A failed reset mail is of no use (a new reset is), and its secret must not stay.
            # A webhook keeps its sealed body, for `outbox retry-failed` once the website is back.
            changes.update(text_body=FAILED_BODY, html_body=None)
            if message.account_id is None:
                changes["recipient"] = ERASED_RECIPIENT  # as once sent (keeps_no_address)
            audit.record_event(
                session, "mail.failed", actor=OUTBOX_ACTOR, ip=None, now=now, account_id=message.account_id,
                details={"subject": message.subject, "attempts": attempts},
            )
        log.error("message %s failed for good after %d attempts: %s", message.id, attempts, type(error).__name__)
        outcome = "failed"
    else:
        changes.update(status=OutboxStatus.PENDING, next_attempt_at=now + backoff(attempts))
        log.warning("message %s not sent (attempt %d), will retry: %s", message.id, attempts, type(error).__name__)
        outcome = "retried"
    session.execute(
        update(OutboxMessage).where(OutboxMessage.id == message.id).values(**changes)
        .execution_options(synchronize_session=False)
    )
    count("mail", message.kind, outcome)
    return outcome
