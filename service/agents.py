"""Support agents: the people who answer the phone and sign in to the console."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from .clock import utcnow
from .errors import UsernameTaken, ValidationFailed
from .models import Agent
from .passwords import check_new_password, hash_password
from .usernames import email_problem, normalise_username, username_problem


def find_agent(session: Session, username: str) -> Agent | None:
    """The agent a username names, or None."""
    key = normalise_username(username)
    return session.scalar(select(Agent).where(Agent.username_key == key))


def create_agent(session: Session, *, username: str, email: str, password: str | None) -> Agent:
    """Create an agent and commit; without a password the agent cannot sign in yet."""
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
    session.commit()
    return agent
