""""This wasn't me" links: signed with their own salt, naming a reset mail or a password change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask_babel import gettext as _
from itsdangerous import BadSignature

from service.models import PasswordReset
from service.platform.database import DbSession
from service.platform.errors import TokenInvalid
from service.platform.signing import serializer

REPORT_SALT = "resetdesk.report"
REPORT_MAX_AGE = 60 * 24 * 3600  # mail is read late; a report link stays good for two months
TOKEN_MAX_LENGTH = 512
FROM_RESET = "reset"
FROM_CHANGE = "change"


@dataclass(frozen=True)
class Report:
    """What a report link names: a reset mail, or a password change, of one account."""

    kind: str
    account_id: int
    reset_id: int | None = None


def report_token_for_reset(reset_id: int) -> str:
    """The token of the "this wasn't me" link in a reset mail."""
    token: str = serializer(REPORT_SALT).dumps({"k": FROM_RESET, "r": reset_id})
    return token


def report_token_for_change(account_id: int, changed_at: datetime) -> str:
    """The token of the "this wasn't me" link in a password-changed notice."""
    token: str = serializer(REPORT_SALT).dumps({"k": FROM_CHANGE, "a": account_id, "t": int(changed_at.timestamp())})
    return token


def read_report(session: DbSession, token: str) -> Report:
    """The report a token names, or TokenInvalid."""
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
        return Report(kind=FROM_RESET, account_id=reset.account_id, reset_id=reset.id)
    if payload.get("k") == FROM_CHANGE and isinstance(payload.get("a"), int):
        return Report(kind=FROM_CHANGE, account_id=payload["a"])
    raise invalid


