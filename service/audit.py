"""The audit trail: who did what to which account, when, from where. Append-only."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from .clock import utcnow
from .models import Account, AuditEvent

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
    event = AuditEvent(at=utcnow(), type=event_type, actor=actor, ip=ip, details=clean)
    if account is not None:
        event.account = account
    else:
        event.account_id = account_id
    session.add(event)
    return event
