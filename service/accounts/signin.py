"""Signing in with a username and a password (or a pending temporary password), and changing
a password given the current one."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from urllib.parse import urlencode

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import bindparam, literal_column, or_, select, update

from service.accounts.changes import replace_password_hash, set_password
from service.accounts.legacy import spend_legacy_checks
from service.accounts.passwords import verify_password
from service.accounts.throttle import WINDOW_MINUTES, account_throttle_key, sign_in_throttle
from service.events import audit
from service.models import Account, AccountState, PasswordReset, ResetMethod
from service.outbox.mail import render_email
from service.outbox.queue import queue_email
from service.platform.config import settings
from service.platform.database import DbSession, rows_changed
from service.platform.errors import AccountFrozen
from service.platform.i18n import current_language
from service.platform.sealing import username_hash
from service.platform.signing import keyed_hashes
from service.platform.text import is_storable, normalise_username


@dataclass(frozen=True, slots=True)
class SignInAccount(AccountState):
    """What a sign-in reads of an account: the columns it needs, as plain values.

    Not an ORM object: building and tracking one costs an existing name work that a missing
    name does not do, and time tells them apart (bench/README.md, verify_timing.py).
    """

    id: int
    username: str
    email: str | None
    language: str | None
    status: str
    password_hash: str | None
    must_change_password: bool
    password_changed_at: datetime | None
    password_expires_at: datetime | None
    frozen_at: datetime | None



@dataclass(frozen=True, slots=True)
class PendingTemporary:
    """A pending temporary password, as a sign-in reads it."""

    id: int
    secret_hash: str
    expires_at: datetime


_accounts = Account.__table__.c
_resets = PasswordReset.__table__.c

# One statement and one row for every name, existing or not: the row is the account's columns,
# or the same columns all NULL (the outer join from a one-row probe). So a missing name reads,
# converts and builds what an existing one does, and no ORM object is made either way.
_FIND_SIGN_IN_ACCOUNT = select(*(_accounts[field.name] for field in fields(SignInAccount))).select_from(
    select(literal_column("1").label("one"))
    .subquery("probe")
    .outerjoin(Account.__table__, _accounts.username_key == bindparam("username_key"))
)

# The newest pending temporary password the keyed hashes name (rows from before keyed hashes
# existed last); account id 0, which no account has, for a missing name.
_FIND_PENDING_TEMPORARY = (
    select(_resets.id, _resets.secret_hash, _resets.expires_at)
    .where(
        _resets.account_id == bindparam("account_id"),
        _resets.method == ResetMethod.TEMPORARY_PASSWORD.value,
        _resets.used_at.is_(None),
        _resets.revoked_at.is_(None),
        _resets.expires_at > bindparam("now"),
        or_(_resets.code_hash.in_(bindparam("code_hashes", expanding=True)), _resets.code_hash.is_(None)),
    )
    .order_by(_resets.code_hash.is_(None), _resets.id.desc())
    .limit(1)
)


def find_sign_in_account(session: DbSession, username: str) -> SignInAccount | None:
    """The account a username (in any spelling) names, as a sign-in reads it; None if none."""
    key = normalise_username(username)
    if not is_storable(key):
        # No username holds such characters, and the database would refuse the query.
        return None
    account = SignInAccount(*session.execute(_FIND_SIGN_IN_ACCOUNT, {"username_key": key}).one())
    return account if account.id is not None else None


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in attempt: the account on success, None on a failure."""

    account: SignInAccount | None
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
        account = find_sign_in_account(session, username)
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
                # Nothing typed is kept: the account link, or a keyed hash for no account.
                name_hash = username_hash(username)
                audit.record_event(
                    session, "sign_in.throttled", actor=audit.SELF, ip=ip, now=now,
                    account_id=account.id if account is not None else None,
                    details={} if account is not None else {"username_hash": name_hash},
                )
                _tell_throttled(session, account, throttle_key, now=now)
            return FAILED
    if account.is_frozen:
        # The right password for a frozen account: say so (a wrong one fails like any other).
        raise AccountFrozen(_("This account is frozen. Call customer service to have it unfrozen."))
    if temporary is not None:
        used = _use_temporary_password(session, account, temporary, ip=ip, now=now, notify=notify)
        if used is None:
            return FAILED
        return SignIn(account=account_after(account, used, now), must_change_password=True, temporary=used)
    if new_hash:
        # An outdated hash (older parameters, an imported scheme) is replaced at once.
        session.execute(
            update(Account).where(Account.id == account.id).values(password_hash=new_hash)
            .execution_options(synchronize_session=False)
        )
        account = replace(account, password_hash=new_hash)
    return SignIn(account=account, must_change_password=account.must_change_password)


