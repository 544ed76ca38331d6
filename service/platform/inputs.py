"""Input no view can use, refused before any view sees it: NUL in the path or query string."""

from __future__ import annotations

from flask import Flask, request

from service.platform.errors import ServiceError
from service.platform.text import is_storable


class UnusableInput(ServiceError):
    status = 400
    code = "invalid_input"
    title = "The request holds characters that cannot be used"


def refuse_unstorable_path_and_query() -> None:
    """Refuse NUL (PostgreSQL refuses it in any text) and lone surrogates in the path or query."""
    values = [request.path]
    if request.environ.get("QUERY_STRING"):  # most requests have none: nothing to parse then
        values += [part for pair in request.args.items(multi=True) for part in pair]
    if not all(is_storable(value) for value in values):
        raise UnusableInput("The address holds a character that cannot be used (NUL or a lone surrogate).")


def register_input_checks(app: Flask) -> None:
    """Check every request's path and query string before the views, on every database alike."""
    app.before_request(refuse_unstorable_path_and_query)
