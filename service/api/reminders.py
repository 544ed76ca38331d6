"""Forgotten usernames for the login page: ask for a reminder by email."""

from __future__ import annotations

from typing import Any

from service.accounts.reminders import request_username_reminder
from service.api.blueprint import api
from service.api.body import validated_body
from service.api.openapi import STRING, body, documented, obj
from service.platform.clients import client_ip
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.platform.i18n import supported_language
from service.platform.ratelimits import reminder_per_address, reminder_per_ip

ACCEPTED_MESSAGE = (
    "If any account uses that email address, we have sent it the usernames of those accounts. "
    "Check your spam folder if you do not receive them within a few minutes."
)


@api.post("/username-reminders")
@documented(
    "Ask for the usernames on an email address",
    description=(
        "For the \"Forgot your username?\" box. The same answer whether or not any account uses the address; "
        "the address gets one mail listing the username of every active, unfrozen account on it."
    ),
    request=body(["email"], ["language"]),
    responses={202: obj({"status": {"const": "accepted"}, "message": STRING})},
    errors=["rate_limited"],
)
@reminder_per_ip
@reminder_per_address
def request_username_reminders() -> tuple[dict[str, Any], int]:
    fields = validated_body()
    request_username_reminder(
        db.session, fields["email"], ip=client_ip(), now=utcnow(), language=supported_language(fields.get("language"))
    )
    db.session.commit()
    return {"status": "accepted", "message": ACCEPTED_MESSAGE}, 202
