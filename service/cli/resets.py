"""`reset send`: a support-side reset from the shell."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from service.accounts.records import find_account
from service.cli.common import fail
from service.events import audit
from service.models import RESET_METHODS, AccountStatus
from service.platform.clock import utcnow
from service.platform.errors import AccountNotFound, ServiceError
from service.platform.extensions import db
from service.resets.issuing import issue_reset
from service.resets.policy import reset_policy

reset_cli = AppGroup("reset", help="Resets sent from the shell, as support would.")


@reset_cli.command("send")
@click.argument("username")
@click.option("--method", type=click.Choice(RESET_METHODS), default=None, help="Default: the RESET_METHOD setting.")
def reset_send(username: str, method: str | None) -> None:
    """Send a reset link or temporary password to an account's email."""
    policy = reset_policy()
    account = find_account(db.session, username)
    try:
        if account is None or account.status == AccountStatus.CLOSED:
            raise AccountNotFound(f"No account named {username!r}.")
        issued = issue_reset(
            db.session, account, method or policy.method, policy=policy, requested_by=audit.CLI, ip=None, now=utcnow()
        )
    except ServiceError as error:
        fail(error)
    db.session.commit()
    click.echo(f"Queued a {issued.method.replace('_', ' ')} for {account.username} to {issued.sent_to}.")
