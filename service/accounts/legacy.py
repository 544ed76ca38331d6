"""Importing accounts from an older system: a CSV of usernames, emails and password hashes
in any scheme passlib knows, each kept as it is until its owner's next sign-in upgrades it."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TextIO

from passlib.context import CryptContext

from service.accounts.passwords import crypt_context
from service.accounts.records import create_account
from service.events import audit
from service.platform.database import DbSession
from service.platform.errors import ServiceError, ValidationFailed

IMPORT_HEADER = ["username", "email", "password_hash"]


@dataclass
class ImportReport:
    """How an import went: how many accounts were made, and which lines were refused and why."""

    imported: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)


def _parses(context: CryptContext, password_hash: str) -> bool:
    """Whether a recognised hash is also well-formed; parsing is cheap, unlike verifying."""
    try:
        context.handler(context.identify(password_hash)).from_string(password_hash)
    except ValueError:
        return False
    return True


def hash_problem(context: CryptContext, password_hash: str) -> str | None:
    """Why an imported hash cannot be kept, or None when it can (an empty one means no password)."""
    if not password_hash:
        return None
    if context.identify(password_hash, required=False) is None:
        return "password_hash is not a hash format this service knows"
    if not _parses(context, password_hash):
        return "password_hash is damaged (cut short or wrongly copied)"
    return None


def check_import_header(header: list[str]) -> None:
    """Refuse a file whose first line is not the expected header."""
    if header != IMPORT_HEADER:
        raise ValidationFailed(
            f"The first line must be the header {','.join(IMPORT_HEADER)}; it is {','.join(header) or 'empty'}."
        )


def import_accounts(
    session: DbSession, rows: TextIO, *, now: datetime, finish_row: Callable[[bool], None]
) -> ImportReport:
    """Create an account per CSV row.

    Each row is a unit of work: `finish_row(True)` after a row whose account was made (the
    door commits it), `finish_row(False)` after a refused one (the door rolls it back), so a
    refused row writes nothing and never stops the rows after it.
    """
    report = ImportReport()
    reader = csv.reader(rows)
    header = [name.strip().lower() for name in next(reader, [])]
    check_import_header(header)
    context = crypt_context()
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(IMPORT_HEADER):
            report.refused.append((line, f"expected 3 columns, found {len(row)}"))
            continue
        username, email, password_hash = (cell.strip() for cell in row)
        problem = hash_problem(context, password_hash)
        if problem is not None:
            report.refused.append((line, problem))
            continue
        try:
            create_account(
                session, username=username, email=email or None, password_hash=password_hash or None,
                actor=audit.CLI, now=now,
            )
        except ServiceError as error:
            finish_row(False)
            report.refused.append((line, str(error.detail)))
            continue
        finish_row(True)
        report.imported += 1
    return report
