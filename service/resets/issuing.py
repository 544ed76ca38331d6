"""Issuing a reset: a link or a temporary password, its hash kept, its mail queued with it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import insert

from service.accounts.changes import revoke_pending_resets
from service.accounts.passwords import hash_password
from service.accounts.reportlinks import report_token_for_reset
from service.contact.templating import local_moment
from service.events import audit
from service.models import Account, PasswordReset, ResetMethod
from service.outbox.mail import RenderedEmail, render_email
from service.outbox.queue import queue_email
from service.platform.config import settings
from service.platform.database import DbSession, inserted_id
from service.platform.errors import AccountFrozen, NoEmailOnFile
from service.platform.i18n import speaking
from service.platform.signing import keyed_hash
from service.platform.text import mask_email
from service.resets.codes import code_selector, display_code, new_code
from service.resets.links import hash_secret, make_link_token, new_secret
from service.resets.policy import ResetPolicy

# No 0/O, 1/l/I: a temporary password is read off a screen and typed by hand.
TEMPORARY_PASSWORD_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789"
TEMPORARY_PASSWORD_LENGTH = 14  # about 80 bits


def generate_temporary_password() -> str:
    """A random temporary password from an alphabet without look-alikes."""
    return "".join(secrets.choice(TEMPORARY_PASSWORD_ALPHABET) for _ in range(TEMPORARY_PASSWORD_LENGTH))


@dataclass(frozen=True)
class IssuedReset:
    """A reset just issued, and where its mail is going."""

    reset_id: int
    method: str
    expires_at: datetime
    sent_to: str


# One prepared INSERT: the reset's id is all that is read back (its link carries it), and the
# unit of work's flush of an object cost a third of issuing a reset.
RECORD_RESET = insert(PasswordReset.__table__)  # type: ignore[arg-type]


def issue_reset(
    session: DbSession,
    account: Account,
    method: str,
    *,
    policy: ResetPolicy,
    requested_by: str,
    ip: str | None,
    now: datetime,
    details: dict[str, str] | None = None,
    language: str | None = None,
) -> IssuedReset:
    """Issue a link or temporary password and queue its mail; flushes, the caller commits.

    A self-service reset leaves the account's older pending self-service resets of the same
    method working (someone who asked twice may open the first mail); any other reset revokes
    every pending one. The mail is in the account's language, else in `language` (that of the
    page that asked).
    """
    if not account.email:
        raise NoEmailOnFile(_("The account has no email address to send a reset to."))
    if account.is_frozen:
        raise AccountFrozen(_("The account is frozen: unfreeze it before sending a reset."))
    revoke_pending_resets(
        session, account, now, keep_self_service=method if requested_by == audit.SELF else None
    )
    secret, secret_hash = new_reset_secret(method)
    # A link comes with a code for the same reset; a temporary password is its own code.
    code = new_code() if method == ResetMethod.LINK else secret
    expires_at = now + policy.lifetime(method)
    mail_language = account.language or language
    recorded = session.execute(
        RECORD_RESET,
        {
            "account_id": account.id, "method": method, "requested_by": requested_by, "ip": ip,
            "secret_hash": secret_hash, "created_at": now, "expires_at": expires_at, "code_hash": keyed_hash(code),
            "code_selector": code_selector(code) if method == ResetMethod.LINK else None, "code_attempts": 0,
            "ticket": (details or {}).get("ticket") or None, "language": mail_language,
        },
    )
    reset_id = inserted_id(recorded)
    email = compose_reset_email(
        account, method, reset_id, secret, expires_at, mail_language, policy=policy, now=now, code=code
    )
    queue_email(session, account.email, email, account_id=account.id, now=now)
    audit.record_event(
        session, "reset.issued", actor=requested_by, ip=ip, now=now, account=account,
        details={"method": method, "expires_at": expires_at.isoformat(), **(details or {})},
    )
    return IssuedReset(reset_id=reset_id, method=method, expires_at=expires_at, sent_to=mask_email(account.email))


def new_reset_secret(method: str) -> tuple[str, str]:
    """A fresh secret (a link's random part, or a temporary password) and the hash kept of it."""
    if method == ResetMethod.LINK:
        secret = new_secret()
        return secret, hash_secret(secret)
    temporary_password = generate_temporary_password()
    return temporary_password, hash_password(temporary_password)


def compose_reset_email(
    account: Account,
    method: str,
    reset_id: int,
    secret: str,
    expires_at: datetime,
    language: str | None,
    *,
    policy: ResetPolicy,
    now: datetime,
    code: str = "",
) -> RenderedEmail:
    """The mail carrying a link and its code, or a temporary password."""
    lifetime = policy.lifetime(method)
    report_link = f"{policy.base_url}/report/{report_token_for_reset(reset_id)}"
    # What differs from one mail to the next goes in `slots`: the rest of the mail is rendered
    # once a minute per language (`render_email`).
    if method == ResetMethod.LINK:
        link = f"{policy.base_url}/reset-password/{make_link_token(reset_id, secret)}"
        return render_email(
            "reset_link", _l("Reset your password"), language=language, now=now,
            code_page=f"{policy.base_url}/reset-password/code", lifetime_minutes=int(lifetime.total_seconds() // 60),
            slots={"username": account.username, "link": link, "code": display_code(code), "report_link": report_link},
        )
    return render_email(
        "temporary_password", _l("Your temporary password"), language=language, now=now,
        lifetime_hours=int(lifetime.total_seconds() // 3600),
        slots={
            "username": account.username, "temporary_password": secret, "report_link": report_link,
            "until": _in_shop_time(expires_at, language),
        },
    )


def _in_shop_time(moment: datetime, language: str | None) -> str:
    """A moment as the mail says it: in the shop's time zone (where the customer service's hours
    are given), in the mail's language."""
    with speaking(language):
        return local_moment(moment, settings()["CONTACT_TIMEZONE"])


def rehearse_reset(username: str, method: str, language: str | None, *, policy: ResetPolicy, now: datetime) -> None:
    """Do the computing a reset would, and keep nothing.

    For a missing, disabled or email-less account the dispatcher still makes a secret, hashes
    it and writes the mail, then throws them away: an inline dispatcher shares the CPU with the
    web requests, and less work for missing names would show in their neighbours' timing.
    """
    stand_in = Account(username=username, username_key="", email="nobody@invalid")
    secret, _hash = new_reset_secret(method)
    code = new_code() if method == ResetMethod.LINK else secret
    keyed_hash(code)
    compose_reset_email(
        stand_in, method, 0, secret, now + policy.lifetime(method), language, policy=policy, now=now, code=code
    )
