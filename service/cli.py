"""Operator commands: `flask --app wsgi users|agents|apikeys|reset|outbox ...`."""

from __future__ import annotations

import csv
import json
import signal
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn, TextIO

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from passlib.context import CryptContext

from . import audit
from .audit import export_events
from .accounts import create_account, find_account
from .agents import create_agent, disable_agent, list_agents
from .apikeys import create_api_key, list_api_keys, revoke_api_key
from .clock import utcnow
from .config import RESET_METHODS
from .dispatcher import current_dispatcher
from .errors import AccountNotFound, ServiceError
from .extensions import db
from .metrics import serve_worker_metrics
from .models import API_ROLES
from .outbox import outbox_status, retry_failed
from .passwords import crypt_context
from .resets import issue_reset

IMPORT_HEADER = ["username", "email", "password_hash"]

users_cli = AppGroup("users", help="Customer accounts.")
agents_cli = AppGroup("agents", help="Support agents who use the console.")
apikeys_cli = AppGroup("apikeys", help="API keys for the website and tools.")
reset_cli = AppGroup("reset", help="Resets sent from the shell, as support would.")
outbox_cli = AppGroup("outbox", help="The queue of outgoing mail and webhooks.")
audit_cli = AppGroup("audit", help="The audit trail.")


def read_password_from_stdin() -> str:
    """A password piped on standard input, without its trailing newline."""
    return sys.stdin.readline().rstrip("\r\n")


def fail(error: ServiceError) -> NoReturn:
    """Stop the command with the error's words and a non-zero exit."""
    message = error.detail
    for field_error in error.errors:
        if field_error.message != message:
            message += f"\n  {field_error.field}: {field_error.message}"
    raise click.ClickException(message)


@users_cli.command("create")
@click.argument("username")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_create(username: str, email: str, password_stdin: bool) -> None:
    """Create an account; without --password-stdin it has no password until it is reset."""
    password = read_password_from_stdin() if password_stdin else None
    try:
        account = create_account(
            db.session, username=username, email=email or None, password=password, actor=audit.CLI
        )
    except ServiceError as error:
        fail(error)
    click.echo(f"Created account {account.username}.")


@dataclass
class ImportReport:
    """How an import went: how many accounts were made, and which lines were refused and why."""

    imported: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)


def _parses(context: CryptContext, password_hash: str) -> bool:
    """Whether a recognised hash is also well-formed; parsing is cheap, unlike verifying."""
    try:
        context.handler(context.identify(password_hash)).from_string(password_hash)
    except ValueError:
        return False
    return True


def import_accounts(rows: TextIO) -> ImportReport:
    """Create an account per CSV row, each committed alone so a refused row writes nothing."""
    report = ImportReport()
    reader = csv.reader(rows)
    header = [name.strip().lower() for name in next(reader, [])]
    if header != IMPORT_HEADER:
        raise click.ClickException(
            f"The first line must be the header {','.join(IMPORT_HEADER)}; it is {','.join(header) or 'empty'}."
        )
    context = crypt_context()
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(IMPORT_HEADER):
            report.refused.append((line, f"expected 3 columns, found {len(row)}"))
            continue
        username, email, password_hash = (cell.strip() for cell in row)
        if password_hash and context.identify(password_hash, required=False) is None:
            report.refused.append((line, "password_hash is not a hash format this service knows"))
            continue
        if password_hash and not _parses(context, password_hash):
            report.refused.append((line, "password_hash is damaged (cut short or wrongly copied)"))
            continue
        try:
            create_account(
                db.session,
                username=username,
                email=email or None,
                password_hash=password_hash or None,
                actor=audit.CLI,
            )
        except ServiceError as error:
            db.session.rollback()
            report.refused.append((line, error.detail))
            continue
        report.imported += 1
    return report


@users_cli.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def users_import(csv_file: Path) -> None:
    """Import accounts from a CSV file with the header username,email,password_hash."""
    with csv_file.open(newline="", encoding="utf-8-sig") as rows:
        report = import_accounts(rows)
    click.echo(f"Imported {report.imported} account(s); refused {len(report.refused)}.")
    for line, reason in report.refused:
        click.echo(f"  line {line}: {reason}")
    if report.refused:
        sys.exit(1)


@agents_cli.command("create")
@click.argument("username")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def agents_create(username: str, email: str, password_stdin: bool) -> None:
    """Create a support agent who signs in to the console at /support."""
    password = read_password_from_stdin() if password_stdin else None
    try:
        agent = create_agent(db.session, username=username, email=email, password=password)
    except ServiceError as error:
        fail(error)
    click.echo(f"Created agent {agent.username}.")


@agents_cli.command("list")
def agents_list() -> None:
    """List agents: username, email, status, last sign-in."""
    for agent in list_agents(db.session):
        last = agent.last_sign_in_at.isoformat() if agent.last_sign_in_at else "never"
        click.echo(f"{agent.username}\t{agent.email}\t{agent.status}\tlast sign-in {last}")


