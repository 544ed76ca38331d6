"""What a support agent may do to a customer's account, each action audited.

Agents act through the support API (with an `agent` key) or the console (signed in); both
call these functions with the actor's name, and commit what they record. Nothing here
returns a token, a temporary password or a hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import ColumnElement, or_, select

from service.accounts.closing import close_account
from service.accounts.emailchange import StartedChange, pending_change, start_email_change
from service.accounts.freezing import freeze_account, unfreeze_account
from service.accounts.profile import PHONE_CHARACTERS
from service.accounts.records import find_account
from service.accounts.throttle import account_throttle_key, sign_in_throttle
from service.events import audit
from service.models import (
    Account,
    AccountStatus,
    AuditEvent,
    EmailChange,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    PasswordReset,
)
from service.platform.counters import count
from service.platform.database import DbSession
from service.platform.errors import AccountNotFound, FieldError, NoEmailOnFile, RateLimited, ValidationFailed
from service.platform.sealing import username_hash
from service.platform.text import digits_of, is_storable, normalise_username, searchable
from service.resets.issuing import IssuedReset, issue_reset
from service.resets.mailcap import seconds_until_next_mail, take_reset_mail
from service.resets.policy import ResetPolicy
from service.support.quotas import take_reset_from_quota
from service.support.verification import action_details, checked_verification

# What an agent may note about an action: the ticket is kept with the reset (and named in the
# customer's notice), the note in the audit trail.
TICKET_MAX_LENGTH = 100
NOTE_MAX_LENGTH = 200
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


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# Below this many characters a "contains" match finds too much to be useful, and a trigram
# index cannot help; such short queries match the start of a username or email instead.
CONTAINS_MIN_LENGTH = 3


def search_condition(query: str) -> ColumnElement[bool]:
    """Which accounts a support query finds: any part of a username, email or full name
    (case and accents ignored), or of a phone number's digits when the query looks like one."""
    text = searchable(query)
    if len(text) < CONTAINS_MIN_LENGTH:
        prefix = _escape_like(normalise_username(query)) + "%"
        return or_(
            Account.username_key.like(prefix, escape="\\"),
            Account.email_key.like(prefix, escape="\\"),
        )
    conditions = [Account.search_text.like(f"%{_escape_like(text)}%", escape="\\")]
    digits = digits_of(query)
    if len(digits) >= CONTAINS_MIN_LENGTH and set(query.strip()) <= PHONE_CHARACTERS:
        conditions.append(Account.phone_digits.like(f"%{digits}%"))
    return or_(*conditions)


def search_accounts(
    session: DbSession, query: str, *, actor: str, ip: str | None, now: datetime, page: int = 1, per_page: int = 20
) -> Page:
    """Accounts whose username, email, full name or phone holds `query` (see `search_condition`); audited."""
    query = query.strip()
    if not query or len(query) > QUERY_MAX_LENGTH or not is_storable(query):
        raise ValidationFailed(f"Search with 1 to {QUERY_MAX_LENGTH} characters of a username, email, name or phone number.")
    page, per_page = page_bounds(page, per_page)
    rows = session.scalars(
        select(Account)
        .where(search_condition(query))
        .order_by(Account.username_key)
        .offset((page - 1) * per_page)
        .limit(per_page + 1)
    ).all()
    # Who searched, and for what as a keyed hash: an auditor who has a name, an address or a
    # number can check whether an agent looked for it; the trail itself keeps none of them,
    # and so keeps nothing of a customer whose account is later closed.
    audit.record_event(
        session, "support.searched", actor=actor, ip=ip, now=now, details={"query_hash": username_hash(query)}
    )
    return Page(items=list(rows[:per_page]), page=page, per_page=per_page, has_more=len(rows) > per_page)


def require_account(session: DbSession, username: str) -> Account:
    """The account, or AccountNotFound (agents may know an account exists): closed ones too,
    whose trail stays open to view."""
    account = find_account(session, username)
    if account is None:
        raise AccountNotFound(_("No account named %(username)s.", username=repr(username)))
    return account


