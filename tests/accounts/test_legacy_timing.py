"""Imported legacy hashes: kept wrapped in argon2id, never as a fast legacy digest; and while any
remains, every failed sign-in does the same legacy work, so timing does not tell them apart."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import argon2.low_level
import bcrypt
import passlib.hash
import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from passlib.context import CryptContext
from sqlalchemy import select

from service.accounts.passwords import LEGACY_SCHEMES
from service.accounts.signin import sign_in
from service.models import Account
from service.platform.clock import utcnow
from service.platform.extensions import db
from tests.conftest import OTHER_STRONG_PASSWORD, STRONG_PASSWORD, database_dump

# Cheap costs so the suite stays fast; the schemes and their settings are what matter here.
CHEAP_HASHERS: dict[str, Any] = {
    "bcrypt": passlib.hash.bcrypt.using(rounds=4),
    "bcrypt_sha256": passlib.hash.bcrypt_sha256.using(rounds=4),
    "pbkdf2_sha256": passlib.hash.pbkdf2_sha256.using(rounds=1000),
    "sha256_crypt": passlib.hash.sha256_crypt.using(rounds=1000),
    "sha512_crypt": passlib.hash.sha512_crypt.using(rounds=1000),
    "md5_crypt": passlib.hash.md5_crypt,
    "phpass": passlib.hash.phpass.using(rounds=7),
    "django_pbkdf2_sha256": passlib.hash.django_pbkdf2_sha256.using(rounds=1000),
}


def write_import(path: Path, rows: list[tuple[str, str]]) -> Path:
    """A CSV of (username, password hash) rows, as an older system hands it over."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["username", "email", "password_hash"])
        for username, password_hash in rows:
            writer.writerow([username, f"{username}@example.com", password_hash])
    return path


def import_rows(runner: FlaskCliRunner, tmp_path: Path, rows: list[tuple[str, str]]) -> None:
    result = runner.invoke(args=["users", "import", str(write_import(tmp_path / "import.csv", rows))])
    assert f"Imported {len(rows)} account(s)" in result.output, result.output


def stored_hash(app: Flask, username: str) -> str | None:
    with app.app_context():
        return db.session.scalar(select(Account.password_hash).where(Account.username == username))


def attempt(app: Flask, username: str, password: str, now: datetime | None = None) -> bool:
    """One sign-in through the rule, committed as the door does; whether it succeeded."""
    with app.app_context():
        outcome = sign_in(db.session, username, password, ip="192.0.2.1", now=now or utcnow())
        db.session.commit()
        return outcome.succeeded


def legacy_digest(legacy_hash: str) -> str:
    """The part of a legacy hash that a fast offline guess is checked against."""
    scheme = CryptContext(LEGACY_SCHEMES).identify(legacy_hash)
    checksum = CryptContext([scheme]).handler(scheme).from_string(legacy_hash).checksum
    return checksum if isinstance(checksum, str) else checksum.hex()


@pytest.fixture
def bcrypt_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], int]]:
    """How many bcrypt computations ran since the fixture was set up (passlib calls bcrypt.hashpw)."""
    calls = [0]
    real_hashpw = bcrypt.hashpw

    def counting_hashpw(password: bytes, salt: bytes) -> bytes:
        calls[0] += 1
        return real_hashpw(password, salt)

    monkeypatch.setattr(bcrypt, "hashpw", counting_hashpw)
    yield lambda: calls[0]


def counted(calls: Callable[[], int], action: Callable[[], object]) -> int:
    before = calls()
    action()
    return calls() - before


# --- at import: no fast legacy digest is kept ----------------------------------------------------


def test_the_database_holds_no_legacy_digest_after_an_import(app: Flask, runner: FlaskCliRunner, tmp_path: Path) -> None:
    rows = [(f"user_{scheme}", hasher.hash(STRONG_PASSWORD)) for scheme, hasher in CHEAP_HASHERS.items()]
    import_rows(runner, tmp_path, rows)
    dump = database_dump(app)
    for username, legacy_hash in rows:
        assert legacy_digest(legacy_hash) not in dump, username
        assert legacy_hash not in dump, username
        assert (stored_hash(app, username) or "").startswith("wrapped:")


@pytest.mark.parametrize("scheme", LEGACY_SCHEMES)
def test_an_imported_account_signs_in_with_its_old_password_and_is_rehashed_to_argon2id(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, scheme: str
) -> None:
    import_rows(runner, tmp_path, [("imported", CHEAP_HASHERS[scheme].hash(STRONG_PASSWORD))])
    assert attempt(app, "imported", OTHER_STRONG_PASSWORD) is False
    assert (stored_hash(app, "imported") or "").startswith("wrapped:")
    assert attempt(app, "imported", STRONG_PASSWORD) is True
    assert (stored_hash(app, "imported") or "").startswith("$argon2id$")
    assert attempt(app, "imported", STRONG_PASSWORD) is True


def test_an_argon2_hash_in_an_import_is_kept_as_it_is(app: Flask, runner: FlaskCliRunner, tmp_path: Path) -> None:
    argon2_hash = passlib.hash.argon2.using(memory_cost=64, rounds=1, parallelism=1).hash(STRONG_PASSWORD)
    import_rows(runner, tmp_path, [("modern", argon2_hash)])
    assert stored_hash(app, "modern") == argon2_hash


