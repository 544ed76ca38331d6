"""Sending one claimed message and recording what happened: sent, retried later, or failed."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update

from service.events import audit
from service.models import Account, AccountStatus, OutboxKind, OutboxMessage, OutboxStatus
from service.outbox.mail import Courier
from service.outbox.queue import MAX_ATTEMPTS, ClaimedMessage, backoff, open_body
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
# Built once: the statement a worker runs after every message it sends.
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


def deliver(
    session: DbSession, message: ClaimedMessage, *, courier: Courier, now: datetime, account_closed: bool = False
) -> str:
    """Send one message this worker has claimed and record the outcome; the caller commits.

    Returns "sent", "retried" or "failed". Whatever sending raises (a refusing server, a
    malformed address, a bug) fails this message alone: it is counted as an attempt and
    retried with backoff, or marked failed after its last attempt. `account_closed` says the
    message's account is closed (its closing notice): once sent, its envelope keeps no address.
    """
    try:
        send(message, courier)
    # The isolation boundary of one work item: any error here is this message's, and must
    # neither stop the worker nor be retried forever without counting.
    except Exception as error:  # noqa: BLE001
        return record_failure(session, message, error, now=now)
    record_sent(session, message, now=now, account_closed=account_closed)
    return "sent"


def record_sent(session: DbSession, message: ClaimedMessage, *, now: datetime, account_closed: bool = False) -> None:
    """Mark a message the server accepted as sent, and record `mail.sent`; the caller commits.

    The body may hold a reset link or a temporary password (or, for a webhook, what happened
    to a customer): once delivered, the outbox keeps only the envelope. The closing notice is
    the one mail a closed account still gets; once it is out, its envelope keeps no address,
    like every other mail of the account.
    """
    session.execute(MARK_SENT_ERASED if account_closed else MARK_SENT, {"message_id": message.id, "sent_at": now})
    if message.kind == OutboxKind.EMAIL:
        audit.record_event(
            session, "mail.sent", actor=OUTBOX_ACTOR, ip=None, now=now, account_id=message.account_id,
            details={"subject": message.subject},
        )
    count("mail", message.kind, "sent")


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
        "attempts": attempts, "last_error": f"{type(error).__name__}: {error}"[:ERROR_MAX_LENGTH],
    }
    if attempts >= MAX_ATTEMPTS:
        changes["status"] = OutboxStatus.FAILED
        if message.kind == OutboxKind.EMAIL:
            # A failed reset mail is of no use (a new reset is), and its secret must not stay.
            # A webhook keeps its sealed body, for `outbox retry-failed` once the website is back.
            changes.update(text_body=FAILED_BODY, html_body=None)
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
