"""The queue itself: adding a message, claiming due ones for a worker, handing them back,
and what `outbox status` reports."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Update, and_, bindparam, func, insert, literal_column, or_, select, update

from service.models import OutboxKind, OutboxMessage, OutboxStatus
from service.platform.database import DbSession, due_ids_to_take, inserted_id, note_queued_work, rows_changed
from service.platform.sealing import QUEUED_MAIL, open_sealed, seal

if TYPE_CHECKING:
    from service.outbox.mail import RenderedEmail

MAX_ATTEMPTS = 10
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=2)
# A message claimed longer ago than this by a worker that died is due again.
CLAIM_LEASE = timedelta(minutes=5)
UNFINISHED = (OutboxStatus.PENDING.value, OutboxStatus.SENDING.value)
QUEUE_EMAIL = insert(OutboxMessage.__table__)  # type: ignore[arg-type]


def queue_email(
    session: DbSession, recipient: str, email: RenderedEmail, *, account_id: int | None, now: datetime
) -> int:
    """Add an email to the caller's transaction and return its id; the caller's commit queues it
    with the change it reports.

    The bodies are stored sealed: a reset mail holds a link or a temporary password, and a copy
    of the database taken while SMTP is down must not give them away.
    """
    # One prepared INSERT: nobody reads the row back, and the unit of work's bookkeeping for it
    # cost more than the statement.
    queued = session.execute(
        QUEUE_EMAIL,
        {
            "kind": OutboxKind.EMAIL, "recipient": recipient, "subject": email.subject,
            "text_body": seal_body(email.text_body),
            "html_body": seal_body(email.html_body) if email.html_body is not None else None,
            "status": OutboxStatus.PENDING, "attempts": 0, "account_id": account_id, "created_at": now,
            "next_attempt_at": now,
        },
    )
    note_queued_work(session)
    return inserted_id(queued)


def seal_body(body: str) -> str:
    """A message body as the outbox stores it while queued (emails and webhooks alike)."""
    return seal(QUEUED_MAIL, body)


def open_body(stored: str) -> str:
    """The body `seal_body` stored, under SECRET_KEY or a fallback; SealBroken otherwise."""
    return open_sealed(QUEUED_MAIL, stored)


def backoff(attempts: int) -> timedelta:
    """Exponential backoff with jitter: about 30 s, 1 min, 2 min, ... up to 2 hours."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1))
    wait: timedelta = ceiling * random.uniform(0.5, 1.0)
    return wait


def _due(now: Any, stale_before: Any) -> ColumnElement[bool]:
    return and_(
        # Implied by what follows; said first, in the words of the partial index
        # ix_outbox_unfinished and with the values written out (not bound), so that SQLite's
        # planner, which matches the index's condition word for word, uses it too.
        OutboxMessage.status.in_([literal_column(f"'{status}'") for status in UNFINISHED]),
        or_(
            and_(OutboxMessage.status == OutboxStatus.PENDING, OutboxMessage.next_attempt_at <= now),
            and_(OutboxMessage.status == OutboxStatus.SENDING, OutboxMessage.claimed_at < stale_before),
        ),
    )


# The statements of every pass, built once with the time as a parameter: building them again
# for each pass cost more CPU than the database took to answer them.
_DUE = _due(bindparam("now"), bindparam("stale_before"))
ANY_DUE = select(OutboxMessage.id).where(_DUE).limit(1)


def due_times(now: datetime) -> dict[str, datetime]:
    """The times the due condition is bound to."""
    return {"now": now, "stale_before": now - CLAIM_LEASE}


def any_due(session: DbSession, *, now: datetime) -> bool:
    """Whether anything is due: a plain read, which takes no write lock."""
    return session.scalar(ANY_DUE, due_times(now)) is not None


@dataclass(frozen=True)
class ClaimedMessage:
    """A message a worker has claimed, as the claim read it: all that sending it needs.

    Plain values rather than a mapped object: a worker commits several times a batch, and a
    commit would make the session read every other message of the batch again.
    """

    id: int
    kind: str
    recipient: str
    subject: str
    text_body: str
    html_body: str | None
    attempts: int
    account_id: int | None


