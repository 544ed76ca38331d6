"""Reset-link tokens: a signed, timed envelope around a reset's id and a random secret."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from flask import current_app
from flask_babel import gettext as _
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from .errors import TokenExpired, TokenInvalid

# One serializer per purpose, each with its own salt, so a token made for one job is
# worthless for another even under the same SECRET_KEY.
RESET_LINK_SALT = "resetdesk.password-reset-link"
SECRET_BYTES = 16  # 128 bits of randomness in every link
TOKEN_MAX_LENGTH = 512


@dataclass(frozen=True)
class LinkToken:
    """What a valid link carries: which reset, and the secret whose hash that reset keeps."""

    reset_id: int
    secret: str


def _serializer() -> URLSafeTimedSerializer:
    config = current_app.config
    # itsdangerous signs with the last key and accepts any: old keys keep links alive during rotation.
    keys = [*config["SECRET_KEY_FALLBACKS"], config["SECRET_KEY"]]
    return URLSafeTimedSerializer(keys, salt=RESET_LINK_SALT)


def new_secret() -> str:
    """A fresh random secret for a link."""
    return secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: str) -> str:
    """The form a link's secret is stored in; 128 random bits need no slow hash."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Compare in constant time."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def make_link_token(reset_id: int, secret: str) -> str:
    """The token that goes into a reset link."""
    return _serializer().dumps({"r": reset_id, "s": secret})


def read_link_token(token: str) -> LinkToken:
    """Check a token's signature and age; raise TokenExpired or TokenInvalid otherwise."""
    if not token or len(token) > TOKEN_MAX_LENGTH:
        raise TokenInvalid(_("This reset link is not valid. Ask for a new one."))
    try:
        payload = _serializer().loads(token, max_age=current_app.config["RESET_TOKEN_MAX_AGE"])
    # SignatureExpired is a BadSignature too: it must be caught first.
    except SignatureExpired:
        raise TokenExpired(_("This reset link has expired. Ask for a new one.")) from None
    except BadSignature:
        raise TokenInvalid(_("This reset link is not valid. Ask for a new one.")) from None
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("r"), int)
        or not isinstance(payload.get("s"), str)
    ):
        raise TokenInvalid(_("This reset link is not valid. Ask for a new one."))
    return LinkToken(reset_id=payload["r"], secret=payload["s"])
