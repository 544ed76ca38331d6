"""`housekeeping run`: delete what has outlived its retention."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from service.platform.clock import utcnow
from service.platform.extensions import db
from service.worker.housekeeping import retention_policy, run_housekeeping

housekeeping_cli = AppGroup("housekeeping", help="Deleting rows past their retention.")


@housekeeping_cli.command("run")
def housekeeping_run() -> None:
    """Delete processed reset requests, finished outbox rows and audit events past their retention."""
    report = run_housekeeping(db.session, retention_policy(), now=utcnow())
    for table, deleted in report.deleted.items():
        click.echo(f"{table}\t{deleted} deleted")