@lru_cache(maxsize=8)
def _claim(limit: int, dialect: str) -> Update:
    due_ids = due_ids_to_take(OutboxMessage.id, _DUE, limit=limit, name="due_ids", dialect=dialect)
    return (
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(select(due_ids.c.id)), _DUE)
        .values(status=OutboxStatus.SENDING, claimed_at=bindparam("now"))
        .returning(
            OutboxMessage.id, OutboxMessage.kind, OutboxMessage.recipient, OutboxMessage.subject,
            OutboxMessage.text_body, OutboxMessage.html_body, OutboxMessage.attempts, OutboxMessage.account_id,
        )
        .execution_options(synchronize_session=False)
    )


def claim_messages(session: DbSession, *, now: datetime, limit: int) -> list[ClaimedMessage]:
    """Mark up to `limit` due messages as being sent by this worker, oldest first, and read
    them in the same statement; the caller commits.

    One UPDATE over a SKIP LOCKED sub-select, RETURNING what sending needs: on PostgreSQL
    concurrent workers take disjoint rows without waiting; on SQLite the statement runs under
    the single write lock. Either way a message is claimed by one worker only.
    """
    claimed = session.execute(_claim(limit, session.get_bind().dialect.name), due_times(now)).all()
    return sorted((ClaimedMessage(**row._mapping) for row in claimed), key=lambda message: message.id)


def claim_due(session: DbSession, *, now: datetime, limit: int) -> list[int]:
    """`claim_messages`, for a caller that needs only the ids; the caller commits."""
    return [message.id for message in claim_messages(session, now=now, limit=limit)]


def renew_claim(session: DbSession, message_id: int, claimed_at: datetime, *, now: datetime) -> bool:
    """Just before sending, check the claim is still ours and restart its lease; the caller commits.

    A batch that takes longer than CLAIM_LEASE lets another worker claim its last messages
    again; the claim's time is its owner's mark, so only one of the two goes on to send.
    """
    renewed = session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id == message_id,
            OutboxMessage.status == OutboxStatus.SENDING,
            OutboxMessage.claimed_at == claimed_at,
        )
        .values(claimed_at=now)
        .execution_options(synchronize_session=False)
    )
    return rows_changed(renewed) == 1


def release(session: DbSession, message_ids: list[int], *, claimed_at: datetime | None = None) -> None:
    """Hand claimed messages back to the queue; the caller commits.

    With `claimed_at`, only those still under that claim: a message another worker took over
    once the lease ran out is that worker's, and stays with it.
    """
    mine = [OutboxMessage.claimed_at == claimed_at] if claimed_at is not None else []
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(message_ids), OutboxMessage.status == OutboxStatus.SENDING, *mine)
        .values(status=OutboxStatus.PENDING, claimed_at=None)
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True)
class OutboxCounts:
    """Counts by status, and how long the oldest waiting message has waited."""

    counts: dict[str, int]
    oldest_pending_at: datetime | None
    failed: list[OutboxMessage]


def outbox_status(session: DbSession, *, failed_limit: int = 20) -> OutboxCounts:
    """What `outbox status` and the metrics report."""
    counts: dict[str, int] = {
        status: total
        for status, total in session.execute(
            select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
        )
    }
    oldest = session.scalar(
        select(func.min(OutboxMessage.created_at)).where(
            OutboxMessage.status.in_((OutboxStatus.PENDING, OutboxStatus.SENDING))
        )
    )
    failed = list(
        session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.status == OutboxStatus.FAILED)
            .order_by(OutboxMessage.id.desc())
            .limit(failed_limit)
        )
    )
    return OutboxCounts(counts=counts, oldest_pending_at=oldest, failed=failed)


def retry_failed(session: DbSession, *, now: datetime) -> int:
    """Give every failed webhook a fresh set of attempts; the caller commits. Returns how many.

    Failed emails kept no body to send again (a failed reset mail is no use: a new reset is).
    """
    result = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status == OutboxStatus.FAILED, OutboxMessage.kind == OutboxKind.WEBHOOK)
        .values(status=OutboxStatus.PENDING, attempts=0, next_attempt_at=now)
    )
    return rows_changed(result)
