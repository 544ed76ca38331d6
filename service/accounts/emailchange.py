"""An email change an agent starts for a caller: the new address confirms it by a link,
and only then becomes the account's email; the old address is told."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from itsdangerous import BadSignature, SignatureExpired
from sqlalchemy import select, update

from service.accounts.changes import revoke_pending_resets
from service.accounts.profile import set_email, tell_old_address
from service.accounts.usernames import email_problem
from service.events import audit
from service.models import Account, EmailChange
from service.outbox.mail import render_email
from service.outbox.queue import queue_email
from service.platform.config import settings
from service.platform.database import DbSession, rows_changed
from service.platform.errors import TokenExpired, TokenInvalid, TokenUsed, ValidationFailed
from service.platform.i18n import current_language
from service.platform.signing import secret_matches, serializer, sha256_hex
from service.platform.text import mask_email, normalise_email

EMAIL_CHANGE_SALT = "resetdesk.email-change"
EMAIL_CHANGE_LIFETIME = timedelta(days=3)
SECRET_BYTES = 16  # 128 bits
TOKEN_MAX_LENGTH = 512


@dataclass(frozen=True)
class StartedChange:
    """An email change waiting for confirmation, and the masked address it was sent to."""

    change: EmailChange
    sent_to: str


def start_email_change(
    session: DbSession,
    account: Account,
    new_email: str,
    *,
    actor: str,
    ip: str | None,
    now: datetime,
    details: dict[str, str] | None = None,
) -> StartedChange:
    """Send a confirmation link to the new address; earlier unconfirmed changes die. Flushes, the caller commits."""
    new_email = new_email.strip()
    problem = email_problem(new_email)
    if problem is not None:
        raise ValidationFailed(problem.message, errors=[problem])
    end_pending_changes(session, account, now)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    change = EmailChange(
        account=account, new_email=new_email, secret_hash=sha256_hex(secret), requested_by=actor,
        created_at=now, expires_at=now + EMAIL_CHANGE_LIFETIME,
    )
    session.add(change)
    session.flush()
    token = serializer(EMAIL_CHANGE_SALT).dumps({"c": change.id, "s": secret})
    link = f"{settings()['PUBLIC_BASE_URL']}/confirm-email/{token}"
    mail = render_email(
        "email_confirm", _l("Confirm your new email address"),
        language=account.language or current_language(), now=now,
        account=account, link=link, expires_at=change.expires_at,
    )
    queue_email(session, new_email, mail, account_id=account.id, now=now)
    if account.email and normalise_email(account.email) != normalise_email(new_email):
        # The owner hears of it before it happens, at the address that still works: a caller who
        # talked an agent into the change has until the link is used, and the customer can call.
        notice = render_email(
            "email_changed", _l("Your email address is about to change"),
            language=account.language or current_language(), now=now,
            account=account, changed_at=now, has_new_email=True, pending=True,
        )
        queue_email(session, account.email, notice, account_id=account.id, now=now)
    sent_to = mask_email(new_email)
    audit.record_event(
        session, "account.email_change_requested", actor=actor, ip=ip, now=now, account=account,
        details={"sent_to": sent_to, **(details or {})},
    )
    return StartedChange(change=change, sent_to=sent_to)


def end_pending_changes(session: DbSession, account: Account, now: datetime) -> None:
    """Revoke the account's unconfirmed email changes; the caller commits."""
    session.execute(
        update(EmailChange)
        .where(EmailChange.account_id == account.id, EmailChange.confirmed_at.is_(None), EmailChange.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )


def pending_change(session: DbSession, account: Account, now: datetime) -> EmailChange | None:
    """The account's email change still waiting for its confirmation, if any."""
    return session.scalar(
        select(EmailChange)
        .where(
            EmailChange.account_id == account.id, EmailChange.confirmed_at.is_(None),
            EmailChange.revoked_at.is_(None), EmailChange.expires_at > now,
        )
        .order_by(EmailChange.id.desc())
        .limit(1)
    )


def check_email_change(session: DbSession, token: str, now: datetime) -> EmailChange:
    """The change a confirmation link names, if it can still be confirmed; else TokenInvalid/Expired/Used."""
    invalid = TokenInvalid(_("This confirmation link is not valid. Ask customer service to send a new one."))
    if len(token) > TOKEN_MAX_LENGTH:
        raise invalid
    try:
        payload = serializer(EMAIL_CHANGE_SALT).loads(token, max_age=int(EMAIL_CHANGE_LIFETIME.total_seconds()))
    except SignatureExpired:
        raise TokenExpired(_("This confirmation link has expired. Ask customer service to send a new one.")) from None
    except BadSignature:
        raise invalid from None
    if not isinstance(payload, dict) or not isinstance(payload.get("c"), int) or not isinstance(payload.get("s"), str):
        raise invalid
    change = session.get(EmailChange, payload["c"])
    if change is None or not secret_matches(payload["s"], change.secret_hash):
        raise invalid
    if change.confirmed_at is not None or change.revoked_at is not None:
        raise TokenUsed(_("This confirmation link has already been used or replaced by a newer one."))
    if change.expires_at <= now:
        raise TokenExpired(_("This confirmation link has expired. Ask customer service to send a new one."))
    return change


def confirm_email_change(session: DbSession, token: str, *, ip: str | None, now: datetime) -> Account:
    """Make the new address the account's email, once; tell the old one. The caller commits."""
    change = check_email_change(session, token, now)
    # One conditional UPDATE: of two simultaneous confirmations, only one changes anything.
    claimed = session.execute(
        update(EmailChange)
        .where(EmailChange.id == change.id, EmailChange.confirmed_at.is_(None), EmailChange.revoked_at.is_(None))
        .values(confirmed_at=now)
        .execution_options(synchronize_session=False)
    )
    if rows_changed(claimed) != 1:
        raise TokenUsed(_("This confirmation link has already been used or replaced by a newer one."))
    account = change.account
    old_email = account.email
    set_email(account, change.new_email)
    # As for any new email: what was mailed to the old address no longer opens the account.
    revoke_pending_resets(session, account, now)
    audit.record_event(
        session, "account.email_changed", actor=audit.SELF, ip=ip, now=now, account=account,
        details={"via": "confirmation", "requested_by": change.requested_by},
    )
    if old_email and old_email != change.new_email:
        tell_old_address(session, account, old_email, now=now)
    session.flush()
    return account
