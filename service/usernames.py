"""How usernames and email addresses are compared: one normal form for each."""

from __future__ import annotations

import unicodedata

from .errors import FieldError

USERNAME_MAX_LENGTH = 150
EMAIL_MAX_LENGTH = 254


def normalise_username(username: str) -> str:
    """NFKC, casefolded and trimmed: `Jane`, ` jane ` and `ｊａｎｅ` are one account."""
    return unicodedata.normalize("NFKC", username).casefold().strip()


def normalise_email(email: str) -> str:
    """The form emails are searched by: NFKC, casefolded and trimmed."""
    return unicodedata.normalize("NFKC", email).casefold().strip()


def is_storable(text: str) -> bool:
    """False for text no database column can hold: NUL (PostgreSQL) or lone surrogates (UTF-8)."""
    return "\x00" not in text and not any("\ud800" <= char <= "\udfff" for char in text)


def _has_control_characters(text: str) -> bool:
    return any(unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn") for char in text)


def username_problem(username: str) -> FieldError | None:
    """Why a new username cannot be used, or None when it can."""
    key = normalise_username(username)
    if not key:
        return FieldError("username", "Enter a username.")
    if len(key) > USERNAME_MAX_LENGTH or len(username) > USERNAME_MAX_LENGTH:
        return FieldError("username", f"Use at most {USERNAME_MAX_LENGTH} characters.")
    if "/" in username:
        # Account addresses are paths (/support/accounts/<username>); a slash could never be reached.
        return FieldError("username", "A username cannot contain /.")
    if _has_control_characters(username):
        return FieldError("username", "The username contains characters that cannot be typed.")
    return None


def email_problem(email: str) -> FieldError | None:
    """Why an email address cannot be used, or None when it can."""
    email = email.strip()
    local, at, domain = email.rpartition("@")
    if not at or not local or "." not in domain.strip(".") or len(email) > EMAIL_MAX_LENGTH:
        return FieldError("email", "Enter an email address such as name@example.com.")
    if any(char.isspace() for char in email) or _has_control_characters(email):
        return FieldError("email", "The email address must not contain spaces or control characters.")
    return None
