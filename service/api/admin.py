"""Administration over the API, for `admin` keys only: API keys and support agents."""

from __future__ import annotations

from typing import Any

from flask import Response

from service.access.apikeys import create_api_key, revoke_api_key
from service.api.auth import current_key_actor, require_role
from service.api.blueprint import api
from service.api.body import validated_body
from service.api.openapi import STRING, body, documented, obj
from service.models import API_ROLES
from service.platform.clients import client_ip
from service.platform.clock import utcnow
from service.platform.errors import ServiceError
from service.platform.extensions import db
from service.support.agents import create_agent


class ApiKeyNotFound(ServiceError):
    status = 404
    code = "api_key_not_found"
    title = "No such API key"


@api.post("/admin/api-keys")
@documented(
    "Create an API key",
    description=(
        "The key is shown once, in this answer; only its hash is kept. The name is 1 to 100 ASCII letters, "
        "digits, dots, dashes or underscores, starting with a letter or digit, and unique in any case."
    ),
    request=body(["name", "role"], role={"enum": list(API_ROLES)}),
    responses={201: obj({"name": STRING, "role": STRING, "key": STRING})},
)
@require_role("admin")
def create_key() -> tuple[dict[str, Any], int]:
    fields = validated_body()
    api_key, presented_key = create_api_key(
        db.session, fields["name"], fields["role"], actor=current_key_actor(), ip=client_ip(), now=utcnow()
    )
    db.session.commit()
    # The only time the key is shown: it is stored as a hash.
    return {"name": api_key.name, "role": api_key.role, "key": presented_key}, 201


@api.delete("/admin/api-keys/<name>")
@documented("Revoke an API key", responses={204: None}, errors=["api_key_not_found"])
@require_role("admin")
def revoke_key(name: str) -> Response:
    if not revoke_api_key(db.session, name, actor=current_key_actor(), ip=client_ip(), now=utcnow()):
        raise ApiKeyNotFound(f"No live API key named {name!r}.")
    db.session.commit()
    return Response(status=204)


@api.post("/admin/agents")
@documented(
    "Create a support agent",
    request=body(["username", "email"], ["password"]),
    responses={201: obj({"username": STRING, "email": STRING, "status": STRING})},
    errors=["username_taken", "weak_password"],
)
@require_role("admin")
def create_support_agent() -> tuple[dict[str, Any], int]:
    fields = validated_body()
    agent = create_agent(
        db.session, username=fields["username"], email=fields["email"], password=fields.get("password"),
        actor=current_key_actor(), ip=client_ip(), now=utcnow(),
    )
    db.session.commit()
    return {"username": agent.username, "email": agent.email, "status": agent.status}, 201
