"""The password policy (length, common passwords, username/email, guessability) and the
CryptContext: argon2id for new hashes, legacy hashes verified and upgraded."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import passlib.hash
import pytest
from flask import Flask
from passlib.context import CryptContext

from service.accounts.passwords import (
    LEGACY_SCHEMES,
    PASSWORD_MAX_LENGTH,
    build_crypt_context,
    hash_password,
    password_problems,
    verify_password,
    wrap_legacy_hash,
    wrapped_kind,
)
from tests.conftest import STRONG_PASSWORD

POLICY = {"min_length": 15, "min_score": 3}


def problems(password: str, **kwargs: object) -> list[str]:
    return password_problems(password, **{**POLICY, **kwargs})  # type: ignore[arg-type]


# --- the policy -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    [
        STRONG_PASSWORD,
        "purple elephants juggle quietly",
        "my cat prefers the blue chair at noon",
        "Grüne Äpfel schmecken sonntags besser",
    ],
)
def test_a_long_passphrase_is_accepted(password: str) -> None:
    assert problems(password) == []


def test_a_password_at_exactly_the_minimum_is_judged_on_guessability_not_length() -> None:
    password = "tqv-8Lm!r2Zp#wK"  # 15 characters, random
    assert len(password) == 15
    assert problems(password) == []


def test_too_short_is_refused_at_the_default_minimum_of_15() -> None:
    result = problems("uxq7 ZK!p3 wv9")  # 14 characters, otherwise strong
    assert len(result) == 1
    assert "at least 15 characters" in result[0]
    assert "14" in result[0]


def test_too_short_is_refused_at_a_custom_minimum() -> None:
    result = problems("uxq7ZK!p3wv", min_length=12)
    assert result and "at least 12 characters" in result[0]


def test_a_custom_minimum_lets_shorter_passwords_in() -> None:
    assert problems("uxq7ZK!p3wv9", min_length=12) == []
    assert problems("uxq7ZK!p3wv9") != []


def test_over_256_characters_is_refused() -> None:
    at_limit = ("wild orchids hum " * 20)[:PASSWORD_MAX_LENGTH]
    assert len(at_limit) == PASSWORD_MAX_LENGTH
    assert problems(at_limit) == []
    result = problems(at_limit + "x")
    assert result and f"at most {PASSWORD_MAX_LENGTH} characters" in result[0]


@pytest.mark.parametrize("password", ["1qaz2wsx3edc4rfv", "1QAZ2WSX3EDC4RFV", "q1w2e3r4t5y6u7i8o9p0"])
def test_a_common_password_from_zxcvbns_list_is_refused(password: str) -> None:
    result = problems(password)
    assert result and "common password" in result[0]


def test_the_username_is_refused_as_password() -> None:
    result = problems("Marmaladeprincess", username="marmaladeprincess")
    assert result and "username" in result[0]


def test_the_username_is_refused_however_spaced() -> None:
    result = problems("marmaladeprincess", username="  MarmaladePrincess ")
    assert result and "username" in result[0]


def test_the_emails_local_part_is_refused_as_password() -> None:
    result = problems("quentin.marmalade", email="quentin.marmalade@example.com")
    assert result and "email" in result[0]


def test_a_password_containing_the_username_is_judged_weaker() -> None:
    # zxcvbn is given the username: a password built on it scores low.
    assert problems("zebulonquixote1", username="zebulonquixote") != []


@pytest.mark.parametrize("password", ["aaaaaaaaaaaaaaaa", "abcdefghijklmnop", "passwordpassword"])
def test_a_password_with_a_low_zxcvbn_score_is_refused(password: str) -> None:
    result = problems(password)
    assert result and result[0].startswith("This password is too easy to guess.")


def test_a_lower_minimum_score_accepts_what_the_default_refuses() -> None:
    assert problems("1234567890123456") != []
    assert problems("1234567890123456", min_score=0) == []


def test_length_counts_composed_characters_once() -> None:
    # "e" + combining acute is two code points but one character in NFC.
    password = "e\u0301" * 14
    assert len(password) == 28
    result = problems(password)
    assert result and "at least 15 characters; this one has 14" in result[0]


def test_length_is_what_was_typed_not_what_nfkc_expands_it_to() -> None:
    # U+FDFA is one character that NFKC expands into eighteen.
    result = problems("\ufdfa")
    assert result and "at least 15 characters; this one has 1" in result[0]
    # "㎏" is one character typed, two ("kg") after NFKC: 130 of them are 130, not 260.
    assert not any("at most" in problem for problem in problems("\u338f" * 130))


def test_fullwidth_letters_count_as_their_ascii_forms() -> None:
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in "1qaz2wsx3edc4rfv")
    result = problems(fullwidth)
    assert result and "common password" in result[0]


@pytest.mark.parametrize(
    "password, kwargs",
    [
        ("short", {}),
        ("x" * 300, {}),
        ("1qaz2wsx3edc4rfv", {}),
        ("marmaladeprincess", {"username": "marmaladeprincess"}),
        ("quentin.marmalade", {"email": "quentin.marmalade@example.com"}),
        ("aaaaaaaaaaaaaaaa", {}),
        ("qwertyuiopasdfgh", {}),
    ],
)
def test_problems_are_plain_sentences(password: str, kwargs: dict[str, str]) -> None:
    result = problems(password, **kwargs)
    assert result
    for message in result:
        assert re.fullmatch(r"[A-Z][^{}\[\]<>\\]*[.!]", message), message
        assert "zxcvbn" not in message.lower()
        assert "None" not in message
        assert "  " not in message


# --- hashing ----------------------------------------------------------------------------------


@pytest.fixture
def crypt_app() -> Iterator[Flask]:
    """A bare app holding the cheap test context, for the functions that read current_app."""
    app = Flask("crypt-test")
    app.extensions["resetdesk.crypt"] = build_crypt_context(cheap=True)
    with app.app_context():
        yield app


def test_new_hashes_are_argon2id_at_owasps_setting() -> None:
    context = build_crypt_context()
    new_hash = context.hash(STRONG_PASSWORD)
    assert new_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert context.verify(STRONG_PASSWORD, new_hash)
    assert not context.verify("something else entirely", new_hash)


def test_an_argon2id_hash_at_the_current_setting_needs_no_upgrade() -> None:
    context = build_crypt_context()
    assert not context.needs_update(context.hash(STRONG_PASSWORD))


def test_a_weaker_argon2_hash_is_upgraded_to_the_current_setting() -> None:
    weak = build_crypt_context(cheap=True).hash(STRONG_PASSWORD)
    context = build_crypt_context()
    matched, new_hash = context.verify_and_update(STRONG_PASSWORD, weak)
    assert matched
    assert new_hash is not None and new_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_hash_password_uses_argon2id(crypt_app: Flask) -> None:
    assert hash_password(STRONG_PASSWORD).startswith("$argon2id$")


def test_passwords_are_hashed_after_nfkc(crypt_app: Flask) -> None:
    stored = hash_password("ｃｏｒｒｅｃｔ horse battery staple")
    assert verify_password(STRONG_PASSWORD, stored)[0] is True


# Cheap rounds so the suite stays fast; the scheme is what matters here.
LEGACY_HASHERS = {
    "bcrypt": passlib.hash.bcrypt.using(rounds=4),
    "bcrypt_sha256": passlib.hash.bcrypt_sha256.using(rounds=4),
    "pbkdf2_sha256": passlib.hash.pbkdf2_sha256.using(rounds=1000),
    "sha256_crypt": passlib.hash.sha256_crypt.using(rounds=1000),
    "sha512_crypt": passlib.hash.sha512_crypt.using(rounds=1000),
    "md5_crypt": passlib.hash.md5_crypt,
    "phpass": passlib.hash.phpass.using(rounds=7),
    "django_pbkdf2_sha256": passlib.hash.django_pbkdf2_sha256.using(rounds=1000),
}


def test_every_legacy_scheme_has_a_hasher_here() -> None:
    assert set(LEGACY_HASHERS) == set(LEGACY_SCHEMES)


# How a legacy hash is stored: wrapped in argon2id as an import keeps it, or bare as it came.
STORED_FORMS = {"wrapped": wrap_legacy_hash, "bare": lambda legacy: legacy}


@pytest.fixture(params=list(STORED_FORMS))
def stored(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Turn a legacy hash into its stored form."""
    form: Callable[[str], str] = STORED_FORMS[request.param]
    return form


