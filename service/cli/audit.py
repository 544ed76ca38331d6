"""`audit export`: the audit trail as JSON lines, for a compliance review."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click
from flask.cli import AppGroup

from service.accounts.records import find_account
from service.events.audit import export_events
from service.platform.extensions import db

audit_cli = AppGroup("audit", help="The audit trail.")


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
