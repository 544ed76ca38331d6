"""Normal forms of typed text: how usernames and emails compare, how search sees them, and what a column can hold."""

from __future__ import annotations

import unicodedata

USERNAME_MAX_LENGTH = 150
EMAIL_MAX_LENGTH = 254


def normalise_username(username: str) -> str:
    """NFKC, casefolded and trimmed: `Jane`, ` jane ` and `ｊａｎｅ` are one account."""
    return unicodedata.normalize("NFKC", username).casefold().strip()


def normalise_email(email: str) -> str:
    """The form emails are searched by: NFKC, casefolded and trimmed."""
    return unicodedata.normalize("NFKC", email).casefold().strip()


def searchable(text: str) -> str:
    """The form support search compares: compatibility-decomposed, accents dropped, casefolded,
    spaces collapsed; `López` and `LOPEZ` both become `lopez`."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(unicodedata.normalize("NFKC", stripped.casefold()).split())


def digits_of(text: str) -> str:
    """Only the ASCII digits: how a phone number is searched, whatever its spacing and dashes."""
    return "".join(char for char in text if char in "0123456789")


def is_storable(text: str) -> bool:
    """False for text no database column can hold: NUL (PostgreSQL) or lone surrogates (UTF-8)."""
    return "\x00" not in text and not any("\ud800" <= char <= "\udfff" for char in text)


def is_one_line(text: str) -> bool:
    """False for text with a line break or another control character (C0, DEL, C1, or Unicode's
    line and paragraph separators): what a ticket number, a note or a reason must not hold, since
    it is written into mail, logs and exports where a line break starts something new."""
    return not any(unicodedata.category(char) == "Cc" or char in "\u2028\u2029" for char in text)


def has_control_characters(text: str) -> bool:
    """Whether the text holds characters nobody types: controls, format marks, unassigned ones."""
    return any(unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn") for char in text)


def mask_email(email: str) -> str:
    """`jane@example.com` becomes `j***@example.com`: enough for an agent to confirm it."""
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}***@{domain}"
