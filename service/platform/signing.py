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


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Compare a secret with its stored hash in constant time."""
    return hmac.compare_digest(sha256_hex(secret), stored_hash)
