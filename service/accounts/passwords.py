"""Password hashing (one passlib CryptContext) and the password policy."""

from __future__ import annotations

import secrets
import threading
import unicodedata
from dataclasses import dataclass
from functools import cache
from weakref import WeakKeyDictionary

from flask import current_app
from flask_babel import gettext as _
from passlib.context import CryptContext
from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from service.accounts.breached import is_breached
from service.platform.config import settings
from service.platform.errors import FieldError, WeakPassword
from service.platform.i18n import current_language

PASSWORD_MAX_LENGTH = 256
# bcrypt reads at most this many bytes of a password; older libraries silently ignored the rest.
BCRYPT_MAX_BYTES = 72

# Schemes a shop's older systems used; verified once, then rehashed to argon2id.
LEGACY_SCHEMES = [
    "bcrypt",
    "bcrypt_sha256",
    "pbkdf2_sha256",
    "sha256_crypt",
    "sha512_crypt",
    "md5_crypt",
    "phpass",
    "django_pbkdf2_sha256",
]

# argon2id at OWASP's first recommended setting: 19 MiB, 2 passes, 1 lane. It is the floor
# OWASP accepts; we stay on it because every sign-in and reset pays for it on the request path
# (about 30 ms of one core here), and more memory per hash multiplies by worker count.
ARGON2_MEMORY_KIB = 19 * 1024
ARGON2_PASSES = 2
ARGON2_LANES = 1

_zxcvbn_lock = threading.Lock()


def build_crypt_context(cheap: bool = False) -> CryptContext:
    """The context: argon2id for new hashes, legacy schemes verified and marked for upgrade.

    `cheap` makes argon2id nearly free, for test suites only (the config refuses it in production).
    """
    memory, passes = (8, 1) if cheap else (ARGON2_MEMORY_KIB, ARGON2_PASSES)
    return CryptContext(
        schemes=["argon2", *LEGACY_SCHEMES],
        default="argon2",
        deprecated="auto",
        argon2__type="ID",
        argon2__memory_cost=memory,
        argon2__rounds=passes,
        argon2__parallelism=ARGON2_LANES,
    )


def crypt_context() -> CryptContext:
    """The current app's context."""
    return current_app.extensions["resetdesk.crypt"]


def normalise_password(password: str) -> str:
    """NFKC, so the same password typed on two keyboards hashes the same."""
    return unicodedata.normalize("NFKC", password)


def hash_password(password: str) -> str:
    """An argon2id hash of the normalised password."""
    password_hash: str = crypt_context().hash(normalise_password(password))
    return password_hash


_dummy_hashes: WeakKeyDictionary[CryptContext, str] = WeakKeyDictionary()


def dummy_hash(context: CryptContext) -> str:
    """What a password is checked against when there is no hash to check: the context's own
    kind of hash (its scheme, its parameters) of a random secret nobody knows, made once."""
    found = _dummy_hashes.get(context)
    if found is None:
        found = _dummy_hashes.setdefault(context, context.hash(secrets.token_urlsafe(32)))
    return found


def spend_dummy(context: CryptContext, password: str) -> None:
    """The work of a wrong password against a real hash, by the same calls: what a missing
    name, an account without a password or a damaged hash costs."""
    checked = dummy_hash(context)
    context.identify(checked, required=False)
    context.identify(checked)
    context.verify_and_update(normalise_password(password), checked)


def verify_password(password: str, stored_hash: str | None) -> tuple[bool, str | None]:
    """Check a password; on success also return a new hash when the stored one is outdated.

    An account without a hash, or with one no scheme recognises, is checked against the dummy
    hash by the very calls a real one goes through, so that neither can be told apart by time
    (passlib's dummy_verify would skip the identification and the password's normal form).
    """
    context = crypt_context()
    if stored_hash and stored_hash.startswith(WRAPPED_PREFIX):
        return _verify_wrapped(context, password, stored_hash)
    checked = stored_hash or dummy_hash(context)
    if context.identify(checked, required=False) is None:
        checked = dummy_hash(context)
    scheme = context.identify(checked)
    if scheme != "argon2":
        return _verify_legacy(context, scheme, password, checked)
    try:
        matched, new_hash = context.verify_and_update(normalise_password(password), checked)
    except ValueError:
        # A hash that names a known scheme but is damaged (say, cut short in an import)
        # matches nothing; passlib raises ValueError for it rather than answering False.
        spend_dummy(context, password)
        return False, None
    if checked is not stored_hash:
        return False, None
    return matched, new_hash


