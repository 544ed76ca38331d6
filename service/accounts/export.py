"""What is kept about one account, as one JSON document: for access requests. Never a secret."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from service.models import Account, AuditEvent, OutboxKind, OutboxMessage, PasswordReset
from service.platform.database import DbSession

# Profile columns shown; the password hash, and any key column, never are.
PROFILE_COLUMNS = (
    "username", "email", "full_name", "phone", "status", "language", "must_change_password",
    "created_at", "password_changed_at",
)


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def export_account(session: DbSession, account: Account) -> dict[str, Any]:
    """The profile, every audit event with its details, resets (no secret) and mail envelopes."""
    profile = {column: _plain(getattr(account, column)) for column in PROFILE_COLUMNS if hasattr(account, column)}
    events = [
        {
            "at": event.at.isoformat(), "type": event.type, "actor": event.actor, "ip": event.ip,
            "request_id": event.request_id, "details": event.details,
        }
        for event in session.scalars(
            select(AuditEvent).where(AuditEvent.account_id == account.id).order_by(AuditEvent.at, AuditEvent.id)
        )
    ]
    resets = [
        {
            "method": reset.method, "requested_by": reset.requested_by, "ip": reset.ip,
            "created_at": _plain(reset.created_at), "expires_at": _plain(reset.expires_at),
            "used_at": _plain(reset.used_at), "revoked_at": _plain(reset.revoked_at),
        }
        for reset in session.scalars(
            select(PasswordReset).where(PasswordReset.account_id == account.id).order_by(PasswordReset.id)
        )
    ]
    mail = [
        {
            "recipient": message.recipient, "subject": message.subject, "status": message.status,
            "attempts": message.attempts, "created_at": _plain(message.created_at), "sent_at": _plain(message.sent_at),
        }
        for message in session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.account_id == account.id, OutboxMessage.kind == OutboxKind.EMAIL)
            .order_by(OutboxMessage.id)
        )
    ]
    return {"profile": profile, "events": events, "password_resets": resets, "mail": mail}
