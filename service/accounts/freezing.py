"""Freezing an account: no sign-in and no reset mail until an agent unfreezes it."""

from __future__ import annotations

from datetime import datetime

from service.accounts.changes import revoke_pending_resets
from service.events import audit
from service.models import Account
from service.platform.database import DbSession

REASON_MAX_LENGTH = 200


def freeze_account(
    session: DbSession,
    account: Account,
    *,
    reason: str,
    actor: str,
    ip: str | None,
    now: datetime,
    details: dict[str, str] | None = None,
) -> bool:
    """Freeze the account and end its pending resets; the caller commits. False if it was frozen already."""
    if account.is_frozen:
        return False
    account.frozen_at = now
    account.frozen_reason = reason[:REASON_MAX_LENGTH]
    revoke_pending_resets(session, account, now)
    audit.record_event(
        session, "account.frozen", actor=actor, ip=ip, now=now, account=account,
        details={"reason": reason, **(details or {})},
    )
    return True


def unfreeze_account(
    session: DbSession, account: Account, *, actor: str, ip: str | None, now: datetime, details: dict[str, str] | None = None
) -> bool:
    """Lift a freeze; the caller commits. False if the account was not frozen."""
    if not account.is_frozen:
        return False
    account.frozen_at = None
    account.frozen_reason = None
    audit.record_event(session, "account.unfrozen", actor=actor, ip=ip, now=now, account=account, details=details)
    return True
