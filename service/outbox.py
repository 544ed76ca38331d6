"""The outbox of mail and webhooks: queued with the change it belongs to, delivered later,
retried with backoff, never lost."""

from __future__ import annotations

import logging
import random
import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from . import audit
from .clock import utcnow
from .counters import count
from .emails import RenderedEmail, transmit
from .models import OutboxMessage
from .webhooks import post_webhook

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=2)
# A message claimed longer ago than this by a worker that died is due again.
CLAIM_LEASE = timedelta(minutes=5)
OUTBOX_ACTOR = "outbox"
SENT_BODY = "(delivered; the body is not kept)"


def queue_email(
    session: Session, recipient: str, email: RenderedEmail, *, account_id: int | None, now: datetime
) -> OutboxMessage:
    """Add an email to the session; the caller's commit queues it with the change it reports."""
    message = OutboxMessage(
        recipient=recipient,
        subject=email.subject,
        text_body=email.text_body,
        html_body=email.html_body,
        account_id=account_id,
        created_at=now,
        next_attempt_at=now,
    )
    session.add(message)
    return message


def backoff(attempts: int) -> timedelta:
    """Exponential backoff with jitter: about 30 s, 1 min, 2 min, ... up to 2 hours."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1))
    return ceiling * random.uniform(0.5, 1.0)


def _due(now: datetime):
    return or_(
        and_(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now),
        and_(OutboxMessage.status == "sending", OutboxMessage.claimed_at < now - CLAIM_LEASE),
    )


def claim_due(session: Session, *, now: datetime, limit: int) -> list[int]:
    """Mark up to `limit` due messages as being sent by this worker, and commit.

    One UPDATE over a SKIP LOCKED sub-select: on PostgreSQL concurrent workers take disjoint
    rows without waiting; on SQLite the statement runs under the single write lock. Either way
    a message is claimed by one worker only.
    """
    # Most passes find nothing due: a plain read answers that without taking the write lock.
    if session.scalar(select(OutboxMessage.id).where(_due(now)).limit(1)) is None:
        session.rollback()
        return []
    # MATERIALIZED: as a plain sub-select PostgreSQL may re-run it for every outer row, and
    # each re-run skips the rows this UPDATE already took, so the LIMIT would not hold.
    due_ids = (
        select(OutboxMessage.id)
        .where(_due(now))
        .order_by(OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("due_ids")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    claimed = session.scalars(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(select(due_ids.c.id)), _due(now))
        .values(status="sending", claimed_at=now)
        .returning(OutboxMessage.id)
        .execution_options(synchronize_session=False)
    ).all()
    session.commit()
    return sorted(claimed)


@dataclass
class DeliveryReport:
    """What one pass over the outbox did."""

    sent: int = 0
    retried: int = 0
    failed: int = 0

    @property
    def handled(self) -> int:
        return self.sent + self.retried + self.failed


def renew_claim(session: Session, message_id: int, claimed_at: datetime) -> bool:
    """Just before sending, check the claim is still ours and restart its lease; commits.

    A batch that takes longer than CLAIM_LEASE lets another worker claim its last messages
    again; the claim's time is its owner's mark, so only one of the two goes on to send.
    """
    renewed = session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id == message_id,
            OutboxMessage.status == "sending",
            OutboxMessage.claimed_at == claimed_at,
        )
        .values(claimed_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return renewed.rowcount == 1


def deliver(session: Session, message_id: int, *, now: datetime, claimed_at: datetime | None = None) -> str:
    """Send one claimed message and record the outcome (sent, retry or failed); commits.

    `claimed_at` is the claim's time as `claim_due` set it; a message claimed since by another
    worker is skipped.
    """
    if claimed_at is not None and not renew_claim(session, message_id, claimed_at):
        return "skipped"
    message = session.get(OutboxMessage, message_id)
    if message is None or message.status != "sending":
        return "skipped"
    try:
        if message.kind == "webhook":
            post_webhook(message.recipient, message.text_body)
        else:
            transmit(message.recipient, message.subject, message.text_body, message.html_body)
    except (smtplib.SMTPException, OSError) as error:
        message.attempts += 1
        message.last_error = f"{type(error).__name__}: {error}"[:1000]
        if message.attempts >= MAX_ATTEMPTS:
            message.status = "failed"
            if message.kind == "email":
                audit.record_event(
                    session, "mail.failed", actor=OUTBOX_ACTOR, ip=None, account_id=message.account_id,
                    details={"subject": message.subject, "attempts": message.attempts},
                )
            log.error("mail %s failed for good after %d attempts: %s", message.id, message.attempts, error)
        else:
            message.status = "pending"
            message.next_attempt_at = now + backoff(message.attempts)
            log.warning("mail %s not sent (attempt %d), will retry: %s", message.id, message.attempts, error)
        session.commit()
        outcome = "failed" if message.status == "failed" else "retried"
        count("mail", message.kind, outcome)
        return outcome
    message.status = "sent"
    message.sent_at = now
    message.attempts += 1
    if message.kind == "email":
        # The body may hold a reset link or a temporary password: once delivered, the outbox
        # keeps only the envelope, so the database never holds a usable secret in plain text.
        message.text_body = SENT_BODY
        message.html_body = None
        audit.record_event(
            session, "mail.sent", actor=OUTBOX_ACTOR, ip=None, account_id=message.account_id,
            details={"subject": message.subject},
        )
    session.commit()
    count("mail", message.kind, "sent")
    return "sent"


def deliver_due(
    session: Session,
    *,
    now: datetime,
    limit: int = 10,
    should_stop: Callable[[], bool] = lambda: False,
) -> DeliveryReport:
    """Claim what is due and deliver it, one message at a time.

    When asked to stop, the message in flight is finished and the rest handed back at once,
    rather than left for the claim lease to expire.
    """
    report = DeliveryReport()
    claimed = claim_due(session, now=now, limit=limit)
    for position, message_id in enumerate(claimed):
        if should_stop():
            release(session, claimed[position:])
            break
        outcome = deliver(session, message_id, now=now, claimed_at=now)
        if outcome in ("sent", "retried", "failed"):
            setattr(report, outcome, getattr(report, outcome) + 1)
    return report


def release(session: Session, message_ids: list[int]) -> None:
    """Hand claimed messages back to the queue, and commit."""
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(message_ids), OutboxMessage.status == "sending")
        .values(status="pending", claimed_at=None)
        .execution_options(synchronize_session=False)
    )
    session.commit()


@dataclass(frozen=True)
class OutboxStatus:
    """Counts by status, and how long the oldest waiting message has waited."""

    counts: dict[str, int]
    oldest_pending_at: datetime | None
    failed: list[OutboxMessage]


def outbox_status(session: Session, *, failed_limit: int = 20) -> OutboxStatus:
    """What `outbox status` and the metrics report."""
    counts = dict(
        session.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all()
    )
    oldest = session.scalar(
        select(func.min(OutboxMessage.created_at)).where(OutboxMessage.status.in_(("pending", "sending")))
    )
    failed = list(
        session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.status == "failed")
            .order_by(OutboxMessage.id.desc())
            .limit(failed_limit)
        )
    )
    return OutboxStatus(counts=counts, oldest_pending_at=oldest, failed=failed)


def retry_failed(session: Session, *, now: datetime) -> int:
    """Give every failed message a fresh set of attempts, and commit; returns how many."""
    result = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status == "failed")
        .values(status="pending", attempts=0, next_attempt_at=now)
    )
    session.commit()
    return result.rowcount
