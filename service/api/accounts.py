"""Account calls for the website's backend: sign-in checks, sign-up, profile and password changes."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_babel import gettext as _

from service.accounts.closing import close_account as close_account_record
from service.accounts.profile import PROFILE_FIELDS, update_profile
from service.accounts.records import create_account as create_account_record
from service.accounts.records import find_account
from service.accounts.signin import change_password as change_account_password
from service.accounts.signin import sign_in
from service.api.auth import current_key_actor, require_role
from service.api.blueprint import api
from service.api.body import validated_body
from service.api.openapi import BOOLEAN, NULLABLE_DATE_TIME, STRING, body, documented, obj, optional_text, ref
from service.models import Account, AccountStatus
from service.platform.clients import client_ip
from service.platform.clock import utcnow
from service.platform.errors import AccountNotFound, InvalidCredentials
from service.platform.extensions import db


def account_json(account: Account) -> dict[str, Any]:
    """What the API shows of an account to the website: never a hash."""
    return {
        "username": account.username,
        "email": account.email,
        "status": account.status,
        "language": account.language,
        "full_name": account.full_name,
        "phone": account.phone,
        "must_change_password": account.must_change_password,
        "created_at": account.created_at.isoformat(),
        "password_changed_at": (
            account.password_changed_at.isoformat() if account.password_changed_at else None
        ),
    }


def wrong_credentials() -> InvalidCredentials:
    return InvalidCredentials(_("The username or password is wrong."))


@api.post("/auth/verify")
@documented(
    "Check a customer's username and password",
    description=(
        "For the website's sign-in form. `must_change_password` is true after signing in with a temporary "
        "password: ask for a new one (`POST /accounts/{username}/password`). A wrong username and a wrong "
        "password answer the same 401; too many wrong passwords for one username answer 429."
    ),
    request=body(["username", "password"]),
    responses={200: obj({"username": STRING, "must_change_password": BOOLEAN, "password_changed_at": NULLABLE_DATE_TIME})},
    errors=["invalid_credentials", "account_frozen", "rate_limited"],
)
@require_role("client")
def verify_credentials() -> dict[str, Any]:
    fields = validated_body()
    signed_in = sign_in(db.session, fields["username"], fields["password"], ip=client_ip(), now=utcnow())
    # A failure is recorded too (its throttle event), so commit before answering either way.
    db.session.commit()
    account = signed_in.account
    if account is None:
        raise wrong_credentials()
    # Plain values read by the sign-in: nothing to load again after the commit.
    return {
        "username": account.username,
        "must_change_password": signed_in.must_change_password,
        "password_changed_at": account.password_changed_at.isoformat() if account.password_changed_at else None,
    }


@api.post("/accounts")
@documented(
    "Create an account",
    description="Without a password the account has none until it is reset.",
    request=body(["username"], ["email", "password", "language", "full_name", "phone"]),
    responses={201: ref("Account")},
    errors=["username_taken", "weak_password"],
)
@require_role("client")
def create_account() -> tuple[dict[str, Any], int]:
    fields = validated_body()
    account = create_account_record(
        db.session,
        username=fields["username"],
        email=fields.get("email"),
        password=fields.get("password"),
        language=fields.get("language"),
        full_name=fields.get("full_name"),
        phone=fields.get("phone"),
        actor=current_key_actor(),
        ip=client_ip(),
        now=utcnow(),
    )
    db.session.commit()
    return account_json(account), 201


@api.patch("/accounts/<username>")
@documented(
    "Change an account's profile",
    description="Changed at once (the website has verified its customer); a changed email sends a notice to the old one.",
    request={
        "type": "object",
        "properties": {name: optional_text() for name in PROFILE_FIELDS},
        "minProperties": 1,
        "additionalProperties": False,
    },
    responses={200: ref("Account")},
    errors=["account_not_found"],
)
@require_role("client")
def update_account(username: str) -> dict[str, Any]:
    fields = validated_body()  # only the fields sent: the others stay as they are
    account = find_account(db.session, username)
    if account is None or account.status == AccountStatus.CLOSED:
        raise AccountNotFound(f"No account named {username!r}.")
    update_profile(db.session, account, fields, actor=current_key_actor(), ip=client_ip(), now=utcnow())
    db.session.commit()
    return account_json(account)


@api.post("/accounts/<username>/password")
@documented(
    "Change a password, knowing the current one",
    description="Also how a customer who signed in with a temporary password chooses their own.",
    request=body(["current_password", "new_password"]),
    responses={204: None},
    errors=["invalid_credentials", "weak_password", "account_frozen", "rate_limited"],
)
@require_role("client")
def change_password(username: str) -> Response:
    fields = validated_body()
    signed_in = change_account_password(
        db.session,
        username,
        fields["current_password"],
        fields["new_password"],
        actor=current_key_actor(),
        ip=client_ip(),
        now=utcnow(),
    )
    db.session.commit()
    if signed_in.account is None:
        raise wrong_credentials()
    return Response(status=204)


@api.delete("/accounts/<username>")
@documented(
    "Close an account",
    description="Sign-in and resets stop; personal data is erased; the audit trail stays under a pseudonym.",
    responses={204: None},
    errors=["account_not_found"],
)
@require_role("client")
def close_account(username: str) -> Response:
    """Close the account at its customer's request (the website has verified them)."""
    account = find_account(db.session, username)
    if account is None or account.status == AccountStatus.CLOSED:
        raise AccountNotFound(_("No account named %(username)s.", username=repr(username)))
    close_account_record(db.session, account, actor=current_key_actor(), ip=client_ip(), now=utcnow())
    db.session.commit()
    return Response(status=204)
