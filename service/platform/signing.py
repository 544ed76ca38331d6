"""Signed tokens and hashes of random secrets: one serializer per purpose, one digest."""

from __future__ import annotations

import hashlib
import hmac

from itsdangerous import URLSafeTimedSerializer

from service.platform.config import settings


def serializer(salt: str) -> URLSafeTimedSerializer:
    """A serializer for one purpose: its own salt, so a token made for one job is worthless
    for another under the same SECRET_KEY.

    itsdangerous signs with the last key and accepts any: the fallbacks keep tokens alive
    while SECRET_KEY is rotated.
    """
    config = settings()
    return URLSafeTimedSerializer([*config["SECRET_KEY_FALLBACKS"], config["SECRET_KEY"]], salt=salt)


def sha256_hex(secret: str) -> str:
    """The form a random secret (128 bits or more) is stored in; such secrets need no slow hash."""
    return hashlib.sha256(secret.encode()).hexdigest()


def keyed_hash(secret: str) -> str:
    """A hash under SECRET_KEY, for secrets short enough to guess from a bare SHA-256 (codes,
    temporary passwords): a copy of the database alone does not give them away."""
    return _keyed(settings()["SECRET_KEY"], secret)


def keyed_hashes(secret: str) -> list[str]:
    """The secret's keyed hash under the current key and every fallback, to look it up with."""
    config = settings()
    return [_keyed(key, secret) for key in (config["SECRET_KEY"], *config["SECRET_KEY_FALLBACKS"])]


def _keyed(key: str, secret: str) -> str:
    return hmac.new(key.encode(), secret.encode(), hashlib.sha256).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Compare a secret with its stored hash in constant time."""
    return hmac.compare_digest(sha256_hex(secret), stored_hash)
