"""The audit trail: who did what to which account, when, from where. Append-only."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .clock import utcnow
from .models import Account, AuditEvent
from .requestids import current_request_id

SELF = "self"
CLI = "cli"

DETAIL_MAX_LENGTH = 200


def agent_actor(agent_username: str) -> str:
    """The actor name of a support agent signed in to the console."""
    return f"agent:{agent_username}"


def key_actor(key_name: str) -> str:
    """The actor name of an API key."""
    return f"key:{key_name}"


def record_event(
    session: Session,
    event_type: str,
    *,
    actor: str,
    ip: str | None,
    account: Account | None = None,
    account_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an event to the session; the caller's commit writes it with the change it records."""
    clean = {
        key: value[:DETAIL_MAX_LENGTH] if isinstance(value, str) else value
        for key, value in (details or {}).items()
    }
    event = AuditEvent(
        at=utcnow(), type=event_type, actor=actor, ip=ip, request_id=current_request_id(), details=clean
    )
    if account is not None:
        event.account = account
    else:
        event.account_id = account_id
    session.add(event)
    return event


def export_events(
    session: Session, *, since: datetime | None = None, account_id: int | None = None
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