@agents_cli.command("disable")
@click.argument("username")
def agents_disable(username: str) -> None:
    """Stop an agent from signing in; an open console session ends at its next page."""
    if not disable_agent(db.session, username):
        raise click.ClickException(f"No active agent named {username!r}.")
    click.echo(f"Disabled agent {username}.")


@apikeys_cli.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(API_ROLES), required=True)
def apikeys_create(name: str, role: str) -> None:
    """Create an API key and print it as the last line; it is never shown again."""
    try:
        api_key, presented_key = create_api_key(db.session, name, role)
    except ServiceError as error:
        fail(error)
    click.echo(f"Created {api_key.role} key {api_key.name}. Store it now; it is not shown again:")
    click.echo(presented_key)


@apikeys_cli.command("list")
def apikeys_list() -> None:
    """List keys: name, role, created, last used, revoked."""
    for api_key in list_api_keys(db.session):
        last_used = api_key.last_used_at.isoformat() if api_key.last_used_at else "never"
        state = f"revoked {api_key.revoked_at.isoformat()}" if api_key.revoked_at else "live"
        click.echo(f"{api_key.name}\t{api_key.role}\tcreated {api_key.created_at.isoformat()}\tlast used {last_used}\t{state}")


@apikeys_cli.command("revoke")
@click.argument("name")
def apikeys_revoke(name: str) -> None:
    """Revoke a key at once."""
    if not revoke_api_key(db.session, name):
        raise click.ClickException(f"No live key named {name!r}.")
    click.echo(f"Revoked key {name}.")


@reset_cli.command("send")
@click.argument("username")
@click.option("--method", type=click.Choice(RESET_METHODS), default=None,
              help="Default: the RESET_METHOD setting.")
def reset_send(username: str, method: str | None) -> None:
    """Send a reset link or temporary password to an account's email."""
    account = find_account(db.session, username)
    try:
        if account is None:
            raise AccountNotFound(f"No account named {username!r}.")
        issued = issue_reset(
            db.session, account, method or current_app.config["RESET_METHOD"],
            requested_by=audit.CLI, ip=None, now=utcnow(),
        )
    except ServiceError as error:
        fail(error)
    db.session.commit()
    click.echo(f"Queued a {issued.reset.method.replace('_', ' ')} for {account.username} to {issued.sent_to}.")


@outbox_cli.command("run")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
def outbox_run(once: bool) -> None:
    """Resolve reset requests and deliver queued mail; stops cleanly on SIGTERM or Ctrl-C."""
    dispatcher = current_dispatcher()
    if once:
        handled = dispatcher.run_once()
        click.echo(f"Handled {handled} item(s).")
        return
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda *_: dispatcher.stop())
    metrics_port = current_app.config["WORKER_METRICS_PORT"]
    if metrics_port:
        serve_worker_metrics(current_app._get_current_object(), metrics_port)
        click.echo(f"Metrics on :{metrics_port}/metrics.")
    click.echo("Outbox worker running; SIGTERM or Ctrl-C stops it after the message in flight.")
    dispatcher.run_forever()
    click.echo("Outbox worker stopped.")


@outbox_cli.command("status")
def outbox_status_command() -> None:
    """Counts by status, the oldest waiting message, and the latest failures."""
    status = outbox_status(db.session)
    for name in ("pending", "sending", "sent", "failed"):
        click.echo(f"{name}\t{status.counts.get(name, 0)}")
    if status.oldest_pending_at:
        waited = int((utcnow() - status.oldest_pending_at).total_seconds())
        click.echo(f"oldest waiting: {waited} s")
    for message in status.failed:
        click.echo(f"failed #{message.id} to {message.recipient} after {message.attempts} attempts: {message.last_error}")


@outbox_cli.command("retry-failed")
def outbox_retry_failed() -> None:
    """Put every failed message back in the queue with a fresh set of attempts."""
    click.echo(f"Requeued {retry_failed(db.session, now=utcnow())} message(s).")


@audit_cli.command("export")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
              help="Only events at or after this UTC date or time.")
@click.option("--account", "username", help="Only this account's events.")
def audit_export(since: datetime | None, username: str | None) -> None:
    """Write events as JSON lines, oldest first, for a compliance review."""
    account_id = None
    if username is not None:
        account = find_account(db.session, username)
        if account is None:
            raise click.ClickException(f"No account named {username!r}.")
        account_id = account.id
    for event in export_events(
        db.session, since=since.replace(tzinfo=UTC) if since else None, account_id=account_id
    ):
        click.echo(json.dumps(event, ensure_ascii=False))


def register_cli(app: Flask) -> None:
    """Attach the command groups to `flask --app wsgi`."""
    for group in (users_cli, agents_cli, apikeys_cli, reset_cli, outbox_cli, audit_cli):
        app.cli.add_command(group)
