"""Posting a queued webhook, signed the Standard Webhooks way: `webhook-id`,
`webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.request

from service.platform.config import settings

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


def post_webhook(url: str, body: str) -> None:
    """POST one signed webhook; any non-2xx answer or network error raises OSError."""
    config = settings()
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