def legacy_candidates(password: str, scheme: str) -> list[str | bytes]:
    """What an older system may have hashed for this password: the password as typed (its
    hash was made from the bytes people typed, not a normal form), then its NFKC form; for
    bcrypt, cut to bcrypt's 72 bytes, as every old system did (bcrypt 5 refuses longer)."""
    forms = list(dict.fromkeys([password, normalise_password(password)]))
    if scheme != "bcrypt":
        return list(forms)
    return list(dict.fromkeys(form.encode()[:BCRYPT_MAX_BYTES] for form in forms))


def _verify_legacy(context: CryptContext, scheme: str, password: str, stored_hash: str) -> tuple[bool, str | None]:
    """Check a bare legacy hash (imports keep them wrapped; see wrap_legacy_hash) against each
    form its system may have hashed; on a match the password is rehashed to argon2id."""
    try:
        matched = any(context.verify(candidate, stored_hash) for candidate in legacy_candidates(password, scheme))
    except ValueError:
        spend_dummy(context, password)
        return False, None
    if matched:
        return True, hash_password(password)
    spend_dummy(context, password)
    return False, None


# --- imported legacy hashes, wrapped in argon2id ------------------------------------------------
#
# An imported hash is not kept as it came: a bcrypt, pbkdf2 or md5_crypt digest in the database
# could be attacked offline at that scheme's speed. What is kept is
#     wrapped:<scheme>:<cost>:<the legacy settings, digest blanked>:<argon2id of the legacy digest>
# Checking a password recomputes the legacy digest with the same settings (salt, cost), then
# checks that digest against the argon2id hash; a success rehashes the password to plain
# argon2id. `<scheme>:<cost>` is the hash's kind: what one check costs. It comes first so
# that the database can be asked which kinds remain (service/accounts/legacy.py).

WRAPPED_PREFIX = "wrapped:"


@dataclass(frozen=True)
class WrappedHash:
    """The parts of a wrapped legacy hash."""

    scheme: str
    cost: str
    settings: str
    wrapper: str

    @property
    def kind(self) -> str:
        """`<scheme>:<cost>`: hashes of one kind cost the same to check."""
        return f"{self.scheme}:{self.cost}"

    def __str__(self) -> str:
        return f"{WRAPPED_PREFIX}{self.kind}:{self.settings}:{self.wrapper}"


def parse_wrapped(stored_hash: str) -> WrappedHash:
    """Split a stored wrapped hash; ValueError when it is not one, or is damaged."""
    if not stored_hash.startswith(WRAPPED_PREFIX):
        raise ValueError("not a wrapped legacy hash")
    # No legacy settings or argon2id hash contains ":" (wrap_legacy_hash refuses one that does).
    parts = stored_hash.removeprefix(WRAPPED_PREFIX).split(":")
    if len(parts) != 4 or parts[0] not in LEGACY_SCHEMES:
        raise ValueError("damaged wrapped legacy hash")
    wrapped = WrappedHash(*parts)
    if crypt_context().identify(wrapped.wrapper, required=False) != "argon2":
        raise ValueError("damaged wrapped legacy hash")
    return wrapped


def wrapped_kind(stored_hash: str | None) -> str | None:
    """The kind (`<scheme>:<cost>`) of a stored wrapped hash; None for any other hash."""
    if not stored_hash or not stored_hash.startswith(WRAPPED_PREFIX):
        return None
    try:
        return parse_wrapped(stored_hash).kind
    except ValueError:
        return None


def _digest_text(checksum: str | bytes) -> str:
    # Most schemes keep their digest as text; pbkdf2's is raw bytes.
    return checksum if isinstance(checksum, str) else checksum.hex()


def wrap_legacy_hash(legacy_hash: str) -> str:
    """The stored form of an imported legacy hash: its settings and argon2id over its digest.

    Raises ValueError for a hash that is not a well-formed legacy hash.
    """
    context = crypt_context()
    scheme = context.identify(legacy_hash, required=False)
    if scheme not in LEGACY_SCHEMES:
        raise ValueError("not a legacy hash")
    parsed = context.handler(scheme).from_string(legacy_hash)
    digest = _digest_text(parsed.checksum)
    # passlib parses settings only with a digest in place: keep its blank placeholder there.
    parsed.checksum = parsed._stub_checksum
    settings = parsed.to_string()
    if ":" in settings:
        raise ValueError("legacy hash settings contain ':'")
    cost = str(getattr(parsed, "rounds", None) or "-")
    return str(WrappedHash(scheme, cost, settings, context.hash(digest)))


def check_wrapped(password: str, stored_hash: str) -> bool:
    """Whether the password matches a wrapped legacy hash: for each form its old system may
    have hashed, one legacy computation and one argon2id check. ValueError when damaged."""
    context = crypt_context()
    wrapped = parse_wrapped(stored_hash)
    template = context.handler(wrapped.scheme).from_string(wrapped.settings)
    for candidate in legacy_candidates(password, wrapped.scheme):
        # The same computation as the scheme's own hash(), with the stored salt and cost.
        digest = _digest_text(template._calc_checksum(candidate))
        if context.verify(digest, wrapped.wrapper):
            return True
    return False


