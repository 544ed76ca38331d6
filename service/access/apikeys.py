"""API keys: made once, shown once, kept only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, or_, select, update

from service.events import audit
from service.models import API_ROLES, ApiKey, ApiRole
from service.platform.database import DbSession, core_transaction
from service.platform.errors import ValidationFailed

KEY_PREFIX = "rdk_"
# ASCII only: no look-alike, invisible or right-to-left character, no line break, no slash.
KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# Writing last_used_at on every call would turn each read into a write; once a minute is enough.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _digest(presented_key: str) -> str:
    # A key holds 256 random bits, so a plain SHA-256 is enough: nothing to brute-force.
    return hashlib.sha256(presented_key.encode()).hexdigest()


def create_api_key(
    session: DbSession, name: str, role: str, *, now: datetime, actor: str = audit.CLI, ip: str | None = None
) -> tuple[ApiKey, str]:
    """Create a key with its audit event; flushes, the caller commits. Returns the row and the
    key, which is never stored."""
    name = name.strip()
    if role not in API_ROLES:
        raise ValidationFailed(f"The role must be one of {', '.join(API_ROLES)}.")
    if not KEY_NAME.fullmatch(name):
        # The name becomes the actor `key:<name>` of every event the key causes, in the trail
        # and in webhooks, and the last segment of the address that revokes it.
        raise ValidationFailed(
            "The key's name must be 1 to 100 letters, digits, dots, dashes or underscores, "
            "starting with a letter or a digit."
        )
    if session.scalar(select(ApiKey).where(func.lower(ApiKey.name) == name.lower())) is not None:
        raise ValidationFailed(f"A key named {name!r} exists already.")
    presented_key = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey(name=name, role=role, key_hash=_digest(presented_key), created_at=now)
    session.add(api_key)
    session.flush()
    audit.record_event(session, "api_key.created", actor=actor, ip=ip, now=now, details={"name": name, "role": role})
    return api_key, presented_key


@dataclass(frozen=True, slots=True)
class AuthenticatedKey:
    """The live key a request presented: what views need of it, read without an ORM object
    (every API call pays for this look-up)."""

    id: int
    name: str
    role: str


_api_keys = ApiKey.__table__.c
_FIND_KEY = select(_api_keys.id, _api_keys.name, _api_keys.role, _api_keys.last_used_at, _api_keys.revoked_at).where(
    _api_keys.key_hash == bindparam("key_hash")
)


def authenticate_api_key(session: DbSession, presented_key: str, *, now: datetime) -> AuthenticatedKey | None:
    """The live key matching what a caller presented, or None; notes when it was last used.

    The note is committed at once in a transaction of its own: it records that the key was
    used whatever the call then does, and the write lock it takes is not held for the rest of
    the call (a sign-in's hash, on SQLite).
    """
    row = session.execute(_FIND_KEY, {"key_hash": _digest(presented_key)}).first()
    if row is None or row.revoked_at is not None:
        return None
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        # Conditional, so that simultaneous calls write it once.
        with core_transaction(session) as connection:
            connection.execute(
                update(ApiKey)
                .where(
                    ApiKey.id == row.id,
                    or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - LAST_USED_RESOLUTION),
                )
                .values(last_used_at=now)
            )
    return AuthenticatedKey(id=row.id, name=row.name, role=row.role)


def role_allows(role: str, needed: str) -> bool:
    """Whether a key of `role` may make a call that needs `needed`; admin may do everything."""
    return role == ApiRole.ADMIN or role == needed


def list_api_keys(session: DbSession) -> list[ApiKey]:
    """Every key, newest first."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())))


def revoke_api_key(
    session: DbSession, name: str, *, now: datetime, actor: str = audit.CLI, ip: str | None = None
) -> bool:
    """Revoke a key by name, with its audit event; the caller commits. False when there is no
    live key of that name."""
    api_key = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if api_key is None or api_key.revoked_at is not None:
        return False
    api_key.revoked_at = now
    audit.record_event(session, "api_key.revoked", actor=actor, ip=ip, now=now, details={"name": name})
    return True
