"""`apikeys create|list|revoke`: keys for the website and tools."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from service.access.apikeys import create_api_key, list_api_keys, revoke_api_key
from service.cli.common import fail
from service.models import API_ROLES
from service.platform.clock import utcnow
from service.platform.errors import ServiceError
from service.platform.extensions import db

apikeys_cli = AppGroup("apikeys", help="API keys for the website and tools.")


@apikeys_cli.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(API_ROLES), required=True)
def apikeys_create(name: str, role: str) -> None:
    """Create an API key and print it as the last line; it is never shown again."""
    try:
        api_key, presented_key = create_api_key(db.session, name, role, now=utcnow())
    except ServiceError as error:
        fail(error)
    db.session.commit()
    click.echo(f"Created {api_key.role} key {api_key.name}. Store it now; it is not shown again:")
    click.echo(presented_key)


@apikeys_cli.command("list")
def apikeys_list() -> None:
    """List keys: name, role, created, last used, revoked."""
    for api_key in list_api_keys(db.session):
        last_used = api_key.last_used_at.isoformat() if api_key.last_used_at else "never"
        state = f"revoked {api_key.revoked_at.isoformat()}" if api_key.revoked_at else "live"
        click.echo(
            f"{api_key.name}\t{api_key.role}\tcreated {api_key.created_at.isoformat()}\tlast used {last_used}\t{state}"
        )


@apikeys_cli.command("revoke")
@click.argument("name")
def apikeys_revoke(name: str) -> None:
    """Revoke a key at once."""
    if not revoke_api_key(db.session, name, now=utcnow()):
        raise click.ClickException(f"No live key named {name!r}.")
    db.session.commit()
    click.echo(f"Revoked key {name}.")