@pytest.mark.parametrize("scheme", LEGACY_SCHEMES)
def test_a_legacy_hash_verifies_and_comes_back_as_argon2id(
    crypt_app: Flask, stored: Callable[[str], str], scheme: str
) -> None:
    legacy = LEGACY_HASHERS[scheme].hash(STRONG_PASSWORD)
    assert CryptContext([scheme]).identify(legacy) == scheme
    matched, new_hash = verify_password(STRONG_PASSWORD, stored(legacy))
    assert matched is True
    assert new_hash is not None and new_hash.startswith("$argon2id$")
    assert verify_password(STRONG_PASSWORD, new_hash) == (True, None)


@pytest.mark.parametrize("scheme", LEGACY_SCHEMES)
def test_a_legacy_hash_refuses_a_wrong_password(crypt_app: Flask, stored: Callable[[str], str], scheme: str) -> None:
    legacy = LEGACY_HASHERS[scheme].hash(STRONG_PASSWORD)
    assert verify_password("purple elephants juggle quietly", stored(legacy)) == (False, None)


@pytest.mark.parametrize("scheme", LEGACY_SCHEMES)
def test_a_wrapped_hash_keeps_the_settings_and_argon2id_but_not_the_legacy_digest(crypt_app: Flask, scheme: str) -> None:
    legacy = LEGACY_HASHERS[scheme].hash(STRONG_PASSWORD)
    parsed = CryptContext([scheme]).handler(scheme).from_string(legacy)
    # Each of these schemes writes its digest last; pbkdf2's is bytes, written after a "$".
    digest = parsed.checksum if isinstance(parsed.checksum, str) else legacy.rsplit("$", 1)[1]
    assert legacy.endswith(digest) and len(digest) >= 22
    wrapped = wrap_legacy_hash(legacy)
    assert wrapped.startswith(f"wrapped:{scheme}:")
    assert digest not in wrapped
    assert legacy.removesuffix(digest) in wrapped  # the scheme, cost and salt: what recomputing needs
    assert ":$argon2id$" in wrapped
    assert wrapped_kind(wrapped) == f"{scheme}:{getattr(parsed, 'rounds', None) or '-'}"


