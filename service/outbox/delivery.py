"""Sending one claimed message and recording what happened: sent, retried later, or failed."""

from __future__ import annotations

import logging
from datetime import datetime

from service.events import audit
from service.models import Account, AccountStatus, OutboxKind, OutboxMessage, OutboxStatus
from service.outbox.mail import Courier
from service.outbox.queue import MAX_ATTEMPTS, backoff, drop_body, open_body
from service.outbox.webhooks import post_webhook
from service.platform.counters import count
from service.platform.database import DbSession

log = logging.getLogger(__name__)

OUTBOX_ACTOR = "outbox"
SENT_BODY = "(delivered; the body is not kept)"
FAILED_BODY = "(failed; the body is not kept)"
ERASED_RECIPIENT = "(erased)"
ERROR_MAX_LENGTH = 1000


def send(message: OutboxMessage, courier: Courier) -> None:
    """Open one message's sealed body and hand it to SMTP (or the log), or POST it as a
    webhook; raises whatever went wrong (SealBroken for a body no current key opens)."""
    text_body = open_body(message.text_body)
    if message.kind == OutboxKind.WEBHOOK:
        post_webhook(message.recipient, text_body)
    else:
        html_body = open_body(message.html_body) if message.html_body is not None else None
        courier.send(message.recipient, message.subject, text_body, html_body)


def deliver(session: DbSession, message: OutboxMessage, *, courier: Courier, now: datetime) -> str:
    """Send one message this worker has claimed and record the outcome; the caller commits.

    Returns "sent", "retried" or "failed". Whatever sending raises (a refusing server, a
    malformed address, a bug) fails this message alone: it is counted as an attempt and
    retried with backoff, or marked failed after its last attempt.
    """
    try:
        send(message, courier)
    # The isolation boundary of one work item: any error here is this message's, and must
    # neither stop the worker nor be retried forever without counting.
    except Exception as error:  # noqa: BLE001
        return record_failure(session, message, error, now=now)
    message.status = OutboxStatus.SENT
    message.sent_at = now
    message.attempts += 1
    # The body may hold a reset link or a temporary password (or, for a webhook, what happened
    # to a customer): once delivered, the outbox keeps only the envelope.
    drop_body(message, SENT_BODY)
    if message.kind == OutboxKind.EMAIL:
        _forget_address_of_closed_account(session, message)
        audit.record_event(
            session, "mail.sent", actor=OUTBOX_ACTOR, ip=None, now=now, account_id=message.account_id,
            details={"subject": message.subject},
        )
    count("mail", message.kind, "sent")
    return "sent"


def _forget_address_of_closed_account(session: DbSession, message: OutboxMessage) -> None:
    # The closing notice is the one mail a closed account still gets; once it is out, its
    # envelope keeps no address, like every other mail of the account.
    if message.account_id is None:
        return
    account = session.get(Account, message.account_id)
    if account is not None and account.status == AccountStatus.CLOSED:
        message.recipient = ERASED_RECIPIENT


def record_failure(session: DbSession, message: OutboxMessage, error: BaseException, *, now: datetime) -> str:
    """Count a failed attempt: retry later with backoff, or give up after the last one."""
    message.attempts += 1
    message.last_error = f"{type(error).__name__}: {error}"[:ERROR_MAX_LENGTH]
    if message.attempts >= MAX_ATTEMPTS:
        message.status = OutboxStatus.FAILED
        if message.kind == OutboxKind.EMAIL:
            # A failed reset mail is of no use (a new reset is), and its secret must not stay.
            # A webhook keeps its sealed body, for `outbox retry-failed` once the website is back.
            drop_body(message, FAILED_BODY)
            audit.record_event(
                session, "mail.failed", actor=OUTBOX_ACTOR, ip=None, now=now, account_id=message.account_id,
                details={"subject": message.subject, "attempts": message.attempts},
            )
        log.error("message %s failed for good after %d attempts: %s", message.id, message.attempts, type(error).__name__)
        outcome = "failed"
    else:
        message.status = OutboxStatus.PENDING
        message.next_attempt_at = now + backoff(message.attempts)
        log.warning("message %s not sent (attempt %d), will retry: %s", message.id, message.attempts, type(error).__name__)
        outcome = "retried"
    count("mail", message.kind, outcome)
    return outcome
