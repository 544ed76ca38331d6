"""`users create`, `users import` and `users export`: customer accounts from the shell."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from flask.cli import AppGroup

from service.accounts.export import export_account
from service.accounts.legacy import import_accounts
from service.accounts.records import create_account
from service.cli.common import fail, read_password_from_stdin
from service.events import audit
from service.platform.clock import utcnow
from service.platform.errors import ServiceError
from service.platform.extensions import db
from service.support.actions import require_account

users_cli = AppGroup("users", help="Customer accounts.")


@users_cli.command("create")
@click.argument("username")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_create(username: str, email: str, password_stdin: bool) -> None:
    """Create an account; without --password-stdin it has no password until it is reset."""
    password = read_password_from_stdin() if password_stdin else None
    try:
        account = create_account(
            db.session, username=username, email=email or None, password=password, actor=audit.CLI, now=utcnow()
        )
    except ServiceError as error:
        fail(error)
    db.session.commit()
    click.echo(f"Created account {account.username}.")


def _finish_row(kept: bool) -> None:
    if kept:
        db.session.commit()
    else:
        db.session.rollback()


@users_cli.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def users_import(csv_file: Path) -> None:
    """Import accounts from a CSV file with the header username,email,password_hash."""
    with csv_file.open(newline="", encoding="utf-8-sig") as rows:
        try:
            report = import_accounts(db.session, rows, now=utcnow(), finish_row=_finish_row)
        except ServiceError as error:
            fail(error)
    click.echo(f"Imported {report.imported} account(s); refused {len(report.refused)}.")
    for line, reason in report.refused:
        click.echo(f"  line {line}: {reason}")
    if report.refused:
        sys.exit(1)


@users_cli.command("export")
@click.argument("username")
def users_export(username: str) -> None:
    """Print everything kept about an account as JSON (the same as the admin API's export)."""
    try:
        account = require_account(db.session, username)
    except ServiceError as error:
        fail(error)
    click.echo(json.dumps(export_account(db.session, account), indent=2, ensure_ascii=False))
