"""API keys: made once, shown once, kept only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select

from service.events import audit
from service.models import API_ROLES, ApiKey, ApiRole
from service.platform.database import DbSession
from service.platform.errors import ValidationFailed

KEY_PREFIX = "rdk_"
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
    if not name or len(name) > 100:
        raise ValidationFailed("The key's name must be 1 to 100 characters.")
    if session.scalar(select(ApiKey).where(ApiKey.name == name)) is not None:
        raise ValidationFailed(f"A key named {name!r} exists already.")
    presented_key = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey(name=name, role=role, key_hash=_digest(presented_key), created_at=now)
    session.add(api_key)
    session.flush()
    audit.record_event(session, "api_key.created", actor=actor, ip=ip, now=now, details={"name": name, "role": role})
    return api_key, presented_key


def authenticate_api_key(session: DbSession, presented_key: str, *, now: datetime) -> ApiKey | None:
    """The live key matching what a caller presented, or None; notes when it was last used."""
    api_key = session.scalar(select(ApiKey).where(ApiKey.key_hash == _digest(presented_key)))
    if api_key is None or api_key.revoked_at is not None:
        return None
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        api_key.last_used_at = now
    return api_key


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
