"""Administration over the API, for `admin` keys only: API keys and support agents."""

from __future__ import annotations

from typing import Any

from flask import Response

from ..agents import create_agent
from ..apikeys import create_api_key, revoke_api_key
from ..errors import ServiceError
from ..extensions import db
from ..requestkeys import client_ip
from .auth import current_key_actor, require_role
from .blueprint import api
from .body import json_object, string_fields


class ApiKeyNotFound(ServiceError):
    status = 404
    code = "api_key_not_found"
    title = "No such API key"


@api.post("/admin/api-keys")
@require_role("admin")
def create_key() -> tuple[dict[str, Any], int]:
    fields = string_fields(json_object(), required=("name", "role"))
    api_key, presented_key = create_api_key(
        db.session, fields["name"], fields["role"], actor=current_key_actor(), ip=client_ip()
    )
    # The only time the key is shown: it is stored as a hash.
    return {"name": api_key.name, "role": api_key.role, "key": presented_key}, 201


@api.delete("/admin/api-keys/<name>")
@require_role("admin")
def revoke_key(name: str) -> Response:
    if not revoke_api_key(db.session, name, actor=current_key_actor(), ip=client_ip()):
        raise ApiKeyNotFound(f"No live API key named {name!r}.")
    return Response(status=204)


@api.post("/admin/agents")
@require_role("admin")
def create_support_agent() -> tuple[dict[str, Any], int]:
    fields = string_fields(json_object(), required=("username", "email"), optional=("password",))
    agent = create_agent(
        db.session, username=fields["username"], email=fields["email"], password=fields["password"],
        actor=current_key_actor(), ip=client_ip(),
    )
    return {"username": agent.username, "email": agent.email, "status": agent.status}, 201
