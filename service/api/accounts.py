"""Account calls for the website's backend: sign-in checks, sign-up, password change."""

from __future__ import annotations

from typing import Any

from flask import Response

from .. import accounts
from ..extensions import db
from ..i18n import supported_language
from ..models import Account
from ..requestkeys import client_ip
from .blueprint import api
from .auth import current_key_actor, require_role
from .body import json_object, string_fields


def account_json(account: Account) -> dict[str, Any]:
    """What the API shows of an account to the website: never a hash."""
    return {
        "username": account.username,
        "email": account.email,
        "status": account.status,
        "language": account.language,
        "must_change_password": account.must_change_password,
        "created_at": account.created_at.isoformat(),
        "password_changed_at": (
            account.password_changed_at.isoformat() if account.password_changed_at else None
        ),
    }


@api.post("/auth/verify")
@require_role("client")
def verify_credentials() -> dict[str, Any]:
    fields = string_fields(json_object(), required=("username", "password"))
    signed_in = accounts.sign_in(db.session, fields["username"], fields["password"], ip=client_ip())
    return {
        "username": signed_in.account.username,
        "must_change_password": signed_in.must_change_password,
        "password_changed_at": (
            signed_in.account.password_changed_at.isoformat()
            if signed_in.account.password_changed_at
            else None
        ),
    }


@api.post("/accounts")
@require_role("client")
def create_account() -> tuple[dict[str, Any], int]:
    fields = string_fields(json_object(), required=("username",), optional=("email", "password", "language"))
    account = accounts.create_account(
        db.session,
        username=fields["username"],
        email=fields["email"],
        password=fields["password"],
        language=supported_language(fields["language"]),
        actor=current_key_actor(),
        ip=client_ip(),
    )
    return account_json(account), 201


@api.post("/accounts/<username>/password")
@require_role("client")
def change_password(username: str) -> Response:
    fields = string_fields(json_object(), required=("current_password", "new_password"))
    accounts.change_password(
        db.session,
        username,
        fields["current_password"],
        fields["new_password"],
        actor=current_key_actor(),
        ip=client_ip(),
    )
    return Response(status=204)
