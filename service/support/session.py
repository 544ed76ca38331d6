"""The agent's console session: its own signed cookie, SameSite=Strict, ending when idle.

Customers' pages use Flask's session with SameSite=Lax (a reset link is opened from a mail
client, a cross-site navigation). The console needs neither that nor cross-site anything,
so an agent's sign-in lives in a separate, stricter cookie scoped to /support.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

from flask import current_app, g, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select
from werkzeug.wrappers import Response

from .. import audit
from ..extensions import db
from ..models import Agent, AuditEvent
from ..requestkeys import client_ip

COOKIE_NAME = "resetdesk_agent"
COOKIE_PATH = "/support"
SALT = "resetdesk.agent-session"
# However active, an agent signs in again after a working day.
ABSOLUTE_LIFETIME_SECONDS = 12 * 3600
SIGNED_OUT = "agent.signed_out"


def _serializer() -> URLSafeTimedSerializer:
    config = current_app.config
    return URLSafeTimedSerializer([*config["SECRET_KEY_FALLBACKS"], config["SECRET_KEY"]], salt=SALT)


def _set_cookie(response: Response, agent_id: int, signed_in_at: int, session_id: str) -> None:
    response.set_cookie(
        COOKIE_NAME,
        _serializer().dumps({"a": agent_id, "t": signed_in_at, "s": session_id}),
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=current_app.config["APP_ENV"] == "production",
    )


def start_agent_session(response: Response, agent: Agent) -> None:
    """Sign the agent in on this response."""
    _set_cookie(response, agent.id, int(time.time()), secrets.token_urlsafe(16))


def end_agent_session(response: Response) -> None:
    """Sign out: the session is recorded as ended and the cookie removed; commits.

    The cookie is only signed, not stored, so removing it is not enough: a copy kept
    elsewhere would still work until idle. The recorded sign-out makes any copy worthless.
    """
    agent = current_agent()
    if agent is not None:
        audit.record_event(
            db.session, SIGNED_OUT, actor=audit.agent_actor(agent.username), ip=client_ip(),
            details={"session": g.agent_session_id},
        )
        db.session.commit()
    response.delete_cookie(COOKIE_NAME, path=COOKIE_PATH)


def _signed_out(agent: Agent, session_id: str, signed_in_at: int) -> bool:
    """Whether the agent has signed this session out."""
    ended = db.session.scalars(
        select(AuditEvent.details).where(
            AuditEvent.type == SIGNED_OUT,
            AuditEvent.actor == audit.agent_actor(agent.username),
            AuditEvent.at >= datetime.fromtimestamp(signed_in_at, UTC),
        )
    )
    return any(details.get("session") == session_id for details in ended)


def current_agent() -> Agent | None:
    """The signed-in, still active agent of this request, or None when idle too long."""
    if "agent" in g:
        return g.agent
    g.agent = None
    raw = request.cookies.get(COOKIE_NAME)
    if raw:
        idle_seconds = current_app.config["AGENT_IDLE_MINUTES"] * 60
        try:
            payload = _serializer().loads(raw, max_age=idle_seconds)
        except BadSignature:  # expired (idle) or forged
            payload = None
        if (
            isinstance(payload, dict)
            and isinstance(payload.get("a"), int)
            and isinstance(payload.get("t"), int)
            and isinstance(payload.get("s"), str)
            and time.time() - payload["t"] < ABSOLUTE_LIFETIME_SECONDS
        ):
            agent = db.session.get(Agent, payload["a"])
            if (
                agent is not None
                and agent.status == "active"
                and not _signed_out(agent, payload["s"], payload["t"])
            ):
                g.agent = agent
                g.agent_signed_in_at = payload["t"]
                g.agent_session_id = payload["s"]
    return g.agent


def refresh_agent_session(response: Response) -> Response:
    """Each page an agent opens restarts the idle clock."""
    agent = g.get("agent")
    if agent is not None and COOKIE_NAME not in _cookies_being_set(response):
        _set_cookie(response, agent.id, g.agent_signed_in_at, g.agent_session_id)
    return response


def _cookies_being_set(response: Response) -> set[str]:
    return {header.split("=", 1)[0] for header in response.headers.getlist("Set-Cookie")}
