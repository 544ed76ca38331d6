"""Queuing a webhook is queued work: the request that recorded the event wakes the dispatcher."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from service.models import Account, OutboxKind, OutboxMessage
from service.platform.extensions import db

WEBHOOK_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def app_settings() -> dict[str, Any]:
    return {"WEBHOOK_URLS": ("http://127.0.0.1:9/hooks",), "WEBHOOK_SECRET": WEBHOOK_SECRET}


def test_an_unlock_that_queues_only_a_webhook_wakes_the_dispatcher(
    app: Flask, make_account: Callable[..., Account], make_key: Callable[[str], dict[str, str]]
) -> None:
    make_account("jane")
    agent_key = make_key("agent")
    dispatcher = app.extensions["resetdesk.dispatcher"]
    wakes: list[int] = []
    dispatcher.wake = lambda: wakes.append(1)
    response = app.test_client().post("/api/v1/support/accounts/jane/unlock", headers=agent_key)
    assert response.status_code == 204
    response.close()  # the dispatcher is woken once the answer is out
    assert wakes == [1]
    with app.app_context():
        webhooks = db.session.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.kind == OutboxKind.WEBHOOK)
        )
    assert webhooks == 1
