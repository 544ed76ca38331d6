"""Posting a queued webhook, signed the Standard Webhooks way (`webhook-id`, `webhook-timestamp`,
`webhook-signature`) by the reference `standardwebhooks` library that receivers verify with."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime

from standardwebhooks import Webhook

from service.platform.config import settings


def sign(secret: str, message_id: str, timestamp: datetime, body: str) -> str:
    """The `webhook-signature` header value for a body; the secret was checked at start."""
    return Webhook(secret).sign(msg_id=message_id, timestamp=timestamp, data=body)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a delivery: urllib would follow a 301, 302 or 303 with a
    GET without the body, and a 200 there would count a webhook the website never got as
    delivered. Refused, the 3xx fails the attempt (HTTPError), which is retried and shows in
    `outbox status` until WEBHOOK_URLS points where the website now listens."""

    def redirect_request(self, *_args: object, **_kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def post_webhook(url: str, body: str) -> None:
    """POST one signed webhook; any non-2xx answer (a redirect too) or network error raises OSError."""
    config = settings()
    message_id = json.loads(body)["id"]
    # Whole seconds: the header carries them, and the signature covers the header's value.
    timestamp = datetime.now(UTC).replace(microsecond=0)
    request = urllib.request.Request(
        url,
        data=body.encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "resetdesk-webhooks",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": sign(config["WEBHOOK_SECRET"], message_id, timestamp, body),
        },
    )
    # urllib raises HTTPError (an OSError) for any 3xx (see _NoRedirects), 4xx or 5xx answer.
    with _OPENER.open(request, timeout=config["WEBHOOK_TIMEOUT"]) as response:
        response.read(1024)