def _verify_wrapped(context: CryptContext, password: str, stored_hash: str) -> tuple[bool, str | None]:
    """Check a wrapped legacy hash; on a match the password is rehashed to argon2id the way
    new passwords are (from its NFKC form)."""
    # What a missing username costs first (the dummy argon2id), then the legacy check:
    # a missing name runs the dummy and then the legacy stand-in (legacy.spend_legacy_checks),
    # so this account runs the same work in the same order. The order matters: the dummy's
    # 19 MiB leaves the caches cold for what follows, and measured over HTTP the other order
    # made a missing name 1.5 to 2 ms slower (bench/README.md). On a match the dummy is spent
    # once more than needed, at most once per imported account (it is rehashed then).
    spend_dummy(context, password)
    try:
        matched = check_wrapped(password, stored_hash)
    except ValueError:
        matched = False
    if matched:
        return True, hash_password(password)
    return False, None


@cache
def common_passwords() -> frozenset[str]:
    """zxcvbn's list of the 30,000 most common passwords."""
    return frozenset(FREQUENCY_LISTS["passwords"])


def password_problems(
    password: str,
    *,
    username: str = "",
    email: str | None = None,
    min_length: int,
    min_score: int,
) -> list[str]:
    """What is wrong with a new password, in plain words; empty when it is acceptable."""
    # Length is what the person typed: code points of the NFC form (composed accents count
    # once), not of NFKC, which turns one character such as U+FDFA into eighteen.
    length = len(unicodedata.normalize("NFC", password))
    password = normalise_password(password)
    if length < min_length:
        return [_("Use at least %(minimum)d characters; this one has %(length)d.", minimum=min_length, length=length)]
    if length > PASSWORD_MAX_LENGTH:
        return [_("Use at most %(maximum)d characters; this one has %(length)d.", maximum=PASSWORD_MAX_LENGTH, length=length)]
    folded = password.casefold()
    if folded in common_passwords():
        return [_("This is one of the most common passwords. Choose one that is your own.")]
    user_inputs = [value for value in (username, email) if value]
    local_part = (email or "").split("@", 1)[0]
    if username and folded == username.strip().casefold():
        return [_("The password must not be your username.")]
    if local_part and folded == local_part.casefold():
        return [_("The password must not be the first part of your email address.")]
    # zxcvbn refuses inputs over 72 characters; a longer password is judged by its first 72.
    with _zxcvbn_lock:  # zxcvbn keeps the user inputs in a module-level dict
        estimate = zxcvbn(password[:72], user_inputs=[*user_inputs, local_part])
    if estimate["score"] < min_score:
        feedback = estimate.get("feedback") or {}
        # zxcvbn's hints exist in English only; other languages get the plain verdict.
        hints = " ".join(filter(None, [feedback.get("warning"), *feedback.get("suggestions", [])]))
        verdict = _("This password is too easy to guess.")
        return [f"{verdict} {hints}".strip() if current_language() == "en" else verdict]
    return []


def check_new_password(
    password: str, *, username: str = "", email: str | None = None, field: str = "new_password"
) -> None:
    """Raise WeakPassword, naming each problem under `field`, unless the password meets the policy.

    A password the local rules accept is then looked up in the breached-password range API
    (PWNED_PASSWORDS_URL; only 5 hex characters of its hash leave), which may take up to
    PWNED_PASSWORDS_TIMEOUT and lets it through when the API cannot answer.
    """
    config = settings()
    problems = password_problems(
        password,
        username=username,
        email=email,
        min_length=config["PASSWORD_MIN_LENGTH"],
        min_score=config["PASSWORD_MIN_SCORE"],
    )
    if not problems and is_breached(
        normalise_password(password), url=config["PWNED_PASSWORDS_URL"], timeout=config["PWNED_PASSWORDS_TIMEOUT"]
    ):
        problems = [
            _("This password has appeared in a data breach, so attackers try it first. Choose another one.")
        ]
    if problems:
        raise WeakPassword(
            problems[0], errors=[FieldError(field, message) for message in problems]
        )


def password_rules() -> list[str]:
    """The rules as shown to a person choosing a password."""
    return [
        _(
            "At least %(minimum)d characters, at most %(maximum)d.",
            minimum=settings()["PASSWORD_MIN_LENGTH"],
            maximum=PASSWORD_MAX_LENGTH,
        ),
        _("Any characters you like, spaces included; a few unrelated words make a good one."),
        _("Not a common password, and not your username or email address."),
        *([_("Not a password that has appeared in a known data breach.")] if settings()["PWNED_PASSWORDS_URL"] else []),
    ]
