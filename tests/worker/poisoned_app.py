"""A poisoned rule for the worker's isolation tests, and the real service with it, for
`flask --app "tests.worker.poisoned_app:create_poisoned_app()" outbox run`."""

from __future__ import annotations

from datetime import datetime

from flask import Flask

from service import create_app
from service.models import ResetRequest
from service.platform.database import DbSession
from service.platform.sealing import TYPED_USERNAME, open_sealed
from service.resets import requests
from service.resets.policy import ResetPolicy

POISON = "poison"
POISON_ERROR = "a poisoned reset request"

_resolve = requests.resolve_reset_request


def poisoned_resolve(session: DbSession, request: ResetRequest, *, policy: ResetPolicy, now: datetime) -> str:
    """Resolve as the service does; for the username `poison`, raise once its work is flushed,
    so the rollback has a reset, a mail and an event to undo."""
    # The row keeps the typed name sealed, and resolving empties it: read it first.
    typed = open_sealed(TYPED_USERNAME, request.username_sealed)
    outcome = _resolve(session, request, policy=policy, now=now)
    if typed == POISON:
        raise RuntimeError(POISON_ERROR)
    return outcome


def create_poisoned_app() -> Flask:
    """The service as `wsgi` builds it, with the poisoned rule in place of the real one."""
    requests.resolve_reset_request = poisoned_resolve
    return create_app()
