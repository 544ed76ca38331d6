"""Accounts from an older system: importing a CSV of usernames, emails and password hashes in
any scheme passlib knows (each legacy hash kept wrapped in argon2id until its owner's next
sign-in rehashes it), and the legacy work every failed sign-in does while any remains."""

from __future__ import annotations

import contextlib
import csv
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TextIO

from flask import current_app
from passlib.context import CryptContext
from sqlalchemy import select

from service.accounts.passwords import WRAPPED_PREFIX, check_wrapped, crypt_context, wrap_legacy_hash, wrapped_kind
from service.accounts.records import create_account
from service.events import audit
from service.models import Account
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
        if password_hash and context.identify(password_hash) != "argon2":
            password_hash = wrap_legacy_hash(password_hash)
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
    legacy_samples().forget()  # this process at once; other processes within SAMPLES_KEPT
    return report


# --- the same legacy work for every failed sign-in ----------------------------------------------
#
# A wrong password for an account with a wrapped legacy hash costs that scheme's computation
# (bcrypt at cost 12: about 250 ms) on top of what any failed sign-in costs. So that timing
# cannot tell such an account from a missing username (or an argon2id account), every failed
# sign-in checks the password against one wrapped hash of each legacy kind (scheme and cost)
# present, except the kind its own account's check already paid for. The check is the real
# one (check_wrapped against a real stored hash), so its cost is the same by construction.
# Which kinds remain is asked of the database, and kept in memory for SAMPLES_KEPT.

SAMPLES_KEPT = timedelta(seconds=60)


class LegacySamples:
    """One stored wrapped hash per legacy kind present, as last read from the database."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: dict[str, str] = {}
        self._read_at: datetime | None = None

    def current(self, session: DbSession, now: datetime) -> dict[str, str]:
        """The samples, read again once they are older than SAMPLES_KEPT."""
        with self._lock:
            if self._read_at is None or not self._read_at <= now < self._read_at + SAMPLES_KEPT:
                self._samples = find_legacy_samples(session)
                self._read_at = now
            return dict(self._samples)

    def add(self, stored_hash: str) -> None:
        """Count a wrapped hash met at sign-in whose kind was not read yet (say, just imported)."""
        kind = wrapped_kind(stored_hash)
        if kind is not None:
            with self._lock:
                self._samples.setdefault(kind, stored_hash)

    def forget(self) -> None:
        """Read the database again at the next sign-in."""
        with self._lock:
            self._read_at = None


def legacy_samples() -> LegacySamples:
    """The current app's samples (made in create_app)."""
    samples: LegacySamples = current_app.extensions["resetdesk.legacy_samples"]
    return samples


def find_legacy_samples(session: DbSession) -> dict[str, str]:
    """One stored wrapped hash per legacy kind present: one query per kind (and per damaged
    wrapped hash, which the service never writes), plus one."""
    samples: dict[str, str] = {}
    damaged: list[str] = []
    while True:
        query = select(Account.password_hash).where(Account.password_hash.startswith(WRAPPED_PREFIX))
        for known in samples:
            query = query.where(~Account.password_hash.startswith(f"{WRAPPED_PREFIX}{known}:", autoescape=True))
        if damaged:
            query = query.where(Account.password_hash.not_in(damaged))
        stored_hash = session.scalar(query.limit(1))
        if stored_hash is None:
            return samples
        kind = wrapped_kind(stored_hash)
        if kind is None:
            damaged.append(stored_hash)
        elif kind in samples:  # cannot happen (the query excludes it); never loop on it
            return samples
        else:
            samples[kind] = stored_hash


def spend_legacy_checks(session: DbSession, password: str, *, checked_hash: str | None, now: datetime) -> None:
    """After a failed password check against `checked_hash` (None for a missing name), check
    the password against one wrapped hash of each legacy kind present but the checked one's."""
    samples = legacy_samples()
    checked_kind = wrapped_kind(checked_hash)
    present = samples.current(session, now)
    if checked_hash is not None and checked_kind is not None and checked_kind not in present:
        samples.add(checked_hash)
    for kind, sample in present.items():
        if kind != checked_kind:
            with contextlib.suppress(ValueError):
                check_wrapped(password, sample)  # the answer does not matter, only the work
