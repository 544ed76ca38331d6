"""How an agent confirmed that the caller owns the account, before acting on it."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from service.platform.config import settings
from service.platform.errors import FieldError, ValidationFailed

# Readable names of the usual methods; a shop's own codes are shown as they are.
METHOD_LABELS = {
    "callback": _l("Called back on the number on file"),
    "order_number": _l("Confirmed a recent order number"),
    "date_of_birth": _l("Confirmed the date of birth"),
    "email_reply": _l("Replied from the email address on file"),
}


def verification_methods() -> tuple[str, ...]:
    """The codes agents may give, from SUPPORT_VERIFICATION_METHODS."""
    methods: tuple[str, ...] = tuple(settings()["SUPPORT_VERIFICATION_METHODS"])
    return methods


def method_label(code: str) -> str:
    """The readable name of a verification method."""
    return str(METHOD_LABELS.get(code, code))


def checked_verification(verified_by: str | None, *, required: bool) -> str | None:
    """The method, if it is one of the configured ones; ValidationFailed when unknown, or missing while required."""
    methods = verification_methods()
    if verified_by is None or not verified_by.strip():
        if required:
            raise ValidationFailed(
                "Say how the caller was verified.",
                errors=[FieldError("verified_by", f"Give one of {', '.join(methods)}.")],
            )
        return None
    if verified_by.strip() not in methods:
        raise ValidationFailed(
            f"verified_by must be one of {', '.join(methods)}.",
            errors=[FieldError("verified_by", f"Give one of {', '.join(methods)}.")],
        )
    return verified_by.strip()


def action_details(*, note: str | None = None, ticket: str | None = None, verified_by: str | None = None) -> dict[str, str]:
    """What an agent action records beside its own facts: only the parts given."""
    return {
        key: value
        for key, value in (("note", note), ("ticket", ticket), ("verified_by", verified_by))
        if value
    }
