"""Support agents: the people who answer the phone and sign in to the console."""

from __future__ import annotations

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit
from .clock import utcnow
from .errors import InvalidCredentials, UsernameTaken, ValidationFailed
from .models import Agent
from .passwords import check_new_password, hash_password, verify_password
from .throttle import agent_throttle_key, sign_in_throttle
from .usernames import email_problem, normalise_username, username_problem


def find_agent(session: Session, username: str) -> Agent | None:
    """The agent a username names, or None."""
    key = normalise_username(username)
    return session.scalar(select(Agent).where(Agent.username_key == key))


def create_agent(
    session: Session,
    *,
    username: str,
    email: str,
    password: str | None,
    actor: str = audit.CLI,
    ip: str | None = None,
) -> Agent:
    """Create an agent and commit it with its audit event; without a password the agent cannot
    sign in yet."""
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
        created_at=utcnow(),
    )
    session.add(agent)
    audit.record_event(session, "agent.created", actor=actor, ip=ip, details={"agent": agent.username})
    session.commit()
    return agent


def list_agents(session: Session) -> list[Agent]:
    """Every agent, by username."""
    return list(session.scalars(select(Agent).order_by(Agent.username_key)))


def disable_agent(session: Session, username: str) -> bool:
    """Stop an agent from signing in, at once (their console session ends too); commits."""
    agent = find_agent(session, username)
    if agent is None or agent.status == "disabled":
        return False
    agent.status = "disabled"
    audit.record_event(session, "agent.disabled", actor=audit.CLI, ip=None, details={"agent": agent.username})
    session.commit()
    return True


def sign_in_agent(session: Session, username: str, password: str, *, ip: str | None) -> Agent:
    """Check an agent's password, throttled like customers' and at the same cost; commits."""
    throttle = sign_in_throttle()
    throttle_key = agent_throttle_key(normalise_username(username))
    throttle.check(throttle_key)
    agent = find_agent(session, username)
    matched, new_hash = verify_password(password, agent.password_hash if agent else None)
    if agent is None or agent.status != "active" or not matched:
        throttle.record_failure(throttle_key)
        # Someone guessing agents' passwords (or locking them out) leaves a trace.
        audit.record_event(
            session, "agent.sign_in_failed", actor=audit.agent_actor(username.strip()[:150]), ip=ip,
            details={"known_agent": agent is not None},
        )
        session.commit()
        raise InvalidCredentials(_("The username or password is wrong."))
    if new_hash:
        agent.password_hash = new_hash
    agent.last_sign_in_at = utcnow()
    audit.record_event(session, "agent.signed_in", actor=audit.agent_actor(agent.username), ip=ip)
    session.commit()
    return agent
