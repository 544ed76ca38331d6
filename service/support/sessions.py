"""Agents' console sessions, kept in their own table.

The cookie holds a random session id; the table keeps its hash, when it started, when the
agent was last seen and when it ended, so signing out (or disabling the agent) ends every copy
of the cookie at once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from service.models import AccountStatus, Agent, AgentSession
from service.platform.database import DbSession
from service.platform.signing import sha256_hex

# However active, an agent signs in again after a working day.
ABSOLUTE_LIFETIME = timedelta(hours=12)
# Writing last_seen_at on every page would turn each read into a write; once a minute is enough.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class StartedSession:
    """A new session and the secret its cookie carries (never stored)."""

    record: AgentSession
    secret: str


def start_session(session: DbSession, agent: Agent, *, now: datetime) -> StartedSession:
    """Open a console session for an agent; flushes, the caller commits."""
    secret = secrets.token_urlsafe(32)
    record = AgentSession(agent_id=agent.id, secret_hash=sha256_hex(secret), started_at=now, last_seen_at=now)
    session.add(record)
    session.flush()
    return StartedSession(record=record, secret=secret)


def find_live_session(
    session: DbSession, secret: str, *, idle_timeout: timedelta, now: datetime
) -> tuple[AgentSession, Agent] | None:
    """The live session a cookie's secret names and its agent, or None once it has ended,
    idled out, outlived the working day, or its agent was disabled. Marks it seen (flushes)."""
    found = session.execute(
        select(AgentSession, Agent)
        .join(Agent, Agent.id == AgentSession.agent_id)
        .where(AgentSession.secret_hash == sha256_hex(secret))
    ).first()
    if found is None:
        return None
    record, agent = found
    if (
        record.ended_at is not None
        or agent.status != AccountStatus.ACTIVE
        or now - record.last_seen_at > idle_timeout
        or now - record.started_at > ABSOLUTE_LIFETIME
    ):
        return None
    # Seen marks far finer than the idle limit keep an active agent in, at a write a minute at most.
    if now - record.last_seen_at > min(LAST_SEEN_RESOLUTION, idle_timeout / 10):
        record.last_seen_at = now
    return record, agent


def end_session(session: DbSession, record: AgentSession, *, now: datetime) -> None:
    """Sign a session out; flushes, the caller commits."""
    record.ended_at = now
    session.flush()


def end_agent_sessions(session: DbSession, agent: Agent, *, now: datetime) -> None:
    """End every open session of an agent (when the agent is disabled); the caller commits."""
    session.execute(
        update(AgentSession)
        .where(AgentSession.agent_id == agent.id, AgentSession.ended_at.is_(None))
        .values(ended_at=now)
        .execution_options(synchronize_session=False)
    )
