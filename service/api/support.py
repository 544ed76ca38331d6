"""The support API for agent keys: find a customer, see the account, reset, unlock, freeze, change
the email; and for admin keys, the export of an account and the desk overview."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Response, current_app, request

from service.accounts.export import export_account as export_account_record
from service.accounts.freezing import REASON_MAX_LENGTH
from service.api.auth import current_key_actor, require_role
from service.api.blueprint import api
from service.api.body import validated_body
from service.api.openapi import (
    BOOLEAN,
    DATE_TIME,
    INTEGER,
    NULLABLE_DATE_TIME,
    NULLABLE_STRING,
    ONE_LINE_TEXT,
    STRING,
    body,
    documented,
    obj,
    ref,
)
from service.contact.hours import parse_timezone
from service.models import RESET_METHODS
from service.platform.clients import client_ip
from service.platform.clock import utcnow
from service.platform.errors import FieldError, ValidationFailed
from service.platform.extensions import db
from service.resets.policy import reset_policy
from service.resets.requests import requests_for_name
from service.support import actions, overview

ASKED_FOR_DEFAULT_DAYS = 30
ASKED_FOR_MAX_DAYS = 366
NOTE_FIELDS = ("note", "ticket", "verified_by")
# What an agent types about an action: one line (see ONE_LINE), as long as the console takes.
ONE_LINE_FIELDS: dict[str, dict[str, Any]] = {
    "note": {**ONE_LINE_TEXT, "maxLength": actions.NOTE_MAX_LENGTH},
    "ticket": {**ONE_LINE_TEXT, "maxLength": actions.TICKET_MAX_LENGTH},
    "reason": {**ONE_LINE_TEXT, "maxLength": REASON_MAX_LENGTH},
}
# Out-of-range numbers are brought into range, not refused (the answer says which page it is).
PAGING: dict[str, dict[str, Any]] = {
    "page": {"type": "integer", "description": f"from 1 (smaller counts as 1) to {actions.PAGE_MAX}"},
    "per_page": {
        "type": "integer",
        "description": f"from 1 to {actions.PAGE_SIZE_MAX} (default 20); outside that, the nearest of the two",
    },
}


def page_of(name: str, item: dict[str, Any]) -> dict[str, Any]:
    """A page of a list, with where it is and whether more follow."""
    return obj({name: {"type": "array", "items": item}, "page": INTEGER, "per_page": INTEGER, "has_more": BOOLEAN})


def _page_args() -> tuple[int, int]:
    try:
        return int(request.args.get("page", 1)), int(request.args.get("per_page", 20))
    except ValueError:
        raise ValidationFailed("page and per_page must be whole numbers.") from None


def _verification_required() -> bool:
    required: bool = current_app.config["SUPPORT_REQUIRE_VERIFICATION"]
    return required


def _agent_action(fields: dict[str, Any]) -> actions.AgentAction:
    """This key's action, with the note, ticket and verification its body gives."""
    return actions.AgentAction.checked(
        actor=current_key_actor(), ip=client_ip(), now=utcnow(), note=fields.get("note"), ticket=fields.get("ticket"),
        verified_by=fields.get("verified_by"), require_verification=_verification_required(),
    )


@api.get("/support/accounts")
@documented(
    "Find customers",
    description="`q` matches any part of a username, email or full name, and the digits of a phone number.",
    query={"q": {"type": "string", "required": True}, **PAGING},
    responses={200: page_of("accounts", ref("AccountSummary"))},
    errors=["validation_failed"],
)
@require_role("agent")
def search_accounts() -> dict[str, Any]:
    page, per_page = _page_args()
    found = actions.search_accounts(
        db.session, request.args.get("q", ""), actor=current_key_actor(), ip=client_ip(), now=utcnow(),
        page=page, per_page=per_page,
    )
    db.session.commit()
    return {
        "accounts": [actions.account_summary(account) for account in found.items],
        "page": found.page,
        "per_page": found.per_page,
        "has_more": found.has_more,
    }


@api.get("/support/accounts/<username>")
@documented(
    "See an account",
    description="Recorded as an audit event (`support.viewed`).",
    responses={
        200: {
            "allOf": [
                ref("AccountSummary"),
                obj(
                    {
                        "locked": BOOLEAN,
                        "lock": {"type": "object"},
                        "frozen_at": NULLABLE_DATE_TIME,
                        "must_change_password": BOOLEAN,
                        "password_changed_at": NULLABLE_DATE_TIME,
                        "pending_resets": {
                            "type": "array",
                            "items": obj({"method": STRING, "requested_by": NULLABLE_STRING, "created_at": DATE_TIME, "expires_at": DATE_TIME}),
                        },
                        "pending_email_change": {"type": ["object", "null"]},
                        "recent_mail": {"type": "array", "items": {"type": "object"}},
                    }
                ),
            ]
        }
    },
    errors=["account_not_found"],
)
@require_role("agent")
def account_overview(username: str) -> dict[str, Any]:
    overview = actions.account_overview(
        db.session, username, actor=current_key_actor(), ip=client_ip(), now=utcnow()
    )
    db.session.commit()
    return overview


