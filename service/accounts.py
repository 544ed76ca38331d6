"""Accounts: creating them, signing in, and changing a password."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import audit
from .clock import utcnow
from .errors import InvalidCredentials, UsernameTaken, ValidationFailed
from .models import Account
from .passwords import check_new_password, hash_password, spend_verify_time, verify_password
from .throttle import account_throttle_key, sign_in_throttle
from .usernames import email_problem, normalise_email, normalise_username, username_problem


@dataclass(frozen=True)
class SignIn:
    """The outcome of a successful sign-in."""

    account: Account
    must_change_password: bool


def find_account(session: Session, username: str) -> Account | None:
    """The account a username (in any spelling) names, or None."""
    key = normalise_username(username)
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
        check_new_password(password, username=username, email=email)
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


def sign_in(session: Session, username: str, password: str) -> SignIn:
    """Check a username and password; commits only to upgrade an outdated hash.

    A missing, disabled or password-less account fails exactly like a wrong password, at the
    same cost, and every failure counts toward the username's throttle, so neither the answer,
    its time, nor the throttle tells whether the account exists.
    """
    throttle = sign_in_throttle()
    throttle_key = account_throttle_key(normalise_username(username))
    throttle.check(throttle_key)
    account = find_account(session, username)
    if account is None:
        spend_verify_time()
        throttle.record_failure(throttle_key)
        raise InvalidCredentials("The username or password is wrong.")
    matched, new_hash = verify_password(password, account.password_hash)
    if not matched or not account.is_active:
        throttle.record_failure(throttle_key)
        raise InvalidCredentials("The username or password is wrong.")
    if new_hash:
        account.password_hash = new_hash
        session.commit()
    return SignIn(account=account, must_change_password=account.must_change_password)


def set_password(
    session: Session, account: Account, new_password: str, *, actor: str, ip: str | None
) -> None:
    """Check the new password against the policy and set it; the caller commits."""
    check_new_password(new_password, username=account.username, email=account.email)
    account.password_hash = hash_password(new_password)
    account.password_changed_at = utcnow()
    account.must_change_password = False
    audit.record_event(session, "password.changed", actor=actor, ip=ip, account=account)


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
    signed_in = sign_in(session, username, current_password)
    set_password(session, signed_in.account, new_password, actor=actor, ip=ip)
    session.commit()
    return signed_in.account

