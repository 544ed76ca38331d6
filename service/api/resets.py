"""Self-service reset calls for the login page: ask, check a link, set the new password."""

from __future__ import annotations

from typing import Any

from flask import Response

from .. import resets
from ..clock import utcnow
from ..dispatcher import wake_after_response
from ..extensions import db
from ..i18n import supported_language
from ..ratelimits import reset_request_per_ip, reset_request_per_username, token_per_ip
from ..requestkeys import client_ip
from .blueprint import api
from .body import json_object, string_fields

ACCEPTED_MESSAGE = (
    "If an account with that username exists and has an email address on file, we have sent "
    "it instructions. Check your spam folder if you do not receive them within a few minutes."
)


@api.post("/password-resets")
@reset_request_per_ip
@reset_request_per_username
def request_password_reset() -> tuple[dict[str, Any], int]:
    fields = string_fields(json_object(), required=("username",), optional=("language",))
    resets.request_reset(
        db.session, fields["username"], ip=client_ip(), now=utcnow(),
        language=supported_language(fields["language"]),
    )
    wake_after_response()
    return {"status": "accepted", "message": ACCEPTED_MESSAGE}, 202


@api.get("/password-resets/<path:token>")
@token_per_ip
def check_password_reset(token: str) -> dict[str, Any]:
    reset = resets.check_link(db.session, token, now=utcnow())
    return {"valid": True, "expires_at": reset.expires_at.isoformat()}


@api.post("/password-resets/confirm")
@token_per_ip
def confirm_password_reset() -> Response:
    fields = string_fields(json_object(), required=("token", "new_password"))
    resets.confirm_reset(db.session, fields["token"], fields["new_password"], ip=client_ip())
    wake_after_response()
    return Response(status=204)
