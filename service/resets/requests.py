"""Self-service reset requests: recorded sealed on the request path, resolved later by the
dispatcher, each request a work item of its own that may fail and be retried alone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, bindparam, insert, or_, select, update

from service.accounts.records import find_account
from service.accounts.reminders import resolve_username_reminder
from service.events import audit
from service.models import AuditEvent, RequestKind, RequestStatus, ResetRequest
from service.outbox.queue import backoff
from service.platform.counters import count
from service.platform.database import DbSession, due_ids_to_take, note_queued_work
from service.platform.sealing import TYPED_USERNAME, SealBroken, open_sealed, seal, username_hash, username_hashes
from service.platform.text import USERNAME_MAX_LENGTH, normalise_username
from service.resets.issuing import issue_reset, rehearse_reset
from service.resets.mailcap import take_reset_mail
from service.resets.policy import ResetPolicy

RECORD_RESET_REQUEST = insert(ResetRequest.__table__)  # type: ignore[arg-type]
# A request that fails this often (a bug, a poisoned row) is given up on, and recorded so.
REQUEST_MAX_ATTEMPTS = 5
ERROR_MAX_LENGTH = 1000


def request_reset(
    session: DbSession | Connection, username: str, *, policy: ResetPolicy, ip: str | None, now: datetime, language: str | None = None
) -> None:
    """Record a self-service request, the typed name sealed; the caller commits.

    This is all the request path does, for every username alike: no lookup, no branch, one
    sealing. A door passes a `core_transaction` connection (or a session). The dispatcher resolves the request later (`resolve_request`), so neither the
    answer nor its time can tell an existing account from a missing one; and the name is never
    written in clear, since people type passwords and emails into that box.
    """
    # One prepared INSERT: the request path needs no object back, and skipping the ORM's unit
    # of work and per-call statement building makes it several times cheaper.
    session.execute(
        RECORD_RESET_REQUEST,
        {
            "username_sealed": seal(TYPED_USERNAME, username[:USERNAME_MAX_LENGTH]), "ip": ip, "language": language, "requested_at": now,
            "status": RequestStatus.PENDING, "attempts": 0,
        },
    )
    note_queued_work(session)
    count("resets", policy.method, "self")


def resolve_reset_request(session: DbSession, request: ResetRequest, *, policy: ResetPolicy, now: datetime) -> str:
    """Act on one self-service request; flushes, the caller commits. Returns what happened.

    Only an active account with an email gets mail, at most `policy.mails_per_hour` an hour;
    every request leaves an audit event, so a request for a missing, disabled or email-less
    account, or one over the cap, is recorded, not dropped. The event keeps nothing typed: the
    account link, or for a missing account a keyed hash an agent can check a name against
    (`was_requested`).
    """
    try:
        typed = open_sealed(TYPED_USERNAME, request.username_sealed)
    except SealBroken:
        # Sealed under a key since retired: nobody can say what was asked for any more.
        typed = None
    account = find_account(session, typed) if typed is not None else None
    details: dict[str, str] = {"method": policy.method}
    # Hashed for every name, so a missing one costs the dispatcher no less than another.
    hashed = username_hash(typed) if typed is not None else None
    if hashed is None:
        outcome = "unreadable"
    elif account is None:
        outcome = "no_account"
        details["username_hash"] = hashed
    elif not account.is_active:
        outcome = "disabled"
    elif account.is_frozen:
        outcome = "frozen"
    elif not account.email:
        outcome = "no_email"
    elif not take_reset_mail(session, account.id, per_hour=policy.mails_per_hour, now=now):
        outcome = "capped"
    else:
        outcome = "issued"
    audit.record_event(
        session, "reset.requested", actor=audit.SELF, ip=request.ip, now=now, account=account,
        details={**details, "outcome": outcome},
    )
    if account is not None and outcome == "issued":
        issue_reset(
            session, account, policy.method, policy=policy, requested_by=audit.SELF, ip=request.ip, now=now,
            language=request.language,
        )
    else:
        rehearse_reset(typed or "", policy.method, request.language, policy=policy, now=now)
    return outcome


@dataclass(frozen=True)
class AskedFor:
    """One resolved self-service request for a name: when, and what came of it."""

    at: datetime
    outcome: str


def requests_for_name(session: DbSession, typed: str, *, since: datetime) -> list[AskedFor]:
    """Resolved self-service requests since `since` for the name an agent types, newest first.

    Requests for an account are found by the account; those for no account by the keyed
    hash their event keeps (under SECRET_KEY or any fallback), so the name itself is needed.
    """
    account = find_account(session, typed)
    hashes = set(username_hashes(typed))
    recent = (
        select(AuditEvent)
        .where(AuditEvent.type == "reset.requested", AuditEvent.at >= since)
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    )
    found: list[AskedFor] = []
    if account is not None:
        for event in session.scalars(recent.where(AuditEvent.account_id == account.id)):
            found.append(AskedFor(at=event.at, outcome=str(event.details.get("outcome", ""))))
    # Events for no account keep their hash in a JSON column no index reaches: read the
    # window's and compare here, which also works the same on every database.
    for event in session.scalars(recent.where(AuditEvent.account_id.is_(None)).execution_options(yield_per=500)):
        if event.details.get("username_hash") in hashes:
            found.append(AskedFor(at=event.at, outcome=str(event.details.get("outcome", ""))))
    return sorted(found, key=lambda asked: asked.at, reverse=True)


def _due(now: ColumnElement[datetime]) -> ColumnElement[bool]:
    """Pending requests due at `now`: new ones, and failed ones whose backoff is over."""
    return and_(
        ResetRequest.status == RequestStatus.PENDING,
        or_(ResetRequest.next_attempt_at.is_(None), ResetRequest.next_attempt_at <= now),
    )


# The dispatcher's statements, built once with the time bound per call.
_DUE = _due(bindparam("due_at", type_=ResetRequest.next_attempt_at.type))
ANY_DUE_REQUEST = select(ResetRequest.id).where(_DUE).limit(1)


@cache
def _take_due(limit: int, dialect: str) -> Any:
    due_ids = due_ids_to_take(ResetRequest.id, _DUE, limit=limit, name="due_request_ids", dialect=dialect)
    return (
        update(ResetRequest)
        .where(ResetRequest.id.in_(select(due_ids.c.id)), _DUE)
        .values(status=RequestStatus.PROCESSED, processed_at=bindparam("taken_at", type_=ResetRequest.processed_at.type))
        .returning(ResetRequest)
    )


def take_due_requests(session: DbSession, *, now: datetime, limit: int) -> list[ResetRequest]:
    """Take up to `limit` due requests for this worker, oldest first; the caller resolves them
    and commits, and its rollback hands them back.

    A plain read first, so that a pass with nothing due takes no write lock (SQLite). Then one
    UPDATE over a SKIP LOCKED sub-select, as the outbox claims mail: on PostgreSQL concurrent
    workers take disjoint rows without waiting, and keep them locked until they commit; on
    SQLite the statement runs under the single write lock, so a worker that waited for another
    takes the next requests, not none. The UPDATE also starts the write transaction on SQLite
    before any savepoint is opened in it.
    """
    if session.scalar(ANY_DUE_REQUEST, {"due_at": now}) is None:
        return []
    taken = session.scalars(
        _take_due(limit, session.get_bind().dialect.name), {"due_at": now, "taken_at": now}, execution_options={"synchronize_session": False}
    ).all()
    return sorted(taken, key=lambda request: request.id)


def in_lock_order(requests: list[ResetRequest]) -> list[ResetRequest]:
    """A batch in the order every dispatcher resolves its requests: by the account name asked for.

    A batch holds the locks of each account it resolves (the mail cap's row, the pending
    resets) until it commits. Two dispatchers taking the accounts they share in one order
    cannot deadlock; in the order the requests came, one could hold A and wait for B while the
    other held B and waited for A, and PostgreSQL would kill one. Username reminders lock no
    account's rows and go first.
    """
    def account_key(request: ResetRequest) -> str:
        if request.kind == RequestKind.USERNAME_REMINDER:
            return ""
        try:
            return normalise_username(open_sealed(TYPED_USERNAME, request.username_sealed))
        except SealBroken:
            return ""

    return sorted(requests, key=lambda request: (account_key(request), request.id))


def resolve_request(session: DbSession, request: ResetRequest, *, policy: ResetPolicy, now: datetime) -> str:
    """Resolve one taken request (a reset or a username reminder); flushes. Returns what happened."""
    if request.kind == RequestKind.USERNAME_REMINDER:
        return resolve_username_reminder(session, request, base_url=policy.base_url, now=now)
    return resolve_reset_request(session, request, policy=policy, now=now)


def forget_typed_names(session: DbSession, request_ids: list[int]) -> None:
    """Once resolved, what was typed is of no use: the rows keep nothing of it; the caller commits.

    One statement for a batch, after its requests are resolved, rather than a change to each
    request in its savepoint (the unit of work's flush of that change cost more than the
    lookup it preceded). A request whose resolution failed keeps its name for the retry.
    """
    if request_ids:
        session.execute(
            update(ResetRequest).where(ResetRequest.id.in_(request_ids)).values(username_sealed="")
            .execution_options(synchronize_session=False)
        )


def record_request_failure(session: DbSession, request: ResetRequest, error: BaseException, *, now: datetime) -> None:
    """Count a failed attempt at a taken request, whose own work was rolled back: it is due
    again after a backoff, or given up after its last attempt; the caller commits."""
    request.attempts += 1
    request.last_error = f"{type(error).__name__}: {error}"[:ERROR_MAX_LENGTH]
    if request.attempts >= REQUEST_MAX_ATTEMPTS:
        request.status = RequestStatus.FAILED
        request.processed_at = now
        request.username_sealed = ""
    else:
        request.status = RequestStatus.PENDING
        request.processed_at = None
        request.next_attempt_at = now + max(backoff(request.attempts), timedelta(seconds=1))
