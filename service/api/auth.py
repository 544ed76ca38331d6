"""API-key authentication: a Bearer key, and the role a view needs."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import g, request

from service.access.apikeys import AuthenticatedKey, authenticate_api_key, role_allows
from service.events.audit import key_actor
from service.platform.clock import utcnow
from service.platform.errors import Forbidden, Unauthorized
from service.platform.extensions import db

P = ParamSpec("P")
R = TypeVar("R")


def require_role(role: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Let the view run only for a live key whose role allows `role`; 401 or 403 otherwise."""

    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        @wraps(view)
        def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
            scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not presented.strip():
                raise Unauthorized("Send an API key as Authorization: Bearer <key>.")
            api_key = authenticate_api_key(db.session, presented.strip(), now=utcnow())
            if api_key is None:
                raise Unauthorized("The API key is wrong or revoked.")
            if not role_allows(api_key.role, role):
                raise Forbidden(f"This call needs a key with the {role} role.")
            g.api_key = api_key
            return view(*args, **kwargs)

        # The API's description reads the role from here, so it cannot drift from the check.
        wrapped.__dict__["required_role"] = role
        return wrapped

    return decorator


def current_api_key() -> AuthenticatedKey:
    """The key that authenticated this request."""
    api_key: AuthenticatedKey = g.api_key
    return api_key


def current_key_actor() -> str:
    """The audit actor of this request's key."""
    return key_actor(current_api_key().name)
