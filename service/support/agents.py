"""Support agents: the people who answer the phone and sign in to the console."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from service.accounts.passwords import check_new_password, hash_password, verify_password
from service.accounts.throttle import agent_throttle_key, sign_in_throttle, unlock_agent
from service.accounts.usernames import email_problem, username_problem
from service.events import audit
from service.models import AccountStatus, Agent
from service.platform.database import DbSession
from service.platform.errors import UsernameTaken, ValidationFailed
from service.platform.text import normalise_username
from service.support.sessions import end_agent_sessions


def find_agent(session: DbSession, username: str) -> Agent | None:
    """The agent a username names, or None."""
    key = normalise_username(username)
    return session.scalar(select(Agent).where(Agent.username_key == key))


def create_agent(
    session: DbSession,
    *,
    username: str,
    email: str,
    password: str | None,
    now: datetime,
    actor: str = audit.CLI,
    ip: str | None = None,
    supervisor: bool = False,
) -> Agent:
    """Create an agent with its audit event; flushes, the caller commits. Without a password
    the agent cannot sign in yet; a supervisor also sees the desk overview."""
    problems = [p for p in (username_problem(username), email_problem(email)) if p is not None]
    if problems:
        raise ValidationFailed(problems[0].message, errors=problems)
    if find_agent(session, username) is not None:
        raise UsernameTaken(f"An agent named {username.strip()!r} exists already.")
    password_hash = None
    if password is not None:
        check_new_password(password, username=username, email=email)
        password_hash = hash_password(password)
    agent = Agent(
        username=username.strip(),
        username_key=normalise_username(username),
        email=email.strip(),
        password_hash=password_hash,
        created_at=now,
        supervisor=supervisor,
    )
    session.add(agent)
    session.flush()
    details: dict[str, object] = {"agent": agent.username, **({"supervisor": True} if supervisor else {})}
    audit.record_event(session, "agent.created", actor=actor, ip=ip, now=now, details=details)
    return agent


def set_supervisor(session: DbSession, username: str, supervisor: bool, *, now: datetime) -> Agent | None:
    """Make an agent a supervisor (who also sees the desk overview) or no longer one; audited
    when it changes. None when no agent has that name; the caller commits."""
    agent = find_agent(session, username)
    if agent is None:
        return None
    if agent.supervisor != supervisor:
        agent.supervisor = supervisor
        audit.record_event(
            session, "agent.supervisor_changed", actor=audit.CLI, ip=None, now=now,
            details={"agent": agent.username, "supervisor": supervisor},
        )
    return agent


def list_agents(session: DbSession) -> list[Agent]:
    """Every agent, by username."""
    return list(session.scalars(select(Agent).order_by(Agent.username_key)))


def disable_agent(session: DbSession, username: str, *, now: datetime) -> bool:
    """Stop an agent from signing in, at once, and end their console sessions; the caller commits."""
    agent = find_agent(session, username)
    if agent is None or agent.status == AccountStatus.DISABLED:
        return False
    agent.status = AccountStatus.DISABLED
    end_agent_sessions(session, agent, now=now)
    audit.record_event(session, "agent.disabled", actor=audit.CLI, ip=None, now=now, details={"agent": agent.username})
    return True


def set_agent_password(session: DbSession, username: str, password: str, *, now: datetime) -> Agent | None:
    """Give an agent a new password (a forgotten one, or one created without); ends their open
    console sessions. Returns None when no agent has that name; the caller commits."""
    agent = find_agent(session, username)
    if agent is None:
        return None
    check_new_password(password, username=agent.username, email=agent.email)
    agent.password_hash = hash_password(password)
    end_agent_sessions(session, agent, now=now)
    audit.record_event(
        session, "agent.password_set", actor=audit.CLI, ip=None, now=now, details={"agent": agent.username}
    )
    return agent


def unlock_agent_sign_in(session: DbSession, username: str, *, now: datetime) -> Agent | None:
    """Lift an agent's console sign-in throttle from every address; audited. None when no agent
    has that name; the caller commits."""
    agent = find_agent(session, username)
    if agent is None:
        return None
    unlock_agent(agent.username_key)
    audit.record_event(session, "agent.unlocked", actor=audit.CLI, ip=None, now=now, details={"agent": agent.username})
    return agent


def check_agent_password(
    session: DbSession, username: str, password: str, *, ip: str | None, now: datetime
) -> Agent | None:
    """Check an agent's password, throttled like customers' and at the same cost.

    Returns the agent, or None for a failure, which is counted and audited; the caller commits
    either way. Raises RateLimited while throttled. A right password alone signs nobody in:
    `finish_sign_in` does, after the second step when there is one.
    """
    throttle = sign_in_throttle()
    throttle_key = agent_throttle_key(normalise_username(username), ip)
    with throttle.attempt(throttle_key) as attempt:
        agent = find_agent(session, username)
        matched, new_hash = verify_password(password, agent.password_hash if agent else None)
        if agent is None or agent.status != AccountStatus.ACTIVE or not matched:
            attempt.failed()
            # Someone guessing agents' passwords (or locking them out) leaves a trace.
            audit.record_event(
                session, "agent.sign_in_failed", actor=audit.agent_actor(username.strip()[:150]), ip=ip, now=now,
                details={"known_agent": agent is not None},
            )
            return None
    if new_hash:
        agent.password_hash = new_hash
    return agent


def finish_sign_in(session: DbSession, agent: Agent, *, ip: str | None, now: datetime) -> None:
    """Record that the agent signed in (every step passed); the caller opens the session and commits."""
    agent.last_sign_in_at = now
    audit.record_event(session, "agent.signed_in", actor=audit.agent_actor(agent.username), ip=ip, now=now)


def sign_in_agent(session: DbSession, username: str, password: str, *, ip: str | None, now: datetime) -> Agent | None:
    """Sign an agent in with a password alone (where no second step applies); None for a failure."""
    agent = check_agent_password(session, username, password, ip=ip, now=now)
    if agent is not None:
        finish_sign_in(session, agent, ip=ip, now=now)
    return agent