@api.post("/support/accounts/<username>/password-resets")
@documented(
    "Send a reset link or a temporary password",
    description="`sent_to` is the masked address. Each agent key has an hourly quota (429 when spent).",
    request=body(["method"], NOTE_FIELDS, method={"enum": list(RESET_METHODS)}, **ONE_LINE_FIELDS),
    responses={202: obj({"sent_to": STRING, "method": STRING, "expires_at": DATE_TIME})},
    errors=["account_not_found", "no_email_on_file", "account_frozen", "rate_limited"],
)
@require_role("agent")
def send_reset(username: str) -> tuple[dict[str, Any], int]:
    fields = validated_body()
    issued = actions.send_reset(
        db.session, username, fields["method"], _agent_action(fields),
        policy=reset_policy(), quota=current_app.config["AGENT_RESETS_PER_HOUR"],
    )
    db.session.commit()
    return {
        "sent_to": issued.sent_to,
        "method": issued.method,
        "expires_at": issued.expires_at.isoformat(),
    }, 202


@api.post("/support/accounts/<username>/unlock")
@documented(
    "Lift the sign-in throttle",
    request=body([], NOTE_FIELDS, **ONE_LINE_FIELDS),
    request_required=False,
    responses={204: None},
    errors=["account_not_found"],
)
@require_role("agent")
def unlock(username: str) -> Response:
    fields = validated_body()
    actions.unlock_account(db.session, username, _agent_action(fields))
    db.session.commit()
    return Response(status=204)


@api.post("/support/accounts/<username>/freeze")
@documented(
    "Freeze an account",
    description="A frozen account cannot sign in and gets no reset mail; its pending resets die.",
    request=body(["reason"], NOTE_FIELDS, **ONE_LINE_FIELDS),
    responses={204: None},
    errors=["account_not_found"],
)
@require_role("agent")
def freeze(username: str) -> Response:
    fields = validated_body()
    actions.freeze(db.session, username, _agent_action(fields), reason=fields["reason"])
    db.session.commit()
    return Response(status=204)


@api.post("/support/accounts/<username>/unfreeze")
@documented(
    "Unfreeze an account",
    request=body([], NOTE_FIELDS, **ONE_LINE_FIELDS),
    request_required=False,
    responses={204: None},
    errors=["account_not_found"],
)
@require_role("agent")
def unfreeze(username: str) -> Response:
    fields = validated_body()
    actions.unfreeze(db.session, username, _agent_action(fields))
    db.session.commit()
    return Response(status=204)


@api.post("/support/accounts/<username>/email")
@documented(
    "Change an account's email",
    description="The new address gets a confirmation link and becomes the account's email only once it is followed.",
    request=body(["email"], NOTE_FIELDS, **ONE_LINE_FIELDS),
    responses={202: obj({"sent_to": STRING, "expires_at": DATE_TIME})},
    errors=["account_not_found"],
)
@require_role("agent")
def change_email(username: str) -> tuple[dict[str, Any], int]:
    fields = validated_body()
    started = actions.change_email(db.session, username, fields["email"], _agent_action(fields))
    db.session.commit()
    return {"sent_to": started.sent_to, "expires_at": started.change.expires_at.isoformat()}, 202


@api.get("/support/accounts/<username>/events")
@documented(
    "An account's audit events",
    description="Newest first.",
    query=PAGING,
    responses={200: page_of("events", ref("Event"))},
    errors=["validation_failed", "account_not_found"],
)
@require_role("agent")
def events(username: str) -> dict[str, Any]:
    page, per_page = _page_args()
    found = actions.account_events(db.session, username, page=page, per_page=per_page)
    db.session.commit()
    return {
        "events": [actions.event_json(event) for event in found.items],
        "page": found.page,
        "per_page": found.per_page,
        "has_more": found.has_more,
    }


