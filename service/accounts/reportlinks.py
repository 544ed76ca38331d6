""""This wasn't me" links: signed with their own salt, naming a reset mail or a password change.

A link reports one thing, once. A reset mail's link names that reset, and works until it is
used. A password-changed notice's link names the change (when it happened, to the second),
and works only while that change is the account's latest and has not been reported yet: once
an agent unfreezes the account, or once the password changes again, the old link does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from itsdangerous import BadSignature

from service.models import Account, PasswordReset
from service.platform.database import DbSession
from service.platform.errors import TokenInvalid, TokenUsed
from service.platform.signing import serializer

REPORT_SALT = "resetdesk.report"
REPORT_MAX_AGE = 60 * 24 * 3600  # mail is read late; a report link stays good for two months
TOKEN_MAX_LENGTH = 512
FROM_RESET = "reset"
FROM_CHANGE = "change"


class ReportOutOfDate(TokenUsed):
    """A genuine report link that has done its work, or reports what is no longer so."""

    title = _l("This link can no longer be used")


@dataclass(frozen=True)
class Report:
    """What a report link names: a reset mail (and when that reset was made), or a password
    change (the account's `password_changed_at` it was sent for), of one account."""

    kind: str
    account_id: int
    reset_id: int | None = None
    reset_created_at: datetime | None = None
    changed_at: datetime | None = None


def report_token_for_reset(reset_id: int) -> str:
    """The token of the "this wasn't me" link in a reset mail."""
    token: str = serializer(REPORT_SALT).dumps({"k": FROM_RESET, "r": reset_id})
    return token


def report_token_for_change(account_id: int, changed_at: datetime) -> str:
    """The token of the "this wasn't me" link in a password-changed notice."""
    token: str = serializer(REPORT_SALT).dumps({"k": FROM_CHANGE, "a": account_id, "t": int(changed_at.timestamp())})
    return token


def already_used() -> ReportOutOfDate:
    return ReportOutOfDate(
        _(
            "This link has already been used: we have your report, and nothing more happens if you press it again. "
            "If something still seems wrong with your account, call customer service."
        )
    )


def changed_again() -> ReportOutOfDate:
    return ReportOutOfDate(
        _(
            "Your password has been changed again since that email was sent, so its link no longer does anything. "
            "If you did not make the newer change either, use the link in the newest email about it, "
            "or call customer service."
        )
    )


def read_report(session: DbSession, token: str) -> Report:
    """The report a token names while it can still act; TokenInvalid for a forged or expired
    link, ReportOutOfDate for one that has done its work or reports what is no longer so."""
    invalid = TokenInvalid(_("This link is not valid. If something is wrong with your account, call customer service."))
    if not token or len(token) > TOKEN_MAX_LENGTH:
        raise invalid
    try:
        payload = serializer(REPORT_SALT).loads(token, max_age=REPORT_MAX_AGE)
    except BadSignature:  # an expired signature too: the answer is the same
        raise invalid from None
    if not isinstance(payload, dict):
        raise invalid
    if payload.get("k") == FROM_RESET and isinstance(payload.get("r"), int):
        reset = session.get(PasswordReset, payload["r"])
        if reset is None:
            raise invalid
        if reset.reported_at is not None:
            raise already_used()
        return Report(kind=FROM_RESET, account_id=reset.account_id, reset_id=reset.id, reset_created_at=reset.created_at)
    if payload.get("k") == FROM_CHANGE and isinstance(payload.get("a"), int) and isinstance(payload.get("t"), int):
        account = session.get(Account, payload["a"])
        if account is None:
            raise invalid
        changed_at = account.password_changed_at
        if changed_at is None or int(changed_at.timestamp()) != payload["t"]:
            raise changed_again()
        if account.reported_change_at == changed_at:
            raise already_used()
        return Report(kind=FROM_CHANGE, account_id=account.id, changed_at=changed_at)
    raise invalid

