"""What the website is told: the payload of each event, queued as one webhook per URL.

The service does not own the website's sessions; a `password.changed` webhook lets the
website end them. Signing and posting happen at delivery (`service.outbox.webhooks`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from service.models import AuditEvent, OutboxKind, OutboxMessage
from service.platform.database import DbSession, note_queued_work
from service.platform.sealing import QUEUED_MAIL, seal


def event_payload(audit_event: AuditEvent, now: datetime) -> dict[str, Any]:
    """The JSON a webhook carries for an audit event."""
    account = audit_event.account
    return {
        "id": "evt_" + secrets.token_urlsafe(16),
        "type": audit_event.type,
        "timestamp": (audit_event.at or now).isoformat(),
        "data": {
            "username": account.username if account else None,
            "password_changed_at": (
                account.password_changed_at.isoformat() if account and account.password_changed_at else None
            ),
            "actor": audit_event.actor,
            "details": audit_event.details,
        },
    }


def queue_webhooks(session: DbSession, audit_event: AuditEvent, *, urls: Iterable[str], now: datetime) -> None:
    """Queue the event for each URL in the caller's transaction.

    Events with no account (a reset asked for a missing username) are not sent. The body is
    sealed while queued, like an email's: it names a customer and what happened to them.
    """
    account = audit_event.account
    if account is None:
        return
    body = json.dumps(event_payload(audit_event, now), separators=(",", ":"))
    for url in urls:
        session.add(
            OutboxMessage(
                kind=OutboxKind.WEBHOOK, recipient=url, subject=audit_event.type, text_body=seal(QUEUED_MAIL, body),
                account=account, created_at=now, next_attempt_at=now,
            )
        )
    note_queued_work(session)
