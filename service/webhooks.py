"""Events to the website: chosen audit events become signed webhooks, queued in the outbox.

The service does not own the website's sessions; a `password.changed` webhook lets the
website end them. Signing follows Standard Webhooks: `webhook-id`, `webhook-timestamp` and
`webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import urllib.request
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session

from .clock import utcnow
from .models import AuditEvent, OutboxMessage

SECRET_PREFIX = "whsec_"


def signing_key(secret: str) -> bytes:
    """The HMAC key: a `whsec_` secret is base64, anything else is used as UTF-8."""
    if secret.startswith(SECRET_PREFIX):
        return base64.b64decode(secret[len(SECRET_PREFIX):])
    return secret.encode()


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` header value for a body."""
    digest = hmac.new(signing_key(secret), f"{message_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def event_payload(audit_event: AuditEvent) -> dict[str, Any]:
    """The JSON a webhook carries for an audit event."""
    account = audit_event.account
    return {
        "id": "evt_" + secrets.token_urlsafe(16),
        "type": audit_event.type,
        "timestamp": (audit_event.at or utcnow()).isoformat(),
        "data": {
            "username": account.username if account else None,
            "password_changed_at": (
                account.password_changed_at.isoformat() if account and account.password_changed_at else None
            ),
            "actor": audit_event.actor,
            "details": audit_event.details,
        },
    }


def queue_webhooks(session: Session, _flush_context: Any, _instances: Any) -> None:
    """Before a flush writes audit events, queue a webhook per URL for each chosen one.

    Riding on the flush puts the webhook in the same transaction as the change it reports.
    Events with no account (a reset asked for a missing username) are not sent.
    """
    if not has_app_context():
        return
    config = current_app.config
    urls, chosen = config["WEBHOOK_URLS"], config["WEBHOOK_EVENTS"]
    if not urls:
        return
    now = utcnow()
    for audit_event in [obj for obj in session.new if isinstance(obj, AuditEvent)]:
        if audit_event.type not in chosen or audit_event.account is None:
            continue
        body = json.dumps(event_payload(audit_event), separators=(",", ":"))
        for url in urls:
            session.add(
                OutboxMessage(
                    kind="webhook", recipient=url, subject=audit_event.type, text_body=body,
                    account_id=audit_event.account.id, created_at=now, next_attempt_at=now,
                )
            )


def post_webhook(url: str, body: str) -> None:
    """POST one signed webhook; any non-2xx answer or network error raises OSError."""
    config = current_app.config
    message_id = json.loads(body)["id"]
    timestamp = int(time.time())
    request = urllib.request.Request(
        url,
        data=body.encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "resetdesk-webhooks",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(config["WEBHOOK_SECRET"], message_id, timestamp, body),
        },
    )
    # urllib raises HTTPError (an OSError) for any 4xx/5xx answer.
    with urllib.request.urlopen(request, timeout=config["WEBHOOK_TIMEOUT"]) as response:
        response.read(1024)


def register_webhooks() -> None:
    """Listen to every session's flushes, once per process."""
    if not event.contains(Session, "before_flush", queue_webhooks):
        event.listen(Session, "before_flush", queue_webhooks)
