"""What a support agent may do to a customer's account, each action audited.

Agents act through the support API (with an `agent` key) or the console (signed in); both
call these functions with the actor's name. Nothing here returns a token, a temporary
password or a hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from . import audit
from .accounts import find_account
from .counters import count
from .errors import AccountNotFound, NoEmailOnFile, RateLimited, ValidationFailed
from .models import Account, AuditEvent, PasswordReset
from .resets import IssuedReset, issue_reset
from .throttle import account_throttle_key, sign_in_throttle
from .usernames import is_storable, normalise_email, normalise_username

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
    session: Session, query: str, *, actor: str, ip: str | None, page: int = 1, per_page: int = 20
) -> Page:
    """Accounts whose username starts with `query`, or whose email starts with it; commits the audit."""
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
    audit.record_event(session, "support.searched", actor=actor, ip=ip, details={"query": query})
    session.commit()
    return Page(items=list(rows[:per_page]), page=page, per_page=per_page, has_more=len(rows) > per_page)


def require_account(session: Session, username: str) -> Account:
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
        "created_at": account.created_at.isoformat(),
    }


def pending_resets(session: Session, account: Account, now: datetime) -> list[PasswordReset]:
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
    session: Session, username: str, *, actor: str, ip: str | None, now: datetime
) -> dict[str, Any]:
    """What an agent sees of an account; records that they looked, and commits."""
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
    audit.record_event(session, "support.viewed", actor=actor, ip=ip, account=account)
    session.commit()
    return overview


def resets_sent_in_last_hour(session: Session, actor: str, now: datetime) -> tuple[int, datetime | None]:
    """How many resets this actor issued in the past hour, and when the oldest of them was."""
    count_sent, oldest = session.execute(
        select(func.count(), func.min(AuditEvent.at)).where(
            AuditEvent.type == "reset.issued",
            AuditEvent.actor == actor,
            AuditEvent.at > now - timedelta(hours=1),
        )
    ).one()
    return count_sent, oldest


def send_reset(
    session: Session,
    username: str,
    method: str,
    *,
    actor: str,
    ip: str | None,
    now: datetime,
    note: str | None = None,
    ticket: str | None = None,
) -> IssuedReset:
    """Send a reset for a customer on the phone, within the agent's hourly quota; commits."""
    quota = current_app.config["AGENT_RESETS_PER_HOUR"]
    sent, oldest = resets_sent_in_last_hour(session, actor, now)
    if sent >= quota:
        # The quota frees up when the oldest counted reset is an hour old.
        retry_after = (oldest + timedelta(hours=1) - now).total_seconds() if oldest else 3600
        raise RateLimited(
            _("You have sent %(quota)d resets in the past hour, the most allowed. Ask a supervisor.", quota=quota),
            retry_after=int(retry_after) + 1,
        )
    account = require_account(session, username)
    if not account.email:
        raise NoEmailOnFile(_("The account has no email address: confirm one with the customer first."))
    details = {key: value for key, value in (("note", note), ("ticket", ticket)) if value}
    audit.record_event(
        session, "reset.requested", actor=actor, ip=ip, account=account,
        details={"method": method, "outcome": "issued", **details},
    )
    issued = issue_reset(session, account, method, requested_by=actor, ip=ip, now=now, details=details)
    session.commit()
    count("resets", method, "agent")
    return issued


def unlock_account(
    session: Session,
    username: str,
    *,
    actor: str,
    ip: str | None,
    note: str | None = None,
    ticket: str | None = None,
) -> Account:
    """End a sign-in throttle early, as a customer on the phone asks; commits the audit."""
    account = require_account(session, username)
    sign_in_throttle().unlock(account_throttle_key(account.username_key))
    details = {key: value for key, value in (("note", note), ("ticket", ticket)) if value}
    audit.record_event(session, "account.unlocked", actor=actor, ip=ip, account=account, details=details)
    session.commit()
    return account


def account_events(session: Session, username: str, *, page: int = 1, per_page: int = 50) -> Page:
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