def account_after(account: SignInAccount, used: PasswordReset, now: datetime) -> SignInAccount:
    """The account as a sign-in with the temporary password `used` at `now` left it."""
    return replace(
        account, password_hash=used.secret_hash, must_change_password=True,
        password_changed_at=now, password_expires_at=used.expires_at,
    )


def _tell_throttled(session: DbSession, account: SignInAccount | None, throttle_key: str, *, now: datetime) -> None:
    """Mail the account's owner that sign-in is paused, once per throttle window, with a way to reset.

    The notice is written, and the window's notice counted, for every name that starts a
    throttle; it is queued only for an account with an email: the work on this request's path
    does not tell a missing name from another.
    """
    base_url = settings()["PUBLIC_BASE_URL"]
    username = account.username if account is not None else "-"
    notice = render_email(
        "sign_in_throttled", _l("Sign-in to your account is paused"),
        language=(account.language if account is not None else None) or current_language(), now=now,
        username=username, until=now + timedelta(minutes=WINDOW_MINUTES), minutes=WINDOW_MINUTES,
        reset_link=f"{base_url}/reset-password?{urlencode({'username': username})}",
    )
    first = sign_in_throttle().first_notice(throttle_key)
    if account is not None and account.email and account.is_active and first:
        queue_email(session, account.email, notice, account_id=account.id, now=now)


def _password_expired(account: SignInAccount, now: datetime) -> bool:
    """Whether the account's password is a used temporary one past its lifetime."""
    return account.password_expires_at is not None and now >= account.password_expires_at


def _matching_temporary_password(
    session: DbSession, account: SignInAccount | None, password: str, now: datetime
) -> PendingTemporary | None:
    """The account's pending temporary password that `password` is, if any.

    Several may be pending (a customer who asked more than once): the keyed hash finds the
    one typed, and one slow verification confirms it. The same query and one verification
    run even without an account or a match, so a failed sign-in always costs the same.
    Rows from before keyed hashes existed are tried last, newest first.
    """
    row = session.execute(
        _FIND_PENDING_TEMPORARY,
        {"account_id": account.id if account else 0, "now": now, "code_hashes": keyed_hashes(password)},
    ).first()
    pending = PendingTemporary(*row) if row is not None else None
    matched, _ = verify_password(password, pending.secret_hash if pending else None)
    return pending if matched else None


def _use_temporary_password(
    session: DbSession, account: SignInAccount, pending: PendingTemporary, *, ip: str | None, now: datetime,
    notify: bool = True,
) -> PasswordReset | None:
    """The temporary password becomes the password, to be changed at once; None if another
    sign-in used it first (the conditional update lets only one of them win), else the reset."""
    used = session.execute(
        update(PasswordReset)
        .where(PasswordReset.id == pending.id, PasswordReset.usable_at(now))
        .values(used_at=now, used_via="temporary_password")
        .execution_options(synchronize_session=False)
    )
    if rows_changed(used) != 1:
        return None
    # The rare path that changes the account: its rules work on the ORM objects.
    reset = session.get_one(PasswordReset, pending.id, populate_existing=True)
    record = session.get_one(Account, account.id)
    replace_password_hash(
        session, record, reset.secret_hash, actor=audit.SELF, ip=ip, now=now,
        via="temporary_password", must_change=True, expires_at=reset.expires_at, reset=reset, notify=notify,
    )
    return reset


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
    account = session.get_one(Account, signed_in.account.id)
    # A temporary password used to sign in earlier is the account's password until replaced,
    # and only it expires. Its use was announced then ("changed by signing in with a temporary
    # password"); the customer now choosing their own is the end of that change, not another.
    replacing_temporary = signed_in.temporary is None and account.password_expires_at is not None
    set_password(
        session, account, new_password, actor=actor, ip=ip, now=now,
        via="temporary_password" if signed_in.temporary is not None or replacing_temporary else "change",
        reset=signed_in.temporary, notify=not replacing_temporary,
    )
    return signed_in
