"""The agent's console cookie: its own signed cookie, SameSite=Strict, naming a session row.

Customers' pages use Flask's session with SameSite=Lax (a reset link is opened from a mail
client, a cross-site navigation). The console needs neither that nor cross-site anything,
so an agent's sign-in lives in a separate, stricter cookie scoped to /support. The session
itself (started, last seen, ended) lives in its table (`service.support.sessions`).
"""

from __future__ import annotations

from datetime import timedelta

from flask import current_app, g, request, session
from itsdangerous import BadSignature
from werkzeug.wrappers import Response

from service.events import audit
from service.models import AccountStatus, Agent
from service.platform.clients import client_ip
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.platform.signing import serializer, sha256_hex
from service.support.sessions import end_session, find_live_session, start_session

COOKIE_NAME = "resetdesk_agent"
COOKIE_PATH = "/support"
SALT = "resetdesk.agent-session"
# Between the password and the code: names the agent, grants nothing, lapses after five minutes.
PENDING_COOKIE_NAME = "resetdesk_agent_pending"
PENDING_SALT = "resetdesk.agent-second-step"
PENDING_MAX_AGE = 300


def _idle_timeout() -> timedelta:
    return timedelta(minutes=current_app.config["AGENT_IDLE_MINUTES"])


def _set_cookie(response: Response, secret: str) -> None:
    response.set_cookie(
        COOKIE_NAME,
        serializer(SALT).dumps({"s": secret}),
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=current_app.config["APP_ENV"] == "production",
    )


def start_agent_session(response: Response, agent: Agent) -> None:
    """Open a session for the agent and set its cookie on this response; the view commits.

    The forms' CSRF token starts afresh too: the one of the sign-in page was handed out before
    anyone signed in, so whoever saw that page (a shared browser, a planted cookie) would know
    the token of the agent's session."""
    started = start_session(db.session, agent, now=utcnow())
    _set_cookie(response, started.secret)
    forget_csrf_token()


def end_agent_session(response: Response) -> None:
    """Sign out: the session ends in its table (so any copy of the cookie dies) and the cookie
    is removed; the view commits."""
    agent = current_agent()
    if agent is not None:
        now = utcnow()
        end_session(db.session, g.agent_session, now=now)
        audit.record_event(db.session, "agent.signed_out", actor=audit.agent_actor(agent.username), ip=client_ip(), now=now)
    response.delete_cookie(COOKIE_NAME, path=COOKIE_PATH)
    forget_csrf_token()


def forget_csrf_token() -> None:
    """Drop the browser session's CSRF token: the next form gets a new one."""
    session.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)


def current_agent() -> Agent | None:
    """The signed-in, still active agent of this request, or None when idle too long."""
    if "agent" in g:
        agent: Agent | None = g.agent
        return agent
    g.agent = None
    raw = request.cookies.get(COOKIE_NAME)
    if not raw:
        return None
    idle_timeout = _idle_timeout()
    try:
        payload = serializer(SALT).loads(raw, max_age=int(idle_timeout.total_seconds()))
    except BadSignature:  # expired (idle) or forged
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("s"), str):
        return None
    found = find_live_session(db.session, payload["s"], idle_timeout=idle_timeout, now=utcnow())
    if found is not None:
        g.agent_session, g.agent = found
        g.agent_cookie_secret = payload["s"]
    result: Agent | None = g.agent
    return result


def refresh_agent_session(response: Response) -> Response:
    """Each page an agent opens restarts the cookie's idle clock."""
    if g.get("agent") is not None and COOKIE_NAME not in _cookies_being_set(response):
        _set_cookie(response, g.agent_cookie_secret)
    return response


def _cookies_being_set(response: Response) -> set[str]:
    return {header.split("=", 1)[0] for header in response.headers.getlist("Set-Cookie")}


def _password_fingerprint(agent: Agent) -> str:
    # A new password (or `agents set-password`) voids a half-finished sign-in.
    return sha256_hex(agent.password_hash or "")[:16]


def start_second_step(response: Response, agent: Agent) -> None:
    """The password was right: remember, for a few minutes, whose code the next step asks for."""
    response.set_cookie(
        PENDING_COOKIE_NAME,
        serializer(PENDING_SALT).dumps({"a": agent.id, "p": _password_fingerprint(agent)}),
        path=COOKIE_PATH,
        max_age=PENDING_MAX_AGE,
        httponly=True,
        samesite="Strict",
        secure=current_app.config["APP_ENV"] == "production",
    )


def second_step_agent() -> Agent | None:
    """The active agent whose password this browser gave in the last minutes, or None."""
    raw = request.cookies.get(PENDING_COOKIE_NAME)
    if not raw:
        return None
    try:
        payload = serializer(PENDING_SALT).loads(raw, max_age=PENDING_MAX_AGE)
    except BadSignature:  # expired or forged
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("a"), int):
        return None
    agent = db.session.get(Agent, payload["a"])
    if agent is None or agent.status != AccountStatus.ACTIVE or payload.get("p") != _password_fingerprint(agent):
        return None
    return agent


def end_second_step(response: Response) -> None:
    """Forget the half-finished sign-in."""
    response.delete_cookie(PENDING_COOKIE_NAME, path=COOKIE_PATH)
