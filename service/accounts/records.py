"""Account records: finding an account by its username, creating one."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from service.accounts.passwords import check_new_password, hash_password
from service.accounts.profile import clean_profile
from service.accounts.usernames import email_problem, username_problem
from service.events import audit
from service.models import Account
from service.platform.database import DbSession
from service.platform.errors import UsernameTaken, ValidationFailed
from service.platform.text import is_storable, normalise_email, normalise_username

# Built once: the dispatcher looks up every name asked for, and building the statement each
# time cost a third as much as running it.
FIND_ACCOUNT = select(Account).where(Account.username_key == bindparam("username_key"))


def find_account(session: DbSession, username: str) -> Account | None:
    """The account a username (in any spelling) names, or None."""
    key = normalise_username(username)
    if not is_storable(key):
        # No username holds such characters, and the database would refuse the query.
        return None
    return session.scalar(FIND_ACCOUNT, {"username_key": key})


def create_account(
    session: DbSession,
    *,
    username: str,
    email: str | None,
    now: datetime,
    actor: str,
    password: str | None = None,
    password_hash: str | None = None,
    ip: str | None = None,
    language: str | None = None,
    full_name: str | None = None,
    phone: str | None = None,
) -> Account:
    """Create an account and flush it, or raise ValidationFailed / WeakPassword / UsernameTaken.

    `password` is checked against the policy and hashed; `password_hash` (from an import) is
    kept as it is, to be upgraded at the next sign-in. The caller commits.
    """
    email = (email or "").strip() or None
    problems = [
        problem
        for problem in (username_problem(username), email_problem(email) if email else None)
        if problem is not None
    ]
    if problems:
        raise ValidationFailed(problems[0].message, errors=problems)
    # The same checks as a profile change: a language we do not speak is refused, not dropped.
    profile = clean_profile({"full_name": full_name, "phone": phone, "language": language})
    if password is not None:
        check_new_password(password, username=username, email=email, field="password")
        password_hash = hash_password(password)
    taken = UsernameTaken(f"The username {username.strip()!r} is already taken.")
    if find_account(session, username) is not None:
        raise taken
    account = Account(
        username=username.strip(),
        username_key=normalise_username(username),
        email=email,
        email_key=normalise_email(email) if email else None,
        password_hash=password_hash,
        language=profile["language"],
        full_name=profile["full_name"],
        phone=profile["phone"],
        created_at=now,
        password_changed_at=now if password_hash else None,
    )
    account.refresh_search_columns()
    session.add(account)
    try:
        session.flush()
    except IntegrityError:
        # Another request took the username between our check and our insert; the caller's
        # transaction is spoilt and it rolls back, as after any refusal.
        raise taken from None
    audit.record_event(session, "account.created", actor=actor, ip=ip, now=now, account=account)
    return account