@api.get("/support/reset-requests")
@documented(
    "Whether a name was typed into the reset box",
    query={
        "username": {"type": "string", "required": True},
        "days": {"type": "integer", "minimum": 1, "maximum": ASKED_FOR_MAX_DAYS},
    },
    responses={
        200: obj({"asked": BOOLEAN, "days": INTEGER, "requests": {"type": "array", "items": obj({"at": DATE_TIME, "outcome": STRING})}})
    },
    errors=["validation_failed"],
)
@require_role("agent")
def reset_requests_for_name() -> dict[str, Any]:
    """Whether (and when) a name the caller gives was typed into the reset box lately.

    Names that match no account are kept only as a keyed hash, so this is the one way to ask.
    """
    typed = request.args.get("username", "")
    if not typed.strip():
        raise ValidationFailed("username is required.", errors=[FieldError("username", "Enter a username.")])
    try:
        days = int(request.args.get("days", ASKED_FOR_DEFAULT_DAYS))
    except ValueError:
        raise ValidationFailed("days must be a whole number.") from None
    if not 1 <= days <= ASKED_FOR_MAX_DAYS:
        raise ValidationFailed(f"days must be between 1 and {ASKED_FOR_MAX_DAYS}.")
    found = requests_for_name(db.session, typed, since=utcnow() - timedelta(days=days))
    return {
        "asked": bool(found),
        "days": days,
        "requests": [{"at": asked.at.isoformat(), "outcome": asked.outcome} for asked in found],
    }


@api.get("/support/accounts/<username>/export")
@documented(
    "Everything kept about an account",
    description="For a customer's access request: profile, events with details, mail envelopes; never a secret.",
    responses={200: {"type": "object"}},
    errors=["account_not_found"],
)
@require_role("admin")
def export_account(username: str) -> dict[str, Any]:
    """Everything kept about the account, for a customer's access request (admin only)."""
    return export_account_record(db.session, actions.require_account(db.session, username))


OVERVIEW_DAYS_QUERY: dict[str, dict[str, Any]] = {
    "days": {
        "type": "integer", "minimum": 1, "maximum": overview.MAX_DAYS,
        "description": f"How many days, ending today in the shop's time zone; {overview.DEFAULT_DAYS} when absent.",
    },
}
COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}
DAY_COUNTS: dict[str, Any] = obj(
    {
        "resets": obj({route: COUNT for route in overview.ROUTES}),
        "mail": obj({"sent": COUNT, "failed": COUNT}),
        "throttles": COUNT,
        "freezes": COUNT,
    }
)


def _desk_overview(shown_as: str, table: str | None = None) -> overview.DeskOverview:
    """The overview for the `days` asked for, its look recorded under this key."""
    found = overview.look_at_overview(
        db.session, days_asked=request.args.get("days"), zone=parse_timezone(current_app.config["CONTACT_TIMEZONE"]),
        shown_as=shown_as, table=table, actor=current_key_actor(), ip=client_ip(), now=utcnow(),
    )
    db.session.commit()
    return found


@api.get("/support/overview")
@documented(
    "The desk overview",
    description=(
        "Per day of the shop's time zone (`CONTACT_TIMEZONE`), oldest first: resets done by route "
        "(`self_link`, `self_code`, `self_temporary_password`; `agent`: sent by support, used any way), "
        "counted on the day they were used; mail sent and failed; sign-in throttles; freezes. Then the "
        "actions of each support actor (`agent:<name>`, `key:<name>`), every active agent listed. "
        "Recorded as an audit event (`support.overview_viewed`)."
    ),
    query=OVERVIEW_DAYS_QUERY,
    responses={
        200: obj(
            {
                "timezone": STRING,
                "from": {"type": "string", "format": "date"},
                "to": {"type": "string", "format": "date"},
                "days": {
                    "type": "array",
                    "items": {"allOf": [obj({"date": {"type": "string", "format": "date"}}), DAY_COUNTS]},
                },
                "totals": DAY_COUNTS,
                "agents": {
                    "type": "array",
                    "items": obj({"actor": STRING, "actions": COUNT, **{kind: COUNT for kind in overview.ACTION_KINDS}}),
                },
            }
        )
    },
    errors=["validation_failed"],
)
@require_role("admin")
def desk_overview() -> dict[str, Any]:
    return overview.overview_json(_desk_overview("json"))


@api.get("/support/overview.csv")
@documented(
    "The desk overview as CSV",
    description=(
        "`table=days` (the default): one row a day, columns "
        + ", ".join(f"`{column}`" for column in overview.DAYS_CSV_COLUMNS)
        + "; `table=agents`: one row per support actor, columns "
        + ", ".join(f"`{column}`" for column in overview.AGENTS_CSV_COLUMNS)
        + ". Recorded as an audit event (`support.overview_viewed`)."
    ),
    query={**OVERVIEW_DAYS_QUERY, "table": {"type": "string", "enum": list(overview.CSV_TABLES)}},
    responses={200: {"type": "string"}},
    errors=["validation_failed"],
    response_type="text/csv",
)
@require_role("admin")
def desk_overview_csv() -> Response:
    table = overview.parse_csv_table(request.args.get("table"))
    found = _desk_overview("csv", table)
    body = overview.days_csv(found) if table == "days" else overview.agents_csv(found)
    return Response(
        body, mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{overview.csv_filename(found, table)}"'},
    )
