"""What a new username or email address must look like."""

from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError, validate_email

from service.platform.errors import FieldError
from service.platform.text import (
    EMAIL_MAX_LENGTH,
    USERNAME_MAX_LENGTH,
    has_control_characters,
    normalise_username,
)


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
    if has_control_characters(username):
        return FieldError("username", "The username contains characters that cannot be typed.")
    if len(look_alike_scripts(key)) > 1:
        return FieldError(
            "username", "Use letters of one alphabet: this username mixes Latin, Greek or Cyrillic letters that look alike."
        )
    return None


# Alphabets with letters drawn alike (Latin a, Cyrillic а, Greek α...): a name mixing them can
# pass for another account's to an agent reading it out (`jаne`, with a Cyrillic а, is not
# `jane`). A name in one of them alone, or with letters of other scripts, stays allowed.
LOOK_ALIKE_SCRIPTS = frozenset({"LATIN", "GREEK", "CYRILLIC"})


def look_alike_scripts(text: str) -> set[str]:
    """Which of the look-alike alphabets the letters of `text` come from (by Unicode name)."""
    scripts = set()
    for char in text:
        if unicodedata.category(char).startswith("L"):
            script = unicodedata.name(char, "").partition(" ")[0]
            if script in LOOK_ALIKE_SCRIPTS:
                scripts.add(script)
    return scripts


def email_problem(email: str) -> FieldError | None:
    """Why an email address cannot be used, or None when it can.

    The syntax is email-validator's (RFC 5322 and 6531, as mail servers accept it): a double
    dot, two @, a list or a comment is refused here, not by the mail server at delivery.
    No DNS look-up: a shop's customers may use domains this host cannot resolve.
    """
    email = email.strip()
    if len(email) > EMAIL_MAX_LENGTH:
        return FieldError("email", "Enter an email address such as name@example.com.")
    if any(char.isspace() for char in email) or has_control_characters(email):
        return FieldError("email", "The email address must not contain spaces or control characters.")
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError:
        return FieldError("email", "Enter an email address such as name@example.com.")
    return None
