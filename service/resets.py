"""The reset rules: asking for a reset, issuing a link or temporary password, confirming a link."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from . import audit
from .accounts import find_account, replace_password_hash, revoke_pending_resets
from .clock import utcnow
from .counters import count
from .emails import RenderedEmail, render_email
from .errors import NoEmailOnFile, TokenExpired, TokenInvalid, TokenUsed
from .models import Account, PasswordReset, ResetRequest
from .outbox import queue_email
from .passwords import check_new_password, hash_password
from .tokens import hash_secret, make_link_token, new_secret, read_link_token, secret_matches
from .usernames import USERNAME_MAX_LENGTH

# No 0/O, 1/l/I: a temporary password is read off a screen and typed by hand.
TEMPORARY_PASSWORD_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789"
TEMPORARY_PASSWORD_LENGTH = 14  # about 80 bits


RECORD_RESET_REQUEST = insert(ResetRequest.__table__)


def generate_temporary_password() -> str:
    """A random temporary password from an alphabet without look-alikes."""
    return "".join(secrets.choice(TEMPORARY_PASSWORD_ALPHABET) for _ in range(TEMPORARY_PASSWORD_LENGTH))


def mask_email(email: str) -> str:
    """`jane@example.com` becomes `j***@example.com`: enough for an agent to confirm it."""
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}***@{domain}"


def request_reset(
    session: Session, username: str, *, ip: str | None, now: datetime, language: str | None = None
) -> None:
    """Record a self-service request as typed, and commit.

    This is all the request path does, for every username alike: no lookup, no branch. The
    dispatcher resolves the request later (`process_reset_requests`), so neither the answer nor
    its time can tell an existing account from a missing one.
    """
    # One prepared INSERT: the request path needs no object back, and skipping the ORM's unit
    # of work and per-call statement building makes it several times cheaper.
    session.execute(
        RECORD_RESET_REQUEST,
        {"username": username[:USERNAME_MAX_LENGTH], "ip": ip, "language": language, "requested_at": now, "status": "pending"},
    )
    session.commit()
    count("resets", current_app.config["RESET_METHOD"], "self")


@dataclass(frozen=True)
class IssuedReset:
    """A reset just issued, and where its mail is going."""

    reset: PasswordReset
    sent_to: str


def issue_reset(
    session: Session,
    account: Account,
    method: str,
    *,
    requested_by: str,
    ip: str | None,
    now: datetime,
    details: dict[str, str] | None = None,
    language: str | None = None,
) -> IssuedReset:
    """Issue a link or temporary password and queue its mail; the caller commits both together.

    Older pending resets of the account are revoked: only the newest one works. The mail is in
    the account's language, else in `language` (that of the page that asked).
    """
    if not account.email:
        raise NoEmailOnFile(_("The account has no email address to send a reset to."))
    revoke_pending_resets(session, account, now)
    secret, secret_hash = new_reset_secret(method)
    reset = PasswordReset(
        account_id=account.id, method=method, requested_by=requested_by, ip=ip,
        secret_hash=secret_hash, created_at=now, expires_at=now + reset_lifetime(method),
    )
    session.add(reset)
    session.flush()  # the link token carries the reset's id
    email = compose_reset_email(account, method, reset.id, secret, reset.expires_at, account.language or language)
    queue_email(session, account.email, email, account_id=account.id, now=now)
    audit.record_event(
        session, "reset.issued", actor=requested_by, ip=ip, account=account,
        details={"method": method, "expires_at": reset.expires_at.isoformat(), **(details or {})},
    )
    return IssuedReset(reset=reset, sent_to=mask_email(account.email))


def reset_lifetime(method: str) -> timedelta:
    """How long a link or a temporary password lives."""
    setting = "RESET_TOKEN_MAX_AGE" if method == "link" else "TEMPORARY_PASSWORD_MAX_AGE"
    return timedelta(seconds=current_app.config[setting])


def new_reset_secret(method: str) -> tuple[str, str]:
    """A fresh secret (a link's random part, or a temporary password) and the hash kept of it."""
    if method == "link":
        secret = new_secret()
        return secret, hash_secret(secret)
    temporary_password = generate_temporary_password()
    return temporary_password, hash_password(temporary_password)


def compose_reset_email(
    account: Account, method: str, reset_id: int, secret: str, expires_at: datetime, language: str | None
) -> RenderedEmail:
    """The mail carrying a link or a temporary password."""
    lifetime = reset_lifetime(method)
    if method == "link":
        link = f"{current_app.config['PUBLIC_BASE_URL']}/reset-password/{make_link_token(reset_id, secret)}"
        return render_email(
            "reset_link", _l("Reset your password"), language=language, account=account, link=link,
            expires_at=expires_at, lifetime_minutes=int(lifetime.total_seconds() // 60),
        )
    return render_email(
        "temporary_password", _l("Your temporary password"), language=language, account=account,
        temporary_password=secret, expires_at=expires_at, lifetime_hours=int(lifetime.total_seconds() // 3600),
    )


def rehearse_reset(username: str, method: str, language: str | None, now: datetime) -> None:
    """Do the computing a reset would, and keep nothing.

    For a missing, disabled or email-less account the dispatcher still makes a secret, hashes
    it and writes the mail, then throws them away: an inline dispatcher shares the CPU with the
    web requests, and less work for missing names would show in their neighbours' timing.
    """
    stand_in = Account(username=username, username_key="", email="nobody@invalid")
    secret, _hash = new_reset_secret(method)
    compose_reset_email(stand_in, method, 0, secret, now + reset_lifetime(method), language)


def resolve_reset_request(session: Session, request: ResetRequest, *, now: datetime) -> str:
    """Act on one self-service request; the caller commits. Returns what happened.

    Only an active account with an email gets mail; every request leaves an audit event,
    so a request for a missing, disabled or email-less account is recorded, not dropped.
    """
    account = find_account(session, request.username)
    if account is None:
        outcome = "no_account"
    elif not account.is_active:
        outcome = "disabled"
    elif not account.email:
        outcome = "no_email"
    else:
        outcome = "issued"
    method = current_app.config["RESET_METHOD"]
    audit.record_event(
        session, "reset.requested", actor=audit.SELF, ip=request.ip, account=account,
        details={"username": request.username, "method": method, "outcome": outcome},
    )
    if outcome == "issued":
        issue_reset(
            session, account, method, requested_by=audit.SELF, ip=request.ip, now=now, language=request.language
        )
    else:
        rehearse_reset(request.username, method, request.language, now)
    return outcome


def process_reset_requests(session: Session, *, now: datetime, limit: int = 20) -> int:
    """Resolve pending self-service requests, each in its own transaction; returns how many.

    The conditional update lets one worker only take each request, on SQLite as on
    PostgreSQL; SKIP LOCKED only keeps a batch's select from waiting on another worker.
    """
    pending = session.scalars(
        select(ResetRequest.id)
        .where(ResetRequest.status == "pending")
        .order_by(ResetRequest.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    session.commit()
    handled = 0
    for request_id in pending:
        taken = session.execute(
            update(ResetRequest)
            .where(ResetRequest.id == request_id, ResetRequest.status == "pending")
            .values(status="processed", processed_at=now)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:
            session.rollback()
            continue
        request = session.get(ResetRequest, request_id)
        resolve_reset_request(session, request, now=now)
        session.commit()
        handled += 1
    return handled


def check_link(session: Session, token: str, *, now: datetime) -> PasswordReset:
    """The pending reset a link token stands for, or TokenInvalid / TokenExpired / TokenUsed."""
    link = read_link_token(token)
    reset = session.get(PasswordReset, link.reset_id)
    if reset is None or reset.method != "link" or not secret_matches(link.secret, reset.secret_hash):
        raise TokenInvalid(_("This reset link is not valid. Ask for a new one."))
    if reset.used_at is not None:
        raise TokenUsed(_("This reset link has already been used. Ask for a new one if you need it."))
    if reset.revoked_at is not None:
        raise TokenInvalid(_("This reset link was replaced by a newer one, or the password has changed since. Ask for a new one."))
    if reset.expires_at <= now:
        raise TokenExpired(_("This reset link has expired. Ask for a new one."))
    account = reset.account
    if not account.is_active:
        raise TokenInvalid(_("This reset link is not valid. Ask for a new one."))
    if account.password_changed_at and account.password_changed_at > reset.created_at:
        raise TokenInvalid(_("The password has changed since this link was sent. Ask for a new one."))
    return reset


def confirm_reset(session: Session, token: str, new_password: str, *, ip: str | None) -> Account:
    """Set a new password through a link, once; commits. No sign-in follows.

    The password is checked before the link is used up, so a refused password leaves the link
    working; then a conditional update lets exactly one of many simultaneous confirms win.
    """
    now = utcnow()
    reset = check_link(session, token, now=now)
    account = reset.account
    check_new_password(new_password, username=account.username, email=account.email)
    won = session.execute(
        update(PasswordReset)
        .where(PasswordReset.id == reset.id, PasswordReset.usable_at(now))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if won.rowcount != 1:
        session.rollback()
        check_link(session, token, now=now)  # raises the reason another request got there first
        raise TokenUsed(_("This reset link has already been used."))
    replace_password_hash(
        session, account, hash_password(new_password), actor=audit.SELF, ip=ip, now=now, via="reset_link"
    )
    session.commit()
    return account
