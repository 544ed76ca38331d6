"""Self-service reset calls for the login page: ask, check a link, set the new password."""

from __future__ import annotations

from typing import Any

from flask import Response

from service.api.blueprint import api
from service.api.body import validated_body
from service.api.openapi import DATE_TIME, STRING, body, documented, obj
from service.platform.clients import client_ip
from service.platform.clock import utcnow
from service.platform.database import core_transaction
from service.platform.extensions import db
from service.platform.i18n import supported_language
from service.platform.ratelimits import (
    code_per_username,
    reset_request_per_ip,
    reset_request_per_username,
    token_per_ip,
)
from service.resets.codes import CodeRejected
from service.resets.links import check_link, confirm_reset, confirm_reset_by_code
from service.resets.policy import reset_policy
from service.resets.requests import request_reset

ACCEPTED_MESSAGE = (
    "If an account with that username exists and has an email address on file, we have sent "
    "it instructions. Check your spam folder if you do not receive them within a few minutes."
)


@api.post("/password-resets")
@documented(
    "Ask for a reset",
    description=(
        "For the login page's reset box. The same answer whether or not the account exists, has an email, or "
        "is disabled; the mail is sent from the outbox, never on this request."
    ),
    request=body(["username"], ["language"]),
    responses={202: obj({"status": {"const": "accepted"}, "message": STRING})},
    errors=["rate_limited"],
)
@reset_request_per_ip
@reset_request_per_username
def request_password_reset() -> tuple[dict[str, Any], int]:
    fields = validated_body()
    # The whole write is one INSERT: a Core transaction of its own, committed here, costs a
    # fraction of the ORM session's unit of work on every request.
    with core_transaction(db.session) as connection:
        request_reset(
            connection, fields["username"], policy=reset_policy(), ip=client_ip(), now=utcnow(),
            language=supported_language(fields.get("language")),
        )
    return {"status": "accepted", "message": ACCEPTED_MESSAGE}, 202


@api.get("/password-resets/<path:token>")
@documented(
    "Check a reset link's token",
    description="Does not use the token up.",
    parameters={"token": {"type": "string", "minLength": 1}},
    responses={200: obj({"valid": {"const": True}, "expires_at": DATE_TIME})},
    errors=["token_invalid", "token_expired", "token_used", "rate_limited"],
)
@token_per_ip
def check_password_reset(token: str) -> dict[str, Any]:
    reset = check_link(db.session, token, policy=reset_policy(), now=utcnow())
    return {"valid": True, "expires_at": reset.expires_at.isoformat()}


@api.post("/password-resets/confirm")
@documented(
    "Set the new password",
    description=(
        "With the token from a reset link, or with the username and the one-time code from the same mail. A "
        "wrong code is `token_invalid`; after too many, the reset dies."
    ),
    request={
        "type": "object",
        "description": "A body with `code` and no `token` is the code form; any other is the link form.",
        "if": {"required": ["code"], "not": {"required": ["token"]}},
        "then": body(["username", "code", "new_password"]),
        "else": body(["token", "new_password"]),
    },
    responses={204: None},
    errors=["token_invalid", "token_expired", "token_used", "weak_password", "rate_limited"],
)
@token_per_ip
@code_per_username
def confirm_password_reset() -> Response:
    fields = validated_body()
    if "token" in fields:
        confirm_reset(
            db.session, fields["token"], fields["new_password"], policy=reset_policy(), ip=client_ip(), now=utcnow()
        )
    else:
        try:
            confirm_reset_by_code(
                db.session, fields["username"], fields["code"], fields["new_password"], policy=reset_policy(),
                ip=client_ip(), now=utcnow(),
            )
        except CodeRejected:
            db.session.commit()  # the wrong code counts toward killing the reset
            raise
    db.session.commit()
    return Response(status=204)
