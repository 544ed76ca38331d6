"""What the database must hold without being able to show: text sealed with keys derived from
SECRET_KEY (and its fallbacks, so rotation keeps sealed rows readable), and keyed hashes of
typed names that can be checked but not read back."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from service.platform.config import settings
from service.platform.text import EMAIL_MAX_LENGTH, USERNAME_MAX_LENGTH, normalise_email, normalise_username

# One purpose per kind of sealed text: a key derived for one cannot open another's rows.
TYPED_USERNAME = "resetdesk.typed-username"
QUEUED_MAIL = "resetdesk.queued-mail"
TYPED_EMAIL = "resetdesk.typed-email"
USERNAME_LOOKUP = b"resetdesk.username-lookup"
EMAIL_LOOKUP = b"resetdesk.email-lookup"


class SealBroken(Exception):
    """Sealed text no current key opens (its key was retired, or the text was altered)."""


def _secrets() -> tuple[str, ...]:
    """SECRET_KEY first (it seals), then the fallbacks (they still open)."""
    config = settings()
    return (config["SECRET_KEY"], *reversed(tuple(config["SECRET_KEY_FALLBACKS"])))


def _fernet_key(secret: str, purpose: str) -> bytes:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(secret.encode())
    return base64.urlsafe_b64encode(derived)


@lru_cache(maxsize=16)
def _sealer(secrets: tuple[str, ...], purpose: str) -> MultiFernet:
    # Cached: deriving keys on every request would cost more than sealing itself.
    return MultiFernet([Fernet(_fernet_key(secret, purpose)) for secret in secrets])


def seal(purpose: str, text: str) -> str:
    """Encrypt and authenticate `text` under the current SECRET_KEY, for one purpose."""
    return _sealer(_secrets(), purpose).encrypt(text.encode("utf-8", "surrogatepass")).decode("ascii")


def open_sealed(purpose: str, sealed: str) -> str:
    """The text `seal` sealed under SECRET_KEY or any fallback; SealBroken otherwise."""
    try:
        return _sealer(_secrets(), purpose).decrypt(sealed.encode("ascii")).decode("utf-8", "surrogatepass")
    except (InvalidToken, UnicodeError) as error:
        raise SealBroken("sealed text no current key opens") from error


def _lookup_keys(secrets: Sequence[str], purpose: bytes = USERNAME_LOOKUP) -> list[bytes]:
    return [hmac.new(secret.encode(), purpose, hashlib.sha256).digest() for secret in secrets]


def username_hash(typed: str) -> str:
    """The keyed hash a typed name is kept as: who knows the name can check it; nobody can read it."""
    return username_hashes(typed)[0]


def username_hashes(typed: str) -> list[str]:
    """The name's keyed hash under SECRET_KEY, then under each fallback (for rows kept before a rotation)."""
    key_text = normalise_username(typed[:USERNAME_MAX_LENGTH]).encode("utf-8", "surrogatepass")
    return [hmac.new(key, key_text, hashlib.sha256).hexdigest() for key in _lookup_keys(_secrets())]


def email_hashes(typed: str) -> list[str]:
    """A typed email address's keyed hash under SECRET_KEY, then each fallback: checkable, never readable."""
    key_text = normalise_email(typed[:EMAIL_MAX_LENGTH]).encode("utf-8", "surrogatepass")
    return [hmac.new(key, key_text, hashlib.sha256).hexdigest() for key in _lookup_keys(_secrets(), EMAIL_LOOKUP)]
