"""`outbox run|status|retry-failed`: the queue of outgoing mail and webhooks."""

from __future__ import annotations

import signal
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from service.models import OutboxStatus
from service.outbox.queue import outbox_status, retry_failed
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.platform.metrics import serve_worker_metrics
from service.retention.sweep import table_sizes
from service.worker.dispatcher import current_dispatcher

outbox_cli = AppGroup("outbox", help="The queue of outgoing mail and webhooks.")


@outbox_cli.command("run")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@click.option(
    "--heartbeat",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Touch this file after every pass over the queues, for a health check to read its age.",
)
def outbox_run(once: bool, heartbeat: Path | None) -> None:
    """Resolve reset requests and deliver queued mail; stops cleanly on SIGTERM or Ctrl-C."""
    dispatcher = current_dispatcher()
    dispatcher.heartbeat = heartbeat
    if once:
        handled = dispatcher.run_once()
        click.echo(f"Handled {handled} item(s).")
        return
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda *_: dispatcher.stop())
    metrics_port = current_app.config["WORKER_METRICS_PORT"]
    if metrics_port:
        host = current_app.config["WORKER_METRICS_HOST"]
        serve_worker_metrics(current_app._get_current_object(), metrics_port, host)  # type: ignore[attr-defined]
        click.echo(f"Metrics on {host}:{metrics_port}/metrics.")
    click.echo("Outbox worker running; SIGTERM or Ctrl-C stops it after the message in flight.")
    dispatcher.run_forever()
    click.echo("Outbox worker stopped.")


@outbox_cli.command("status")
def outbox_status_command() -> None:
    """Counts by status, the oldest waiting message, and the latest failures."""
    status = outbox_status(db.session)
    for name in OutboxStatus:
        click.echo(f"{name}\t{status.counts.get(name, 0)}")
    if status.oldest_pending_at:
        waited = int((utcnow() - status.oldest_pending_at).total_seconds())
        click.echo(f"oldest waiting: {waited} s")
    for table, rows in table_sizes(db.session).items():
        click.echo(f"table {table}\t{rows} rows")
    for message in status.failed:
        click.echo(f"failed #{message.id} to {message.recipient} after {message.attempts} attempts: {message.last_error}")


@outbox_cli.command("retry-failed")
def outbox_retry_failed() -> None:
    """Put every failed webhook back in the queue with a fresh set of attempts (failed mail keeps no body)."""
    requeued = retry_failed(db.session, now=utcnow())
    db.session.commit()
    click.echo(f"Requeued {requeued} message(s).")