def require_open_account(session: DbSession, username: str) -> Account:
    """The account, if anything may still be done to it: a closed account is gone for every
    action (a reset, an email, a freeze...), and its erased data must not come back."""
    account = require_account(session, username)
    if account.status == AccountStatus.CLOSED:
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


def lock_state(account: Account, now: datetime) -> dict[str, Any]:
    """Whether sign-in is locked, after how many wrong passwords, and when it lifts by itself."""
    throttle = sign_in_throttle()
    key = account_throttle_key(account.username_key)
    locked = throttle.is_locked(key)
    lifts_at = now + timedelta(seconds=throttle.seconds_until_unlocked(key)) if locked else None
    return {
        "locked": locked,
        "failures": throttle.failures(key),
        "max_failures": int(throttle.item.amount),
        "lifts_at": lifts_at.isoformat() if lifts_at else None,
    }


def mail_state(message: OutboxMessage) -> str:
    """Where a mail stands, in the words an agent tells a caller: queued, sending, retrying, sent, failed."""
    if message.status == OutboxStatus.PENDING:
        return "retrying" if message.attempts else "queued"
    return str(message.status)


def recent_mail(session: DbSession, account: Account, *, limit: int = 10) -> list[dict[str, Any]]:
    """The account's latest emails and whether each left ("I never got the email")."""
    messages = session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.account_id == account.id, OutboxMessage.kind == OutboxKind.EMAIL)
        .order_by(OutboxMessage.id.desc())
        .limit(limit)
    )
    return [
        {
            "subject": message.subject,
            "recipient": message.recipient,
            "state": mail_state(message),
            "attempts": message.attempts,
            "last_error": message.last_error,
            "created_at": message.created_at.isoformat(),
            "sent_at": message.sent_at.isoformat() if message.sent_at else None,
            "next_attempt_at": (
                message.next_attempt_at.isoformat() if message.status == OutboxStatus.PENDING else None
            ),
        }
        for message in messages
    ]


def account_overview(
    session: DbSession, username: str, *, actor: str, ip: str | None, now: datetime
) -> dict[str, Any]:
    """What an agent sees of an account; records that they looked."""
    account = require_account(session, username)
    lock = lock_state(account, now)
    overview = {
        **account_summary(account),
        "locked": lock["locked"],
        "lock": lock,
        "frozen_at": account.frozen_at.isoformat() if account.frozen_at else None,
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
        "pending_email_change": _pending_email_json(pending_change(session, account, now)),
        "recent_mail": recent_mail(session, account),
    }
    audit.record_event(session, "support.viewed", actor=actor, ip=ip, now=now, account=account)
    return overview


def _pending_email_json(change: EmailChange | None) -> dict[str, str] | None:
    if change is None:
        return None
    return {"email": change.new_email, "requested_by": change.requested_by, "expires_at": change.expires_at.isoformat()}


@dataclass(frozen=True)
class AgentAction:
    """Who acts on a customer's account, from where and when, what they noted and how they
    verified the caller: what every agent action records with its audit event."""

    actor: str
    ip: str | None
    now: datetime
    note: str | None = None
    ticket: str | None = None
    verified_by: str | None = None

    @classmethod
    def checked(
        cls,
        *,
        actor: str,
        ip: str | None,
        now: datetime,
        note: str | None = None,
        ticket: str | None = None,
        verified_by: str | None = None,
        require_verification: bool = False,
    ) -> AgentAction:
        """The action, once its verification method is known (and given, where required)."""
        verified = checked_verification(verified_by, required=require_verification)
        return cls(actor=actor, ip=ip, now=now, note=note, ticket=ticket, verified_by=verified)

    def details(self) -> dict[str, str]:
        """What the audit event keeps of the action (never a secret)."""
        return action_details(note=self.note, ticket=self.ticket, verified_by=self.verified_by)


