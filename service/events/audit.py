"""The audit trail: who did what to which account, when, from where. Append-only.

`record_event` is the one call that records a domain event: the audit row and, for the event
types the website subscribed to, a webhook per URL, all in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select

from service.events.webhooks import queue_webhooks
from service.models import Account, AuditEvent
from service.platform.config import settings
from service.platform.database import DbSession
from service.platform.requestids import current_request_id

SELF = "self"
CLI = "cli"

DETAIL_MAX_LENGTH = 200
RECORD_EVENT = insert(AuditEvent.__table__)  # type: ignore[arg-type]


def agent_actor(agent_username: str) -> str:
    """The actor name of a support agent signed in to the console."""
    return f"agent:{agent_username}"


def key_actor(key_name: str) -> str:
    """The actor name of an API key."""
    return f"key:{key_name}"


@dataclass(frozen=True)
class Occurrence:
    """One of several events of a type recorded together: when, for which account, with what."""

    at: datetime
    account_id: int | None
    details: dict[str, Any]


def _clean(details: dict[str, Any] | None) -> dict[str, Any]:
    return {
        key: value[:DETAIL_MAX_LENGTH] if isinstance(value, str) else value
        for key, value in (details or {}).items()
    }


def record_event(
    session: DbSession,
    event_type: str,
    *,
    actor: str,
    ip: str | None,
    now: datetime,
    account: Account | None = None,
    account_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Record a domain event in the caller's transaction: its audit row, and its webhooks."""
    clean = _clean(details)
    config = settings()
    subscribed = bool(config["WEBHOOK_URLS"]) and event_type in config["WEBHOOK_EVENTS"]
    linked_id = account.id if account is not None else account_id
    if not subscribed and (account is None or linked_id is not None):
        # No webhook to build from the event, and no account waiting for its id: one INSERT,
        # without the unit of work's bookkeeping for an object nobody reads back (a third of
        # the CPU a delivered message cost).
        session.execute(
            RECORD_EVENT,
            {"at": now, "type": event_type, "actor": actor, "ip": ip, "request_id": current_request_id(),
             "details": clean, "account_id": linked_id},
        )
        return
    event = AuditEvent(
        at=now, type=event_type, actor=actor, ip=ip, request_id=current_request_id(), details=clean
    )
    if account is not None:
        event.account = account
    elif account_id is not None and subscribed:
        # The webhook names the account: load it here, where one is sent, and only here.
        event.account = session.get(Account, account_id)
    else:
        event.account_id = account_id
    session.add(event)
    if subscribed:
        queue_webhooks(session, event, urls=config["WEBHOOK_URLS"], now=now)


def record_events(
    session: DbSession, event_type: str, occurrences: Sequence[Occurrence], *, actor: str, ip: str | None
) -> None:
    """Record several events of one type in the caller's transaction: the same rows (and
    webhooks) as one `record_event` call each, the rows written by one statement.

    One INSERT of many rows costs the database about what one row does: a worker that records
    an event per message it sends records a group of them at once.
    """
    if not occurrences:
        return
    config = settings()
    if config["WEBHOOK_URLS"] and event_type in config["WEBHOOK_EVENTS"]:
        # Each event becomes webhooks built from its own row: one at a time, as record_event does.
        for occurrence in occurrences:
            record_event(
                session, event_type, actor=actor, ip=ip, now=occurrence.at, account_id=occurrence.account_id,
                details=occurrence.details,
            )
        return
    request_id = current_request_id()
    session.execute(
        RECORD_EVENT,
        [
            {"at": occurrence.at, "type": event_type, "actor": actor, "ip": ip, "request_id": request_id,
             "details": _clean(occurrence.details), "account_id": occurrence.account_id}
            for occurrence in occurrences
        ],
    )


def export_events(
    session: DbSession, *, since: datetime | None = None, account_id: int | None = None
) -> Iterator[dict[str, Any]]:
    """Events oldest first, as plain dicts, streamed in batches so any size of trail fits."""
    query = select(AuditEvent).order_by(AuditEvent.at, AuditEvent.id)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if account_id is not None:
        query = query.where(AuditEvent.account_id == account_id)
    for event in session.scalars(query.execution_options(yield_per=500)):
        yield {
            "id": event.id,
            "at": event.at.isoformat(),
            "type": event.type,
            "account": event.account.username if event.account else None,
            "actor": event.actor,
            "ip": event.ip,
            "request_id": event.request_id,
            "details": event.details,
        }
