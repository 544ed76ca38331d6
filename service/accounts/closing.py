"""Closing an account: it stops at once, its personal data goes, its audit trail stays under a pseudonym."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, select, update

from service.accounts.changes import revoke_pending_resets
from service.events import audit
from service.models import Account, AccountStatus, AuditEvent, EmailChange, OutboxKind, OutboxMessage, OutboxStatus
from service.outbox.delivery import ERASED_RECIPIENT
from service.outbox.mail import render_email
from service.outbox.queue import queue_email
from service.platform.database import DbSession
from service.platform.i18n import current_language
from service.platform.text import normalise_email

PSEUDONYM_PREFIX = "closed-"
# Personal data an account may hold: erased on closing (columns other work may add included).
ERASED_COLUMNS = ("email", "email_key", "password_hash", "full_name", "phone")
# Typed identifiers an event's details may carry, replaced by the pseudonym or dropped.
IDENTIFYING_DETAILS = ("username", "email", "old_email", "new_email", "sent_to")


def new_pseudonym() -> str:
    """The name a closed account's row keeps: random, so it tells nothing about the customer."""
    return PSEUDONYM_PREFIX + secrets.token_hex(5)


def close_account(
    session: DbSession,
    account: Account,
    *,
    actor: str,
    ip: str | None,
    now: datetime,
    details: dict[str, Any] | None = None,
) -> str:
    """Close an account; flushes, the caller commits. Returns the pseudonym it now goes by.

    Sign-in and resets stop at once (the status, and the username no longer names it); pending
    resets are revoked and its queued mail dropped; email, name, phone and password hash are
    erased. Its audit events stay, linked to the same row under the pseudonym, so counts and
    agents' actions remain auditable. The old username is free to be taken again at once.
    `details` (an agent's verification, note and ticket) go into the `account.closed` event.
    """
    address, language = account.email, account.language
    revoke_pending_resets(session, account, now)
    session.execute(
        delete(OutboxMessage)
        .where(
            OutboxMessage.account_id == account.id,
            OutboxMessage.kind == OutboxKind.EMAIL,
            OutboxMessage.status.in_((OutboxStatus.PENDING, OutboxStatus.SENDING)),
        )
        .execution_options(synchronize_session=False)
    )
    if account.email_key:
        _drop_queued_reminders(session, account.email_key)
    # The addresses it was asked to change to, confirmed or not: a link still out dies with them.
    session.execute(delete(EmailChange).where(EmailChange.account_id == account.id))
    # Envelopes of mail already sent or failed keep no address either, nor their last error
    # (older versions wrote a refusal's text with the recipient in it).
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.account_id == account.id, OutboxMessage.kind == OutboxKind.EMAIL)
        .values(recipient=ERASED_RECIPIENT, last_error=None)
        .execution_options(synchronize_session=False)
    )
    # Recorded before the rename: the website's webhook names the account it knew.
    audit.record_event(session, "account.closed", actor=actor, ip=ip, now=now, account=account, details=details)
    pseudonym = new_pseudonym()
    account.username = pseudonym
    account.username_key = pseudonym
    account.status = AccountStatus.CLOSED
    account.must_change_password = False
    account.language = None
    for column in ERASED_COLUMNS:
        setattr(account, column, None)
    account.refresh_search_columns()
    session.flush()
    _pseudonymise_events(session, account.id, pseudonym)
    if address:
        notice = render_email(
            "account_closed", _l("Your account was closed"), language=language or current_language(), now=now,
        )
        queue_email(session, address, notice, account_id=account.id, now=now)
    return pseudonym


def _drop_queued_reminders(session: DbSession, email_key: str) -> None:
    """Drop the username reminders still queued for the closed account's address.

    A reminder belongs to no account (it lists every one on the address), so dropping the
    account's own mail left it: it went out after the closing, naming the closed account, and
    kept the erased address until then. Another account on the same address loses its reminder
    too; its owner can ask again.
    """
    queued = session.execute(
        select(OutboxMessage.id, OutboxMessage.recipient).where(
            OutboxMessage.account_id.is_(None),
            OutboxMessage.kind == OutboxKind.EMAIL,
            OutboxMessage.status.in_((OutboxStatus.PENDING, OutboxStatus.SENDING)),
        )
    ).all()
    to_this_address = [message_id for message_id, recipient in queued if normalise_email(recipient) == email_key]
    if to_this_address:
        session.execute(
            delete(OutboxMessage).where(OutboxMessage.id.in_(to_this_address)).execution_options(synchronize_session=False)
        )


def _pseudonymise_events(session: DbSession, account_id: int, pseudonym: str) -> None:
    events = session.scalars(select(AuditEvent).where(AuditEvent.account_id == account_id))
    for event in events:
        details = dict(event.details or {})
        touched = False
        for key in IDENTIFYING_DETAILS:
            if key in details:
                details[key] = pseudonym if key == "username" else None
                touched = True
        if touched:
            event.details = details
