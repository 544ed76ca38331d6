"""`agents create|list|disable|set-password|unlock|totp|supervisor`: the support agents who use the console."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from service.cli.common import fail, read_password_from_stdin
from service.events import audit
from service.platform.clock import utcnow
from service.platform.errors import ServiceError
from service.platform.extensions import db
from service.support import totp
from service.support.agents import (
    create_agent,
    disable_agent,
    find_agent,
    list_agents,
    set_agent_password,
    set_supervisor,
    unlock_agent_sign_in,
)

agents_cli = AppGroup("agents", help="Support agents who use the console.")


@agents_cli.command("create")
@click.argument("username")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--supervisor", is_flag=True, help="Also show them the desk overview.")
def agents_create(username: str, email: str, password_stdin: bool, supervisor: bool) -> None:
    """Create a support agent who signs in to the console at /support."""
    password = read_password_from_stdin() if password_stdin else None
    try:
        agent = create_agent(
            db.session, username=username, email=email, password=password, now=utcnow(), supervisor=supervisor
        )
    except ServiceError as error:
        fail(error)
    db.session.commit()
    click.echo(f"Created agent {agent.username}.")


@agents_cli.command("list")
def agents_list() -> None:
    """List agents: username, email, status, last sign-in, and `supervisor` for supervisors."""
    for agent in list_agents(db.session):
        last = agent.last_sign_in_at.isoformat() if agent.last_sign_in_at else "never"
        role = "\tsupervisor" if agent.supervisor else ""
        click.echo(f"{agent.username}\t{agent.email}\t{agent.status}\tlast sign-in {last}{role}")


@agents_cli.command("disable")
@click.argument("username")
def agents_disable(username: str) -> None:
    """Stop an agent from signing in; an open console session ends at its next page."""
    if not disable_agent(db.session, username, now=utcnow()):
        raise click.ClickException(f"No active agent named {username!r}.")
    db.session.commit()
    click.echo(f"Disabled agent {username}.")


@agents_cli.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, required=True, help="Read the password from standard input.")
def agents_set_password(username: str, password_stdin: bool) -> None:
    """Set an agent's password (a forgotten one, or one created without)."""
    password = read_password_from_stdin()
    try:
        agent = set_agent_password(db.session, username, password, now=utcnow())
    except ServiceError as error:
        fail(error)
    if agent is None:
        raise click.ClickException(f"No agent named {username!r}.")
    db.session.commit()
    click.echo(f"Set the password of agent {agent.username}.")


@agents_cli.command("unlock")
@click.argument("username")
def agents_unlock(username: str) -> None:
    """Lift an agent's console sign-in throttle, from every address."""
    agent = unlock_agent_sign_in(db.session, username, now=utcnow())
    if agent is None:
        raise click.ClickException(f"No agent named {username!r}.")
    db.session.commit()
    click.echo(f"Unlocked agent {agent.username}.")


@agents_cli.command("supervisor")
@click.argument("username")
@click.option("--on/--off", "supervisor", default=None, help="Make the agent a supervisor, or no longer one.")
def agents_supervisor(username: str, supervisor: bool | None) -> None:
    """Make an agent a supervisor, who also sees the desk overview (--on), or no longer one (--off)."""
    if supervisor is None:
        raise click.UsageError("Say --on or --off.")
    agent = set_supervisor(db.session, username, supervisor, now=utcnow())
    if agent is None:
        raise click.ClickException(f"No agent named {username!r}.")
    db.session.commit()
    if supervisor:
        click.echo(f"{agent.username} is now a supervisor.")
    else:
        click.echo(f"{agent.username} is no longer a supervisor.")


@agents_cli.command("totp")
@click.argument("username")
def agents_totp(username: str) -> None:
    """Start (or restart, for a lost device) an agent's authenticator set-up; prints the otpauth:// URI.

    The old codes stop working and the agent's console sessions end at once. Hand the URI to
    the agent only (it holds the secret), or let them scan the QR code at their next sign-in.
    """
    agent = find_agent(db.session, username)
    if agent is None:
        raise click.ClickException(f"No agent named {username!r}.")
    totp.start_enrolment(db.session, agent, now=utcnow(), actor=audit.CLI, ip=None, reset=True)
    uri = totp.provisioning_uri(agent)
    db.session.commit()
    click.echo(f"Started a new authenticator set-up for agent {agent.username}; it is confirmed by a first code.")
    click.echo(uri)