@pytest.mark.parametrize(
    "damaged",
    ["wrapped:", "wrapped:bcrypt:4:$2b$04$x", "wrapped:nosuch:1:$x$:$argon2id$v=19$m=8,t=1,p=1$a$b",
     "wrapped:md5_crypt:-:$1$abcdefgh$......................:$1$abcdefgh$aaaaaaaaaaaaaaaaaaaaaa"],
)
def test_a_damaged_wrapped_hash_matches_nothing(crypt_app: Flask, damaged: str) -> None:
    assert verify_password(STRONG_PASSWORD, damaged) == (False, None)
    assert wrapped_kind(damaged) is None


def test_only_legacy_hashes_are_wrapped(crypt_app: Flask) -> None:
    with pytest.raises(ValueError):
        wrap_legacy_hash(hash_password(STRONG_PASSWORD))
    with pytest.raises(ValueError):
        wrap_legacy_hash("garbage")


@pytest.mark.parametrize("scheme", ["bcrypt", "pbkdf2_sha256", "md5_crypt"])
@pytest.mark.parametrize(
    "typed",
    [
        "correct\u00a0horse battery staple",  # a non-breaking space
        "ｃｏｒｒｅｃｔ horse battery staple",  # fullwidth letters
        "cafe\u0301 horse battery staple",  # a decomposed accent
    ],
    ids=["nbsp", "fullwidth", "decomposed"],
)
def test_a_legacy_hash_matches_the_password_as_its_old_system_hashed_it(
    crypt_app: Flask, stored: Callable[[str], str], scheme: str, typed: str
) -> None:
    legacy = LEGACY_HASHERS[scheme].hash(typed)  # old systems hashed the bytes as typed
    matched, new_hash = verify_password(typed, stored(legacy))
    assert matched is True
    assert new_hash is not None and verify_password(typed, new_hash)[0] is True


def test_a_legacy_hash_also_matches_the_nfkc_form(crypt_app: Flask, stored: Callable[[str], str]) -> None:
    legacy = LEGACY_HASHERS["pbkdf2_sha256"].hash(STRONG_PASSWORD)
    assert verify_password("ｃｏｒｒｅｃｔ horse battery staple", stored(legacy))[0] is True


def test_a_bcrypt_hash_of_a_long_password_matches_as_old_systems_truncated(
    crypt_app: Flask, stored: Callable[[str], str]
) -> None:
    import bcrypt

    typed = "a long passphrase that goes well past the seventy-two bytes bcrypt ever reads, as some do"
    assert len(typed.encode()) > 72
    legacy = stored(bcrypt.hashpw(typed.encode()[:72], bcrypt.gensalt(rounds=4)).decode())
    matched, new_hash = verify_password(typed, legacy)
    assert matched is True
    assert new_hash is not None and verify_password(typed, new_hash) == (True, None)
    assert verify_password(typed[:60] + "something else entirely", legacy)[0] is False


@pytest.mark.parametrize(
    "stored",
    [None, "", "garbage", "$argon2id$v=19$m=8,t=1,p=1$broken", "$2b$04$tooshort", "*", "!" + "x" * 60],
)
def test_verify_password_on_a_missing_or_garbage_hash_is_false(crypt_app: Flask, stored: str | None) -> None:
    assert verify_password(STRONG_PASSWORD, stored) == (False, None)


def test_verify_password_of_a_current_hash_returns_no_replacement(crypt_app: Flask) -> None:
    stored = hash_password(STRONG_PASSWORD)
    assert verify_password(STRONG_PASSWORD, stored) == (True, None)
    assert verify_password("purple elephants juggle quietly", stored) == (False, None)
