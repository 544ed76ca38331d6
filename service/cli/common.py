"""What every command shares: reading a password from standard input, failing with words."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from service.platform.errors import ServiceError


def read_password_from_stdin() -> str:
    """A password piped on standard input, without its trailing newline."""
    return sys.stdin.readline().rstrip("\r\n")


def fail(error: ServiceError) -> NoReturn:
    """Stop the command with the error's words and a non-zero exit."""
    message = str(error.detail)
    for field_error in error.errors:
        if field_error.message != message:
            message += f"\n  {field_error.field}: {field_error.message}"
    raise click.ClickException(message)
