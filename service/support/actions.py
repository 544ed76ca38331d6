"""What a support agent may do to a customer's account, each action audited.

Agents act through the support API (with an `agent` key) or the console (signed in); both
call these functions with the actor's name, and commit what they record. Nothing here
returns a token, a temporary password or a hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import or_, select

from service.accounts.records import find_account
from service.accounts.throttle import account_throttle_key, sign_in_throttle
from service.events import audit
from service.models import Account, AuditEvent, PasswordReset
from service.platform.counters import count
from service.platform.database import DbSession
from service.platform.errors import AccountNotFound, NoEmailOnFile, ValidationFailed
from service.platform.text import is_storable, normalise_email, normalise_username
from service.resets.issuing import IssuedReset, issue_reset
from service.resets.policy import ResetPolicy
from service.support.quotas import take_reset_from_quota

PAGE_SIZE_MAX = 50
PAGE_MAX = 10_000  # no one reads that far; larger offsets would overflow the database's integer
QUERY_MAX_LENGTH = 254


@dataclass(frozen=True)
class Page:
    """One page of results, and whether another follows."""

    items: list[Any]
    page: int
    per_page: int
    has_more: bool


def page_bounds(page: int, per_page: int) -> tuple[int, int]:
    """A page number from 1 to 10,000 and a page size from 1 to 50, whatever was asked."""
    return min(max(1, page), PAGE_MAX), min(max(1, per_page), PAGE_SIZE_MAX)


def _like_prefix(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def search_accounts(
    session: DbSession, query: str, *, actor: str, ip: str | None, now: datetime, page: int = 1, per_page: int = 20
) -> Page:
    """Accounts whose username starts with `query`, or whose email starts with it; audited."""
    query = query.strip()
    if not query or len(query) > QUERY_MAX_LENGTH or not is_storable(query):
        raise ValidationFailed(f"Search with 1 to {QUERY_MAX_LENGTH} characters of a username or email.")
    page, per_page = page_bounds(page, per_page)
    rows = session.scalars(
        select(Account)
        .where(
            or_(
                Account.username_key.like(_like_prefix(normalise_username(query)), escape="\\"),
                Account.email_key.like(_like_prefix(normalise_email(query)), escape="\\"),
            )
        )
        .order_by(Account.username_key)
        .offset((page - 1) * per_page)
        .limit(per_page + 1)
    ).all()
    audit.record_event(session, "support.searched", actor=actor, ip=ip, now=now, details={"query": query})
    return Page(items=list(rows[:per_page]), page=page, per_page=per_page, has_more=len(rows) > per_page)


def require_account(session: DbSession, username: str) -> Account:
    """The account, or AccountNotFound (agents may know an account exists)."""
    account = find_account(session, username)
    if account is None:
        raise AccountNotFound(_("No account named %(username)s.", username=repr(username)))
    return account


def account_summary(account: Account) -> dict[str, Any]:
    """One line of a search result."""
    return {
        "username": account.username,
        "email": account.email,
        "status": account.status,
        "frozen": account.is_frozen,
        "frozen_reason": account.frozen_reason,
        "full_name": account.full_name,
        "phone": account.phone,
        "created_at": account.created_at.isoformat(),
    }


def pending_resets(session: DbSession, account: Account, now: datetime) -> list[PasswordReset]:
    """The account's resets that could still be used."""
    return list(
        session.scalars(
            select(PasswordReset)
            .where(PasswordReset.account_id == account.id, PasswordReset.usable_at(now))
            .order_by(PasswordReset.id.desc())
        )
    )


def is_locked(account: Account) -> bool:
    """Whether sign-in is throttled for the account now."""
    return sign_in_throttle().is_locked(account_throttle_key(account.username_key))


def account_overview(
    session: DbSession, username: str, *, actor: str, ip: str | None, now: datetime
) -> dict[str, Any]:
    """What an agent sees of an account; records that they looked."""
    account = require_account(session, username)
    overview = {
        **account_summary(account),
        "locked": is_locked(account),
        "must_change_password": account.must_change_password,
        "password_changed_at": (
            account.password_changed_at.isoformat() if account.password_changed_at else None
        ),
        "pending_resets": [
            {
                "method": reset.method,
                "requested_by": reset.requested_by,
                "created_at": reset.created_at.isoformat(),
                "expires_at": reset.expires_at.isoformat(),
            }
            for reset in pending_resets(session, account, now)
        ],
    }
    audit.record_event(session, "support.viewed", actor=actor, ip=ip, now=now, account=account)
    return overview


def send_reset(
    session: DbSession,
    username: str,
    method: str,
    *,
    policy: ResetPolicy,
    quota: int,
    actor: str,
    ip: str | None,
    now: datetime,
    note: str | None = None,
    ticket: str | None = None,
) -> IssuedReset:
    """Send a reset for a customer on the phone, within the agent's hourly quota; flushes."""
    take_reset_from_quota(session, actor, quota=quota, now=now)
    account = require_account(session, username)
    if not account.email:
        raise NoEmailOnFile(_("The account has no email address: confirm one with the customer first."))
    details = {key: value for key, value in (("note", note), ("ticket", ticket)) if value}
    audit.record_event(
        session, "reset.requested", actor=actor, ip=ip, now=now, account=account,
        details={"method": method, "outcome": "issued", **details},
    )
    issued = issue_reset(
        session, account, method, policy=policy, requested_by=actor, ip=ip, now=now, details=details
    )
    count("resets", method, "agent")
    return issued


def unlock_account(
    session: DbSession,
    username: str,
    *,
    actor: str,
    ip: str | None,
    now: datetime,
    note: str | None = None,
    ticket: str | None = None,
) -> Account:
    """End a sign-in throttle early, as a customer on the phone asks; audited."""
    account = require_account(session, username)
    sign_in_throttle().unlock(account_throttle_key(account.username_key))
    details = {key: value for key, value in (("note", note), ("ticket", ticket)) if value}
    audit.record_event(session, "account.unlocked", actor=actor, ip=ip, now=now, account=account, details=details)
    return account


def account_events(session: DbSession, username: str, *, page: int = 1, per_page: int = 50) -> Page:
    """The account's audit trail, newest first."""
    account = require_account(session, username)
    page, per_page = page_bounds(page, per_page)
    rows = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.account_id == account.id)
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .offset((page - 1) * per_page)
        .limit(per_page + 1)
    ).all()
    return Page(items=list(rows[:per_page]), page=page, per_page=per_page, has_more=len(rows) > per_page)


def event_json(event: AuditEvent) -> dict[str, Any]:
    """An audit event as agents and exports see it."""
    return {
        "at": event.at.isoformat(),
        "type": event.type,
        "actor": event.actor,
        "ip": event.ip,
        "details": event.details,
    }