# --- failed sign-ins: the same legacy work for every name ---------------------------------------


def test_without_legacy_accounts_a_failed_sign_in_does_no_legacy_work(
    app: Flask, make_account: Callable[..., Account], bcrypt_calls: Callable[[], int]
) -> None:
    make_account("jane")
    assert counted(bcrypt_calls, lambda: attempt(app, "nobody_here", STRONG_PASSWORD)) == 0
    assert counted(bcrypt_calls, lambda: attempt(app, "jane", OTHER_STRONG_PASSWORD)) == 0


def test_while_a_bcrypt_account_exists_every_failed_sign_in_runs_one_bcrypt(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, make_account: Callable[..., Account],
    bcrypt_calls: Callable[[], int],
) -> None:
    make_account("jane")
    import_rows(runner, tmp_path, [("imported", CHEAP_HASHERS["bcrypt"].hash(STRONG_PASSWORD))])
    attempt(app, "warm_up_name", OTHER_STRONG_PASSWORD)  # passlib loads its bcrypt backend once
    assert counted(bcrypt_calls, lambda: attempt(app, "imported", OTHER_STRONG_PASSWORD)) == 1  # its own check
    assert counted(bcrypt_calls, lambda: attempt(app, "nobody_here", OTHER_STRONG_PASSWORD)) == 1  # a missing name
    assert counted(bcrypt_calls, lambda: attempt(app, "jane", OTHER_STRONG_PASSWORD)) == 1  # an argon2id account


def test_a_failed_sign_in_runs_the_same_checks_in_the_same_order_for_every_name(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, make_account: Callable[..., Account],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Not only the count: an argon2id check leaves the caches cold for what follows, so the
    # order shows in the time too (measured: 1.5 to 2 ms over HTTP when it differed).
    make_account("jane")
    import_rows(runner, tmp_path, [("imported", CHEAP_HASHERS["bcrypt"].hash(STRONG_PASSWORD))])
    attempt(app, "warm_up_name", OTHER_STRONG_PASSWORD)
    trace: list[str] = []
    real_hashpw, real_verify_secret = bcrypt.hashpw, argon2.low_level.verify_secret

    def traced_hashpw(password: bytes, salt: bytes) -> bytes:
        trace.append("legacy")
        return real_hashpw(password, salt)

    def traced_verify_secret(*args: Any) -> bool:
        trace.append("argon2id")
        return real_verify_secret(*args)

    monkeypatch.setattr(bcrypt, "hashpw", traced_hashpw)
    monkeypatch.setattr(argon2.low_level, "verify_secret", traced_verify_secret)
    traces = {}
    for name in ("imported", "nobody_here", "jane"):
        trace.clear()
        attempt(app, name, OTHER_STRONG_PASSWORD)
        traces[name] = list(trace)
    assert traces["imported"] == traces["nobody_here"] == traces["jane"], traces
    assert traces["nobody_here"] == ["argon2id", "legacy", "argon2id", "argon2id"]


def test_each_legacy_kind_present_costs_one_check_for_every_name(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, bcrypt_calls: Callable[[], int]
) -> None:
    import_rows(runner, tmp_path, [
        ("cost_four", passlib.hash.bcrypt.using(rounds=4).hash(STRONG_PASSWORD)),
        ("cost_five", passlib.hash.bcrypt.using(rounds=5).hash(STRONG_PASSWORD)),
        ("also_four", passlib.hash.bcrypt.using(rounds=4).hash(OTHER_STRONG_PASSWORD)),
    ])
    attempt(app, "warm_up_name", "a password nobody has")
    for name in ("cost_four", "cost_five", "also_four", "nobody_here"):
        assert counted(bcrypt_calls, lambda name=name: attempt(app, name, "a password nobody has")) == 2, name


def test_once_the_last_legacy_account_is_rehashed_failed_sign_ins_stop_the_legacy_work(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, bcrypt_calls: Callable[[], int]
) -> None:
    import_rows(runner, tmp_path, [("imported", CHEAP_HASHERS["bcrypt"].hash(STRONG_PASSWORD))])
    now = utcnow()
    attempt(app, "warm_up_name", OTHER_STRONG_PASSWORD, now)
    assert attempt(app, "imported", STRONG_PASSWORD, now) is True  # rehashed to argon2id
    later = now + timedelta(minutes=5)  # past the time the legacy samples are kept in memory
    assert counted(bcrypt_calls, lambda: attempt(app, "nobody_here", OTHER_STRONG_PASSWORD, later)) == 0


def test_a_damaged_wrapped_hash_does_not_hide_the_kinds_after_it(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path, make_account: Callable[..., Account],
    bcrypt_calls: Callable[[], int],
) -> None:
    make_account("damaged", password_hash="wrapped:bcrypt:4:cut short")  # the lowest id: found first
    import_rows(runner, tmp_path, [("imported", CHEAP_HASHERS["bcrypt"].hash(STRONG_PASSWORD))])
    attempt(app, "warm_up_name", OTHER_STRONG_PASSWORD)
    assert counted(bcrypt_calls, lambda: attempt(app, "nobody_here", OTHER_STRONG_PASSWORD)) == 1
    assert attempt(app, "damaged", STRONG_PASSWORD) is False
