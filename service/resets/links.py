"""Reset links: a signed, timed token around a reset's id and a random secret; checking one,
and setting a new password through it, once."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from flask_babel import gettext as _
from itsdangerous import BadSignature, SignatureExpired
from sqlalchemy import update

from service.accounts.changes import replace_password_hash
from service.accounts.passwords import check_new_password, hash_password
from service.events import audit
from service.models import Account, PasswordReset, ResetMethod
from service.platform.database import DbSession, rows_changed
from service.platform.errors import TokenExpired, TokenInvalid, TokenUsed
from service.platform.signing import secret_matches, serializer, sha256_hex
from service.resets.codes import check_code, killed_by_wrong_codes
from service.resets.policy import ResetPolicy

RESET_LINK_SALT = "resetdesk.password-reset-link"
SECRET_BYTES = 16  # 128 bits of randomness in every link
TOKEN_MAX_LENGTH = 512


@dataclass(frozen=True)
class LinkToken:
    """What a valid link carries: which reset, and the secret whose hash that reset keeps."""

    reset_id: int
    secret: str


def new_secret() -> str:
    """A fresh random secret for a link."""
    return secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: str) -> str:
    """The form a link's secret is stored in."""
    return sha256_hex(secret)


def make_link_token(reset_id: int, secret: str) -> str:
    """The token that goes into a reset link."""
    token: str = serializer(RESET_LINK_SALT).dumps({"r": reset_id, "s": secret})
    return token


def read_link_token(token: str, *, policy: ResetPolicy) -> LinkToken:
    """Check a token's signature and age; raise TokenExpired or TokenInvalid otherwise."""
    if not token or len(token) > TOKEN_MAX_LENGTH:
        raise TokenInvalid(_("This reset link is not valid. Ask for a new one."))
    try:
        payload = serializer(RESET_LINK_SALT).loads(token, max_age=int(policy.link_lifetime.total_seconds()))
    # SignatureExpired is a BadSignature too: it must be caught first.
    except SignatureExpired:
        raise TokenExpired(_("This reset link has expired. Ask for a new one.")) from None
    except BadSignature:
        raise TokenInvalid(_("This reset link is not valid. Ask for a new one.")) from None
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("r"), int)
        or not isinstance(payload.get("s"), str)
    ):
        raise TokenInvalid(_("This reset link is not valid. Ask for a new one."))
    return LinkToken(reset_id=payload["r"], secret=payload["s"])


def check_link(session: DbSession, token: str, *, policy: ResetPolicy, now: datetime) -> PasswordReset:
    """The pending reset a link token stands for, or TokenInvalid / TokenExpired / TokenUsed."""
    link = read_link_token(token, policy=policy)
    reset = session.get(PasswordReset, link.reset_id)
    if reset is None or reset.method != ResetMethod.LINK or not secret_matches(link.secret, reset.secret_hash):
        raise TokenInvalid(_("This reset link is not valid. Ask for a new one."))
    if reset.used_at is not None:
        raise TokenUsed(_("This reset link has already been used. Ask for a new one if you need it."))
    if reset.revoked_at is not None and killed_by_wrong_codes(reset, policy):
        raise TokenInvalid(_("Too many wrong codes were tried for this reset, so its link and code no longer work. Ask for a new reset."))
    if reset.revoked_at is not None:
        raise TokenInvalid(_("This reset link was replaced by a newer one, or the password has changed since. Ask for a new one."))
    if reset.expires_at <= now:
        raise TokenExpired(_("This reset link has expired. Ask for a new one."))
    account = reset.account
    if not account.is_active or account.is_frozen:
        raise TokenInvalid(_("This reset link is not valid. Ask for a new one."))
    if account.password_changed_at and account.password_changed_at > reset.created_at:
        raise TokenInvalid(_("The password has changed since this link was sent. Ask for a new one."))
    return reset


def confirm_reset(
    session: DbSession, token: str, new_password: str, *, policy: ResetPolicy, ip: str | None, now: datetime
) -> Account:
    """Set a new password through a link, once; flushes, the caller commits. No sign-in follows."""
    reset = check_link(session, token, policy=policy, now=now)
    return use_reset(
        session, reset, new_password, via="reset_link", ip=ip, now=now,
        recheck=lambda: check_link(session, token, policy=policy, now=now),
    )


def confirm_reset_by_code(
    session: DbSession, username: str, code: str, new_password: str, *, policy: ResetPolicy, ip: str | None,
    now: datetime,
) -> Account:
    """Set a new password with a username and the code from the mail, once; flushes, the caller
    commits (also after CodeRejected, so the wrong code counts)."""
    reset = check_code(session, username, code, policy=policy, now=now)
    return use_reset(
        session, reset, new_password, via="reset_code", ip=ip, now=now,
        recheck=lambda: check_code(session, username, code, policy=policy, now=now),
    )


def use_reset(
    session: DbSession,
    reset: PasswordReset,
    new_password: str,
    *,
    via: str,
    ip: str | None,
    now: datetime,
    recheck: Callable[[], PasswordReset],
) -> Account:
    """Use a checked reset to set a new password; flushes.

    The password is checked before the reset is used up, so a refused password leaves it
    working; then a conditional update lets exactly one of many simultaneous confirms win.
    """
    account = reset.account
    check_new_password(new_password, username=account.username, email=account.email)
    won = session.execute(
        update(PasswordReset)
        .where(PasswordReset.id == reset.id, PasswordReset.usable_at(now))
        .values(used_at=now, used_via=via)
        .execution_options(synchronize_session=False)
    )
    if rows_changed(won) != 1:
        # Another request got there first; say why, as a fresh look at the link would.
        session.expire(reset)
        recheck()
        raise TokenUsed(_("This reset link has already been used."))
    replace_password_hash(
        session, account, hash_password(new_password), actor=audit.SELF, ip=ip, now=now, via=via, reset=reset
    )
    return account
