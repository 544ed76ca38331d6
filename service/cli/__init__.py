"""Operator commands, a door: `flask --app wsgi users|agents|apikeys|reset|outbox|audit ...`.

Each command commits once at the end of its work (the CSV import once per row), and a
refused command leaves nothing behind.
"""

from __future__ import annotations

from flask import Flask

from service.cli.agents import agents_cli
from service.cli.apikeys import apikeys_cli
from service.cli.audit import audit_cli
from service.cli.housekeeping import housekeeping_cli
from service.cli.outbox import outbox_cli
from service.cli.resets import reset_cli
from service.cli.users import users_cli


def register_cli(app: Flask) -> None:
    """Attach the command groups to `flask --app wsgi`."""
    for group in (users_cli, agents_cli, apikeys_cli, reset_cli, outbox_cli, audit_cli, housekeeping_cli):
        app.cli.add_command(group)
