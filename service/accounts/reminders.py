"""Forgotten usernames: a request records the typed address sealed; the dispatcher later mails
that address the usernames of every account on it."""

from __future__ import annotations

from datetime import datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import insert, select

from service.events import audit
from service.models import Account, AccountStatus, RequestKind, RequestStatus, ResetRequest
from service.outbox.mail import render_email
from service.outbox.queue import queue_email
from service.platform.database import DbSession, note_queued_work
from service.platform.sealing import TYPED_EMAIL, SealBroken, email_hashes, open_sealed, seal
from service.platform.text import EMAIL_MAX_LENGTH, is_storable, normalise_email

RECORD_REMINDER_REQUEST = insert(ResetRequest.__table__)  # type: ignore[arg-type]
# A family shares an address, not a hundred people: a longer list is cut, the mail stays readable.
MAX_USERNAMES_LISTED = 20


def request_username_reminder(session: DbSession, email: str, *, ip: str | None, now: datetime, language: str | None) -> None:
    """Record a reminder request, the typed address sealed; the caller commits.

    As for a reset request, the request path does the same for any address: no lookup, one
    sealing, one row; the dispatcher resolves it (`resolve_username_reminder`).
    """
    session.execute(
        RECORD_REMINDER_REQUEST,
        {
            "kind": RequestKind.USERNAME_REMINDER, "username_sealed": seal(TYPED_EMAIL, email[:EMAIL_MAX_LENGTH]),
            "ip": ip, "language": language, "requested_at": now, "status": RequestStatus.PENDING, "attempts": 0,
        },
    )
    note_queued_work(session)


def accounts_on_address(session: DbSession, email: str) -> list[Account]:
    """Every active, unfrozen account whose email is `email` (in any spelling), by username."""
    key = normalise_email(email)
    if not key or not is_storable(key):
        key = "\x01"  # matches nothing, yet the query runs as for any address
    return list(
        session.scalars(
            select(Account)
            .where(Account.email_key == key, Account.status == AccountStatus.ACTIVE, Account.frozen_at.is_(None))
            .order_by(Account.username_key)
            .limit(MAX_USERNAMES_LISTED)
        )
    )


def resolve_username_reminder(session: DbSession, request: ResetRequest, *, base_url: str, now: datetime) -> str:
    """Act on one reminder request; flushes, the caller commits. Returns what happened.

    An address with accounts gets one mail listing their usernames, each with a link that
    fills in the reset box; an unused address gets nothing. The mail is written either way,
    so the dispatcher's work does not depend on the address. The audit event keeps a keyed
    hash of the address, never the address.
    """
    try:
        typed: str | None = open_sealed(TYPED_EMAIL, request.username_sealed)
    except SealBroken:
        typed = None
    accounts = accounts_on_address(session, typed or "")
    language = next((account.language for account in accounts if account.language), None) or request.language
    email = render_email(
        "username_reminder", _l("Your usernames"), language=language, now=now,
        usernames=[account.username for account in accounts] or ["-"],
        reset_url=f"{base_url}/reset-password",
    )
    details: dict[str, str | int] = {"email_hash": email_hashes(typed or "")[0]}
    if typed is None:
        outcome = "unreadable"
    elif not accounts:
        outcome = "no_account"
    else:
        outcome = "sent"
        details["accounts"] = len(accounts)
        recipient = accounts[0].email or typed
        queue_email(session, recipient, email, account_id=None, now=now)
    audit.record_event(
        session, "username.reminder_requested", actor=audit.SELF, ip=request.ip, now=now, account=None,
        details={**details, "outcome": outcome},
    )
    return outcome
