"""Signing in with a username and a password (or a pending temporary password), and changing
a password given the current one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import or_, select, update

from service.accounts.changes import replace_password_hash, set_password
from service.accounts.legacy import spend_legacy_checks
from service.accounts.passwords import verify_password
from service.accounts.records import find_account
from service.accounts.throttle import WINDOW_MINUTES, account_throttle_key, sign_in_throttle
from service.events import audit
from service.models import Account, PasswordReset, ResetMethod
from service.outbox.mail import render_email
from service.outbox.queue import queue_email
from service.platform.config import settings
from service.platform.database import DbSession, rows_changed
from service.platform.errors import AccountFrozen
from service.platform.i18n import current_language
from service.platform.sealing import username_hash
from service.platform.signing import keyed_hashes
from service.platform.text import normalise_username


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in attempt: the account on success, None on a failure."""

    account: Account | None
    must_change_password: bool = False
    # The temporary password this sign-in used, if it used one.
    temporary: PasswordReset | None = None

    @property
    def succeeded(self) -> bool:
        return self.account is not None


FAILED = SignIn(account=None)


def sign_in(
    session: DbSession, username: str, password: str, *, ip: str | None, now: datetime, notify: bool = True
) -> SignIn:
    """Check a username and a password or pending temporary password; flushes what it changes.

    Raises RateLimited while the username is throttled, and AccountFrozen for the right
    password of a frozen account. A failure is returned, not raised: it
    is counted toward the throttle (and audited when it starts the throttle), and the caller
    commits that record before answering "wrong username or password".

    Every attempt does the same work whether the account exists, is disabled or has no
    password: one lookup, two hash verifications (the current password, then the newest
    pending temporary password, real or dummy), and while imported legacy hashes remain, one
    check of each legacy kind (the account's own, or a stand-in). So neither the answer, its
    time, nor the throttle tells whether an account exists, or was imported.
    """
    throttle = sign_in_throttle()
    throttle_key = account_throttle_key(normalise_username(username))
    with throttle.attempt(throttle_key) as attempt:
        account = find_account(session, username)
        stored_hash = account.password_hash if account else None
        matched, new_hash = verify_password(password, stored_hash)
        if not matched:
            # While imported legacy hashes remain: the same legacy work for every name.
            spend_legacy_checks(session, password, checked_hash=stored_hash, now=now)
        temporary = None if matched else _matching_temporary_password(session, account, password, now)
        if matched and account is not None and _password_expired(account, now):
            # A temporary password, used but never changed, past its lifetime: ask again.
            matched, new_hash = False, None
        if account is None or not account.is_active or not (matched or temporary):
            if attempt.failed():
                audit.record_event(
                    session, "sign_in.throttled", actor=audit.SELF, ip=ip, now=now, account=account,
                    # Nothing typed is kept: the account link, or a keyed hash for no account.
                    details={} if account is not None else {"username_hash": username_hash(username)},
                )
                _tell_throttled(session, account, throttle_key, now=now)
            return FAILED
    if account.is_frozen:
        # The right password for a frozen account: say so (a wrong one fails like any other).
        raise AccountFrozen(_("This account is frozen. Call customer service to have it unfrozen."))
    if temporary is not None and not _use_temporary_password(session, account, temporary, ip=ip, now=now, notify=notify):
        return FAILED
    if matched and new_hash:
        account.password_hash = new_hash
    return SignIn(account=account, must_change_password=account.must_change_password, temporary=temporary)


def _tell_throttled(session: DbSession, account: Account | None, throttle_key: str, *, now: datetime) -> None:
    """Mail the account's owner that sign-in is paused, once per throttle window, with a way to reset.

    The notice is written for every name that starts a throttle, and queued only for an account
    with an email: the work on this request's path does not tell a missing name from another.
    """
    base_url = settings()["PUBLIC_BASE_URL"]
    username = account.username if account is not None else "-"
    notice = render_email(
        "sign_in_throttled", _l("Sign-in to your account is paused"),
        language=(account.language if account is not None else None) or current_language(), now=now,
        username=username, until=now + timedelta(minutes=WINDOW_MINUTES), minutes=WINDOW_MINUTES,
        reset_link=f"{base_url}/reset-password?{urlencode({'username': username})}",
    )
    if account is not None and account.email and account.is_active and sign_in_throttle().first_notice(throttle_key):
        queue_email(session, account.email, notice, account_id=account.id, now=now)


def _password_expired(account: Account, now: datetime) -> bool:
    """Whether the account's password is a used temporary one past its lifetime."""
    return account.password_expires_at is not None and now >= account.password_expires_at


def _matching_temporary_password(
    session: DbSession, account: Account | None, password: str, now: datetime
) -> PasswordReset | None:
    """The account's pending temporary password that `password` is, if any.

    Several may be pending (a customer who asked more than once): the keyed hash finds the
    one typed, and one slow verification confirms it. The same query and one verification
    run even without an account or a match, so a failed sign-in always costs the same.
    Rows from before keyed hashes existed are tried last, newest first.
    """
    pending = session.scalar(
        select(PasswordReset)
        .where(
            PasswordReset.account_id == (account.id if account else 0),
            PasswordReset.method == ResetMethod.TEMPORARY_PASSWORD,
            PasswordReset.usable_at(now),
            or_(PasswordReset.code_hash.in_(keyed_hashes(password)), PasswordReset.code_hash.is_(None)),
        )
        .order_by(PasswordReset.code_hash.is_(None), PasswordReset.id.desc())
        .limit(1)
    )
    matched, _ = verify_password(password, pending.secret_hash if pending else None)
    return pending if matched else None


def _use_temporary_password(
    session: DbSession, account: Account, reset: PasswordReset, *, ip: str | None, now: datetime, notify: bool = True
) -> bool:
    """The temporary password becomes the password, to be changed at once; False if another
    sign-in used it first (the conditional update lets only one of them win)."""
    used = session.execute(
        update(PasswordReset)
        .where(PasswordReset.id == reset.id, PasswordReset.usable_at(now))
        .values(used_at=now, used_via="temporary_password")
        .execution_options(synchronize_session=False)
    )
    if rows_changed(used) != 1:
        return False
    replace_password_hash(
        session, account, reset.secret_hash, actor=audit.SELF, ip=ip, now=now,
        via="temporary_password", must_change=True, expires_at=reset.expires_at, reset=reset, notify=notify,
    )
    return True


def change_password(
    session: DbSession,
    username: str,
    current_password: str,
    new_password: str,
    *,
    actor: str,
    ip: str | None,
    now: datetime,
) -> SignIn:
    """Change a password given the current one (or a pending temporary password); flushes.

    A failed sign-in is returned as such and changes nothing; a refused new password raises
    WeakPassword after the sign-in's changes were flushed, so the caller rolls them back.
    """
    # Signing in with a temporary password and replacing it is one change to the customer:
    # one notice, sent by the replacement, saying a temporary password was used.
    signed_in = sign_in(session, username, current_password, ip=ip, now=now, notify=False)
    if signed_in.account is None:
        return signed_in
    set_password(
        session, signed_in.account, new_password, actor=actor, ip=ip, now=now,
        via="temporary_password" if signed_in.temporary is not None else "change", reset=signed_in.temporary,
    )
    return signed_in
