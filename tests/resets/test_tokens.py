"""Reset-link tokens: signed, timed, salted per purpose, rotated keys, and a secret kept only as a hash."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select

from service import create_app
from service.models import Account, OutboxMessage, PasswordReset
from service.outbox.queue import open_body
from service.platform.clock import utcnow
from service.platform.errors import TokenExpired, TokenInvalid
from service.platform.extensions import db
from service.resets.issuing import issue_reset
from service.resets.links import (
    RESET_LINK_SALT,
    TOKEN_MAX_LENGTH,
    LinkToken,
    hash_secret,
    make_link_token,
    new_secret,
    read_link_token,
    secret_matches,
)
from service.resets.policy import reset_policy
from tests import conftest

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)



def read_token(token: str) -> LinkToken:
    """Read a token with the current app's reset policy."""
    return read_link_token(token, policy=reset_policy())

@pytest.fixture
def signing_app(tmp_path: Path) -> Flask:
    """An app for tests of signing alone: they touch no database, so one backend is enough."""
    return create_app(conftest.test_settings(f"sqlite:///{tmp_path / 'tokens.db'}"))


def secret_bytes(secret: str) -> bytes:
    """The random bytes behind a URL-safe base64 secret."""
    return base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))


def flip(text: str, position: int) -> str:
    """`text` with one character replaced by a different one."""
    replacement = "A" if text[position] != "A" else "B"
    return text[:position] + replacement + text[position + 1 :]


# --- make and read ----------------------------------------------------------------------------


def test_a_token_reads_back_the_reset_id_and_secret_it_was_made_with(signing_app: Flask) -> None:
    with signing_app.app_context():
        secret = new_secret()
        assert read_token(make_link_token(42, secret)) == LinkToken(reset_id=42, secret=secret)


def test_a_token_with_a_tampered_payload_is_invalid(signing_app: Flask) -> None:
    with signing_app.app_context():
        mine = make_link_token(1, new_secret())
        theirs = make_link_token(2, new_secret())
        # Their payload under my timestamp and signature: the signature no longer matches.
        forged = ".".join([theirs.split(".")[0], *mine.split(".")[1:]])
        assert forged != mine
        with pytest.raises(TokenInvalid):
            read_token(forged)


