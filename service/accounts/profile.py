"""A customer's profile: full name, phone, email and language, as the website changes them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from flask_babel import lazy_gettext as _l

from service.accounts.changes import revoke_pending_resets
from service.accounts.usernames import email_problem
from service.events import audit
from service.models import Account
from service.outbox.mail import render_email
from service.outbox.queue import queue_email
from service.platform.database import DbSession
from service.platform.errors import FieldError, ValidationFailed
from service.platform.i18n import current_language, supported_language
from service.platform.text import has_control_characters, normalise_email

FULL_NAME_MAX_LENGTH = 200
PHONE_MAX_LENGTH = 40
PHONE_CHARACTERS = frozenset("0123456789+-(). ")
PROFILE_FIELDS = ("email", "full_name", "phone", "language")


def full_name_problem(full_name: str) -> FieldError | None:
    """Why a full name cannot be kept, or None when it can."""
    if len(full_name) > FULL_NAME_MAX_LENGTH:
        return FieldError("full_name", f"Use at most {FULL_NAME_MAX_LENGTH} characters.")
    if has_control_characters(full_name):
        return FieldError("full_name", "The name contains characters that cannot be typed.")
    return None


def phone_problem(phone: str) -> FieldError | None:
    """Why a phone number cannot be kept, or None when it can."""
    if len(phone) > PHONE_MAX_LENGTH:
        return FieldError("phone", f"Use at most {PHONE_MAX_LENGTH} characters.")
    if not set(phone) <= PHONE_CHARACTERS or not any(char.isdigit() for char in phone):
        return FieldError("phone", "Enter a phone number with digits, spaces, +, -, ( ) or dots, such as +1 514-555-0199.")
    return None


CHECKS: dict[str, Callable[[str], FieldError | None]] = {
    "email": email_problem, "full_name": full_name_problem, "phone": phone_problem,
}


def clean_profile(values: Mapping[str, str | None]) -> dict[str, str | None]:
    """Trim the given fields (empty means none) and check them; raises ValidationFailed with every problem."""
    cleaned: dict[str, str | None] = {}
    problems: list[FieldError] = []
    for name, raw in values.items():
        value = (raw or "").strip() or None
        if name == "language" and value is not None:
            language = supported_language(value)
            if language is None:
                problems.append(FieldError("language", "Choose en or fr."))
            value = language
        check = CHECKS.get(name)
        problem = check(value) if check is not None and value is not None else None
        if problem is not None:
            problems.append(problem)
        cleaned[name] = value
    if problems:
        raise ValidationFailed(problems[0].message, errors=problems)
    return cleaned


def set_email(account: Account, email: str | None) -> None:
    """The account's email and the form it is searched by; the caller records why."""
    account.email = email
    account.email_key = normalise_email(email) if email else None
    account.refresh_search_columns()


def tell_old_address(session: DbSession, account: Account, old_email: str, *, now: datetime) -> None:
    """Queue the notice that the account's email changed, to the address it had before."""
    notice = render_email(
        "email_changed", _l("Your email address was changed"),
        language=account.language or current_language(), now=now,
        account=account, changed_at=now, has_new_email=bool(account.email),
    )
    queue_email(session, old_email, notice, account_id=account.id, now=now)


def update_profile(
    session: DbSession,
    account: Account,
    changes: Mapping[str, str | None],
    *,
    actor: str,
    ip: str | None,
    now: datetime,
) -> list[str]:
    """Apply the website's changes at once (it has verified its customer); the caller commits.

    Returns the names of the fields that changed. A changed email is its own audit event (and
    webhook), and the old address is told, so a change the owner did not make is noticed.
    """
    cleaned = clean_profile(changes)
    changed = [name for name, value in cleaned.items() if getattr(account, name) != value]
    old_email = account.email
    for name in changed:
        if name == "email":
            set_email(account, cleaned["email"])
        else:
            setattr(account, name, cleaned[name])
    account.refresh_search_columns()
    if changed:
        audit.record_event(
            session, "account.updated", actor=actor, ip=ip, now=now, account=account,
            details={"fields": ",".join(changed)},
        )
    if "email" in changed:
        # Links and temporary passwords mailed to the old address die: whoever still reads it
        # must not be able to take the account over.
        revoke_pending_resets(session, account, now)
        audit.record_event(
            session, "account.email_changed", actor=actor, ip=ip, now=now, account=account,
            details={"via": "website"},
        )
        if old_email:
            tell_old_address(session, account, old_email, now=now)
    session.flush()
    return changed
