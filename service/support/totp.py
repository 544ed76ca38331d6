"""Agents' second factor: time-based one-time codes (TOTP, RFC 6238) from an app on their phone.

The secret is kept sealed under its own purpose and is shown only while the agent enrols (as a
QR code and as text) or to the admin who restarts an enrolment. A code is accepted for the
current 30-second step or the one on either side (a phone's clock drifts), and never twice:
the last step used is kept, and a code from it or an earlier one is refused.
"""

from __future__ import annotations

from datetime import datetime

import pyotp
import segno

from service.accounts.throttle import agent_throttle_key, sign_in_throttle
from service.events import audit
from service.models import Agent
from service.platform.config import settings
from service.platform.database import DbSession
from service.platform.sealing import open_sealed, seal
from service.support.sessions import end_agent_sessions

SEALING_PURPOSE = "resetdesk.agent-totp"
# Steps either side of now whose codes are still accepted: 30 seconds of clock drift.
DRIFT_STEPS = 1
CODE_DIGITS = 6


def is_enrolled(agent: Agent) -> bool:
    """True once the agent confirmed a code from their secret."""
    return agent.totp_secret_sealed is not None and agent.totp_confirmed_at is not None


def second_step_needed(agent: Agent) -> bool:
    """Whether the password alone signs this agent in: never when codes are required or the agent enrolled."""
    return bool(settings()["AGENT_REQUIRE_TOTP"]) or is_enrolled(agent)


def start_enrolment(
    session: DbSession, agent: Agent, *, now: datetime, actor: str, ip: str | None, reset: bool = False
) -> None:
    """Give the agent a new, unconfirmed secret; flushes, the caller commits.

    With `reset` (an admin's recovery for a lost device) the old secret stops working at once,
    the agent's console sessions end, and `agent.totp_reset` is audited.
    """
    agent.totp_secret_sealed = seal(SEALING_PURPOSE, pyotp.random_base32())
    agent.totp_confirmed_at = None
    agent.totp_last_step = None
    if reset:
        end_agent_sessions(session, agent, now=now)
        audit.record_event(session, "agent.totp_reset", actor=actor, ip=ip, now=now, details={"agent": agent.username})
    session.flush()


def _totp(agent: Agent) -> pyotp.TOTP:
    assert agent.totp_secret_sealed is not None, "start_enrolment comes first"
    return pyotp.TOTP(open_sealed(SEALING_PURPOSE, agent.totp_secret_sealed), digits=CODE_DIGITS)


def enrolment_key(agent: Agent) -> str:
    """The secret as the agent types it into an app that cannot scan (base32)."""
    return _totp(agent).secret


def provisioning_uri(agent: Agent) -> str:
    """The otpauth:// URI an authenticator app scans."""
    return _totp(agent).provisioning_uri(name=agent.username, issuer_name=f"{settings()['SHOP_NAME']} support")


def qr_code_svg(agent: Agent, *, title: str) -> str:
    """The enrolment URI as a QR code in inline SVG, drawn here: the secret never leaves the service."""
    code = segno.make(provisioning_uri(agent), error="m")
    svg: str = code.svg_inline(scale=5, dark="#000", light="#fff", title=title, svgclass="qr-code")
    return svg


def _matching_step(agent: Agent, code: str, now: datetime) -> int | None:
    """The step whose code this is, among those still accepted and never used; None otherwise."""
    code = "".join(code.split())
    if len(code) != CODE_DIGITS or not code.isascii() or not code.isdigit() or agent.totp_secret_sealed is None:
        return None
    totp = _totp(agent)
    current = totp.timecode(now)
    found = None
    # Every candidate is compared (in constant time), so timing says nothing of which matched.
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if pyotp.utils.strings_equal(totp.generate_otp(step), code) and (
            agent.totp_last_step is None or step > agent.totp_last_step
        ):
            found = step
    return found


def check_code(session: DbSession, agent: Agent, code: str, *, ip: str | None, now: datetime) -> bool:
    """Check a code from the agent's app, counted by the agent's sign-in throttle like a password.

    A right code marks its step used (and confirms an enrolment in progress); a wrong or
    replayed one is counted and audited. Raises RateLimited while throttled; the caller commits
    either way.
    """
    throttle_key = agent_throttle_key(agent.username_key, ip)
    with sign_in_throttle().attempt(throttle_key) as attempt:
        step = _matching_step(agent, code, now)
        if step is None:
            attempt.failed()
            audit.record_event(
                session, "agent.totp_failed", actor=audit.agent_actor(agent.username), ip=ip, now=now,
            )
            return False
    agent.totp_last_step = step
    if agent.totp_confirmed_at is None:
        agent.totp_confirmed_at = now
        audit.record_event(session, "agent.totp_enrolled", actor=audit.agent_actor(agent.username), ip=ip, now=now)
    session.flush()
    return True