@pytest.mark.parametrize("part", [0, 1, 2], ids=["payload", "timestamp", "signature"])
def test_a_token_with_any_part_changed_is_invalid(signing_app: Flask, part: int) -> None:
    with signing_app.app_context():
        token = make_link_token(7, new_secret())
        pieces = token.split(".")
        pieces[part] = flip(pieces[part], len(pieces[part]) // 2)
        with pytest.raises(TokenInvalid):
            read_token(".".join(pieces))


def test_a_token_still_reads_just_before_its_max_age(signing_app: Flask) -> None:
    with signing_app.app_context(), time_machine.travel(START, tick=False) as traveller:
        token = make_link_token(3, "secret")
        traveller.shift(timedelta(seconds=signing_app.config["RESET_TOKEN_MAX_AGE"] - 5))
        assert read_token(token).reset_id == 3


def test_a_token_past_its_max_age_is_expired_not_invalid(signing_app: Flask) -> None:
    with signing_app.app_context(), time_machine.travel(START, tick=False) as traveller:
        token = make_link_token(3, "secret")
        traveller.shift(timedelta(seconds=signing_app.config["RESET_TOKEN_MAX_AGE"] + 5))
        # TokenExpired is not a TokenInvalid: catching BadSignature first would answer invalid.
        with pytest.raises(TokenExpired):
            read_token(token)


def test_an_expired_token_that_was_also_tampered_with_is_invalid(signing_app: Flask) -> None:
    with signing_app.app_context(), time_machine.travel(START, tick=False) as traveller:
        token = make_link_token(3, "secret")
        traveller.shift(timedelta(seconds=signing_app.config["RESET_TOKEN_MAX_AGE"] + 5))
        payload, timestamp, signature = token.split(".")
        with pytest.raises(TokenInvalid):
            read_token(".".join([payload, timestamp, flip(signature, 3)]))


# --- keys and salts ---------------------------------------------------------------------------


def test_a_token_signed_with_a_key_listed_in_fallbacks_still_reads(signing_app: Flask) -> None:
    with signing_app.app_context():
        signing_app.config["SECRET_KEY"] = "the-old-key-being-rotated-out"
        token = make_link_token(5, "secret")
        signing_app.config["SECRET_KEY"] = "the-new-key-after-rotation"
        signing_app.config["SECRET_KEY_FALLBACKS"] = ("the-old-key-being-rotated-out",)
        assert read_token(token) == LinkToken(reset_id=5, secret="secret")


def test_new_tokens_are_signed_with_the_current_key_not_a_fallback(signing_app: Flask) -> None:
    with signing_app.app_context():
        signing_app.config["SECRET_KEY"] = "the-new-key-after-rotation"
        signing_app.config["SECRET_KEY_FALLBACKS"] = ("the-old-key-being-rotated-out",)
        token = make_link_token(5, "secret")
        # Once the old key is dropped from the fallbacks, the new token must still read.
        signing_app.config["SECRET_KEY_FALLBACKS"] = ()
        assert read_token(token).reset_id == 5


def test_a_token_signed_with_an_unknown_key_is_invalid(signing_app: Flask) -> None:
    with signing_app.app_context():
        signing_app.config["SECRET_KEY"] = "a-key-nobody-lists-any-more"
        token = make_link_token(5, "secret")
        signing_app.config["SECRET_KEY"] = "the-new-key-after-rotation"
        signing_app.config["SECRET_KEY_FALLBACKS"] = ("some-other-old-key",)
        with pytest.raises(TokenInvalid):
            read_token(token)


@pytest.mark.parametrize(
    ("salt", "reads"),
    [(RESET_LINK_SALT, True), ("resetdesk.email-confirmation", False), ("", False)],
    ids=["reset-link-salt", "another-purpose", "no-salt"],
)
def test_only_a_token_made_with_the_reset_link_salt_reads(signing_app: Flask, salt: str, reads: bool) -> None:
    with signing_app.app_context():
        token = URLSafeTimedSerializer(signing_app.config["SECRET_KEY"], salt=salt).dumps({"r": 9, "s": "secret"})
        if reads:
            assert read_token(token).reset_id == 9
        else:
            with pytest.raises(TokenInvalid):
                read_token(token)


@pytest.mark.parametrize(
    "payload",
    [[9, "secret"], {"r": "9", "s": "secret"}, {"r": 9}, {"s": "secret"}, {"r": 9, "s": 123}, "9:secret"],
    ids=["list", "id-as-string", "no-secret", "no-id", "secret-not-string", "string"],
)
def test_a_correctly_signed_token_with_the_wrong_shape_is_invalid(signing_app: Flask, payload: Any) -> None:
    with signing_app.app_context():
        token = URLSafeTimedSerializer(signing_app.config["SECRET_KEY"], salt=RESET_LINK_SALT).dumps(payload)
        with pytest.raises(TokenInvalid):
            read_token(token)


# --- over-long and garbage --------------------------------------------------------------------


def test_a_correctly_signed_token_longer_than_the_limit_is_refused(signing_app: Flask) -> None:
    with signing_app.app_context():
        long_token = make_link_token(1, secrets.token_urlsafe(TOKEN_MAX_LENGTH))  # random: no compression
        assert len(long_token) > TOKEN_MAX_LENGTH
        with pytest.raises(TokenInvalid):
            read_token(long_token)


@pytest.mark.parametrize(
    "token",
    ["", ".", "..", "a.b.c", "not a token", "eyJyIjoxfQ", "\x00", "ü" * 40, "%2e%2e", "a" * 10_000],
    ids=["empty", "dot", "dots", "three-parts", "words", "bare-payload", "nul", "unicode", "escaped", "huge"],
)
def test_garbage_tokens_are_invalid(signing_app: Flask, token: str) -> None:
    with signing_app.app_context(), pytest.raises(TokenInvalid):
        read_token(token)


@pytest.mark.parametrize(
    "token", ["garbage", "a.b.c", "a/b/c", "x" * 2000, "%C3%BC", "..%2f..%2fetc"], ids=str
)
def test_garbage_tokens_over_http_answer_400_token_invalid_never_500(client: FlaskClient, token: str) -> None:
    response = client.get(f"/api/v1/password-resets/{token}")
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "token_invalid"


# --- the secret ---------------------------------------------------------------------------------


def test_a_new_secret_holds_at_least_128_random_bits() -> None:
    made = {new_secret() for _ in range(200)}
    assert len(made) == 200
    assert all(len(secret_bytes(secret)) >= 16 for secret in made)


def test_the_stored_hash_matches_its_secret_and_nothing_else() -> None:
    secret = new_secret()
    stored = hash_secret(secret)
    assert stored != secret
    assert secret_matches(secret, stored)
    assert not secret_matches(new_secret(), stored)
    assert not secret_matches(secret[:-1], stored)


def issued_link(app: Flask, make_account: Callable[..., Account]) -> tuple[str, int]:
    """Issue a link to a new account as the dispatcher would; returns the token and the reset id."""
    account = make_account()
    with app.app_context():
        issued = issue_reset(
            db.session, db.session.get(Account, account.id), "link", policy=reset_policy(), requested_by="self", ip=None, now=utcnow()
        )
        reset_id = issued.reset_id
        db.session.commit()
        body = open_body(db.session.scalars(select(OutboxMessage.text_body)).one())
    match = re.search(r"/reset-password/(\S+)", body)
    assert match, body
    return match.group(1), reset_id


def test_an_issued_link_carries_a_128_bit_secret_stored_only_as_its_sha256(
    app: Flask, make_account: Callable[..., Account]
) -> None:
    token, reset_id = issued_link(app, make_account)
    with app.app_context():
        link = read_token(token)
        reset = db.session.get(PasswordReset, reset_id)
        assert link.reset_id == reset_id
        assert len(secret_bytes(link.secret)) >= 16
        assert reset.secret_hash == hashlib.sha256(link.secret.encode()).hexdigest()
        assert reset.secret_hash != link.secret


def test_the_raw_secret_of_an_issued_link_appears_nowhere_in_the_database(
    app: Flask, make_account: Callable[..., Account]
) -> None:
    token, _reset_id = issued_link(app, make_account)
    with app.app_context():
        secret = read_token(token).secret
        cells = [
            str(value)
            for table in db.metadata.sorted_tables
            for row in db.session.execute(select(table)).all()
            for value in row
            if value is not None
        ]
    assert any(hash_secret(secret) == cell for cell in cells)  # the scan does see password_resets
    assert not [cell for cell in cells if secret in cell]
