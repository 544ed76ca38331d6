"""Freezing an account: no sign-in and no reset mail until an agent unfreezes it."""

from __future__ import annotations

from datetime import datetime

from service.accounts.changes import revoke_pending_resets
from service.accounts.emailchange import end_pending_changes
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
    """Freeze the account and end its pending resets and email changes; the caller commits.
    False if it was frozen already.

    Freezing is how an agent stops a change the owner did not ask for: the owner told of an
    email change on its way (`start_email_change`) calls, and its link dies here."""
    if account.is_frozen:
        return False
    account.frozen_at = now
    account.frozen_reason = reason[:REASON_MAX_LENGTH]
    revoke_pending_resets(session, account, now)
    end_pending_changes(session, account, now)
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