def send_reset(
    session: DbSession, username: str, method: str, action: AgentAction, *, policy: ResetPolicy, quota: int
) -> IssuedReset:
    """Send a reset for a customer on the phone, within the agent's hourly quota and the
    account's hourly cap on reset mails (which counts every mail, whoever asked); flushes."""
    now = action.now
    take_reset_from_quota(session, action.actor, quota=quota, now=now)
    account = require_open_account(session, username)
    if not account.email:
        raise NoEmailOnFile(_("The account has no email address: confirm one with the customer first."))
    if not take_reset_mail(session, account.id, per_hour=policy.mails_per_hour, now=now):
        raise RateLimited(
            _(
                "This account has had %(count)d reset mails in the past hour, the most it may receive. "
                "Ask the customer to use the newest one, or the code in it.",
                count=policy.mails_per_hour,
            ),
            retry_after=seconds_until_next_mail(session, account.id, now=now),
        )
    details = action.details()
    audit.record_event(
        session, "reset.requested", actor=action.actor, ip=action.ip, now=now, account=account,
        details={"method": method, "outcome": "issued", **details},
    )
    issued = issue_reset(
        session, account, method, policy=policy, requested_by=action.actor, ip=action.ip, now=now, details=details
    )
    count("resets", method, "agent")
    return issued


def unlock_account(session: DbSession, username: str, action: AgentAction) -> Account:
    """End a sign-in throttle early, as a customer on the phone asks; audited."""
    account = require_open_account(session, username)
    sign_in_throttle().unlock(account_throttle_key(account.username_key))
    audit.record_event(
        session, "account.unlocked", actor=action.actor, ip=action.ip, now=action.now, account=account,
        details=action.details(),
    )
    return account


def freeze(session: DbSession, username: str, action: AgentAction, *, reason: str) -> bool:
    """Freeze an account (fraud, a caller who says "this wasn't me"); False if it was frozen already."""
    reason = reason.strip()
    if not reason:
        raise ValidationFailed("Say why the account is frozen.", errors=[FieldError("reason", "Give a reason.")])
    account = require_open_account(session, username)
    return freeze_account(
        session, account, reason=reason, actor=action.actor, ip=action.ip, now=action.now, details=action.details()
    )


def close(session: DbSession, username: str, action: AgentAction) -> str:
    """Close an account for a verified caller who asks to leave (the website's closing rule); returns its pseudonym."""
    account = require_open_account(session, username)
    return close_account(
        session, account, actor=action.actor, ip=action.ip, now=action.now, details=action.details()
    )


def unfreeze(session: DbSession, username: str, action: AgentAction) -> bool:
    """Lift a freeze once the owner is confirmed; False if the account was not frozen."""
    account = require_open_account(session, username)
    return unfreeze_account(session, account, actor=action.actor, ip=action.ip, now=action.now, details=action.details())


def change_email(session: DbSession, username: str, new_email: str, action: AgentAction) -> StartedChange:
    """Send a confirmation link to the address the caller gives; it becomes the email once confirmed."""
    account = require_open_account(session, username)
    return start_email_change(
        session, account, new_email, actor=action.actor, ip=action.ip, now=action.now, details=action.details()
    )


# Agents opening the account: audited, but not part of what happened to the customer.
VIEW_EVENTS = ("support.viewed",)


def account_events(
    session: DbSession, username: str, *, page: int = 1, per_page: int = 50, kind: str = "all"
) -> Page:
    """The account's audit trail, newest first: `all`, only the customer's `trail`, or only agents' `views`."""
    account = require_account(session, username)
    page, per_page = page_bounds(page, per_page)
    query = select(AuditEvent).where(AuditEvent.account_id == account.id)
    if kind == "trail":
        query = query.where(AuditEvent.type.not_in(VIEW_EVENTS))
    elif kind == "views":
        query = query.where(AuditEvent.type.in_(VIEW_EVENTS))
    rows = session.scalars(
        query
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

