"""Accounts: creating them, signing in (temporary passwords too), and changing a password."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import audit
from .clock import utcnow
from .errors import InvalidCredentials, UsernameTaken, ValidationFailed
from .emails import render_email
from .i18n import current_language
from .models import Account, PasswordReset
from .outbox import queue_email
from .passwords import check_new_password, hash_password, verify_password
from .throttle import account_throttle_key, sign_in_throttle
from .usernames import (
    email_problem,
    is_storable,
    normalise_email,
    normalise_username,
    username_problem,
)


@dataclass(frozen=True)
class SignIn:
    """The outcome of a successful sign-in."""

    account: Account
    must_change_password: bool


def find_account(session: Session, username: str) -> Account | None:
    """The account a username (in any spelling) names, or None."""
    key = normalise_username(username)
    if not is_storable(key):
        # No username holds such characters, and the database would refuse the query.
        return None
    return session.scalar(select(Account).where(Account.username_key == key))


def create_account(
    session: Session,
    *,
    username: str,
    email: str | None,
    password: str | None = None,
    password_hash: str | None = None,
    actor: str,
    ip: str | None = None,
    language: str | None = None,
) -> Account:
    """Create an account and commit it, or raise ValidationFailed / WeakPassword / UsernameTaken.

    `password` is checked against the policy and hashed; `password_hash` (from an import) is
    kept as it is, to be upgraded at the next sign-in.
    """
    email = (email or "").strip() or None
    problems = [
        problem
        for problem in (username_problem(username), email_problem(email) if email else None)
        if problem is not None
    ]
    if problems:
        raise ValidationFailed(problems[0].message, errors=problems)
    if password is not None:
        check_new_password(password, username=username, email=email, field="password")
        password_hash = hash_password(password)
    if find_account(session, username) is not None:
        raise UsernameTaken(f"The username {username.strip()!r} is already taken.")
    now = utcnow()
    account = Account(
        username=username.strip(),
        username_key=normalise_username(username),
        email=email,
        email_key=normalise_email(email) if email else None,
        password_hash=password_hash,
        language=language,
        created_at=now,
        password_changed_at=now if password_hash else None,
    )
    session.add(account)
    audit.record_event(session, "account.created", actor=actor, ip=ip, account=account)
    try:
        session.commit()
    except IntegrityError:
        # Another request created the same username between our check and our insert.
        session.rollback()
        raise UsernameTaken(f"The username {username.strip()!r} is already taken.") from None
    return account


def sign_in(session: Session, username: str, password: str, *, ip: str | None = None) -> SignIn:
    """Check a username and a password or pending temporary password; commits what it changes.

    Every attempt does the same work whether the account exists, is disabled or has no
    password: one lookup, two hash verifications (the current password, then the newest
    pending temporary password, real or dummy). Every failure counts toward the username's
    throttle. So neither the answer, its time, nor the throttle tells whether an account exists.
    """
    now = utcnow()
    throttle = sign_in_throttle()
    throttle_key = account_throttle_key(normalise_username(username))
    throttle.check(throttle_key)
    account = find_account(session, username)
    matched, new_hash = verify_password(password, account.password_hash if account else None)
    temporary = None if matched else _matching_temporary_password(session, account, password, now)
    if account is None or not account.is_active or not (matched or temporary):
        throttle.record_failure(throttle_key)
        if throttle.is_locked(throttle_key):
            audit.record_event(
                session, "sign_in.throttled", actor=audit.SELF, ip=ip, account=account,
                details={"username": username},
            )
            session.commit()
        raise InvalidCredentials(_("The username or password is wrong."))
    if temporary is not None:
        _use_temporary_password(session, account, temporary, ip=ip, now=now)
    elif new_hash:
        account.password_hash = new_hash
        session.commit()
    return SignIn(account=account, must_change_password=account.must_change_password)


def _matching_temporary_password(
    session: Session, account: Account | None, password: str, now: datetime
) -> PasswordReset | None:
    """The account's newest pending temporary password if `password` is it.

    Runs the same query and one verification even without an account or a pending
    temporary password, so a failed sign-in always costs the same.
    """
    pending = session.scalar(
        select(PasswordReset)
        .where(
            PasswordReset.account_id == (account.id if account else 0),
            PasswordReset.method == "temporary_password",
            PasswordReset.usable_at(now),
        )
        .order_by(PasswordReset.id.desc())
        .limit(1)
    )
    matched, _ = verify_password(password, pending.secret_hash if pending else None)
    return pending if matched else None


def _use_temporary_password(
    session: Session, account: Account, reset: PasswordReset, *, ip: str | None, now: datetime
) -> None:
    """The temporary password becomes the password, to be changed at once; commits.

    The conditional update lets only one of several simultaneous sign-ins use it up.
    """
    used = session.execute(
        update(PasswordReset)
        .where(PasswordReset.id == reset.id, PasswordReset.usable_at(now))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if used.rowcount != 1:
        session.rollback()
        return
    replace_password_hash(
        session, account, reset.secret_hash, actor=audit.SELF, ip=ip, now=now,
        via="temporary_password", must_change=True,
    )
    session.commit()


def replace_password_hash(
    session: Session,
    account: Account,
    password_hash: str,
    *,
    actor: str,
    ip: str | None,
    now: datetime,
    via: str,
    must_change: bool = False,
) -> None:
    """Everything a password change does, by any route; the caller commits.

    Pending reset links and temporary passwords die, the change is audited, and the
    account's email is told, so a change the owner did not make does not go unnoticed.
    """
    account.password_hash = password_hash
    account.password_changed_at = now
    account.must_change_password = must_change
    revoke_pending_resets(session, account, now)
    audit.record_event(
        session, "password.changed", actor=actor, ip=ip, account=account, details={"via": via}
    )
    if account.email:
        notice = render_email(
            "password_changed", _l("Your password was changed"),
            language=account.language or current_language(),
            account=account, changed_at=now,
        )
        queue_email(session, account.email, notice, account_id=account.id, now=now)


def revoke_pending_resets(session: Session, account: Account, now: datetime) -> None:
    """End every reset link and temporary password of the account not yet used; the caller commits."""
    session.execute(
        update(PasswordReset)
        .where(
            PasswordReset.account_id == account.id,
            PasswordReset.used_at.is_(None),
            PasswordReset.revoked_at.is_(None),
        )
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )


def set_password(
    session: Session, account: Account, new_password: str, *, actor: str, ip: str | None, via: str
) -> None:
    """Check the new password against the policy and set it; the caller commits."""
    check_new_password(new_password, username=account.username, email=account.email)
    replace_password_hash(
        session, account, hash_password(new_password), actor=actor, ip=ip, now=utcnow(), via=via
    )


def change_password(
    session: Session,
    username: str,
    current_password: str,
    new_password: str,
    *,
    actor: str,
    ip: str | None,
) -> Account:
    """Change a password given the current one, and commit."""
    signed_in = sign_in(session, username, current_password, ip=ip)
    set_password(session, signed_in.account, new_password, actor=actor, ip=ip, via="change")
    session.commit()
    return signed_in.account

