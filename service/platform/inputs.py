"""Input no view can use, refused before any view sees it: an address longer than any of the
service's, NUL in the path or query string, and a chunked body over the size limit."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

from flask import Flask, request
from werkzeug.exceptions import RequestURITooLarge

from service.platform.errors import ServiceError
from service.platform.text import is_storable


class UnusableInput(ServiceError):
    status = 400
    code = "invalid_input"
    title = "The request holds characters that cannot be used"


# The longest address the service makes (a reset link, an email-change link) is a few hundred
# characters; 2,048 is what browsers and proxies have long allowed. gunicorn refuses a request
# line over 8,190 bytes with a page of its own; up to that (`limit_request_line` in
# gunicorn.conf.py) the service answers in its own words, problem+json on the API.
MAX_ADDRESS_LENGTH = 2048


def refuse_unstorable_path_and_query() -> None:
    """Refuse an address too long to be one of the service's (414), and NUL (PostgreSQL refuses
    it in any text) or lone surrogates in the path or query (400)."""
    environ = request.environ
    if len(environ.get("PATH_INFO", "")) + len(environ.get("QUERY_STRING", "")) > MAX_ADDRESS_LENGTH:
        raise RequestURITooLarge()
    values = [request.path]
    if request.environ.get("QUERY_STRING"):  # most requests have none: nothing to parse then
        values += [part for pair in request.args.items(multi=True) for part in pair]
    if not all(is_storable(value) for value in values):
        raise UnusableInput("The address holds a character that cannot be used (NUL or a lone surrogate).")


# Methods whose body a view may read: a chunked GET's body is left to the server to discard.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _UnreadableBody(io.RawIOBase):
    """A body whose reading failed (a malformed chunk): each read raises OSError, which
    Werkzeug turns into a 400 the app answers in its own words."""

    def __init__(self, error: OSError) -> None:
        self.error = error

    def readable(self) -> bool:
        return True

    def readinto(self, _buffer: Any) -> int:
        raise self.error


class ChunkedBodyLength:
    """Gives a chunked body (no Content-Length) a length, so the size limit holds for it too.

    Werkzeug reads such a body up to MAX_CONTENT_LENGTH and stops there without a word: a
    larger body came to the views cut short, and failed as bad JSON (400) or an expired form,
    instead of the 413 a body with a Content-Length gets. This reads it first, at most one byte
    past the limit, and says how long it is: a body over the limit is then refused with 413,
    through the same error pages as any other, and a body within it reads as before. A proxy
    that buffers request bodies (nginx does by default) sends a Content-Length instead, and
    this never runs.
    """

    def __init__(self, wsgi_app: Any, limit: int) -> None:
        self.wsgi_app, self.limit = wsgi_app, limit

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        # Chunked overrides any Content-Length beside it (RFC 9112, 6.3), as it does in Werkzeug;
        # any other coding is left as it comes (no view reads one).
        codings = [coding.strip().lower() for coding in environ.get("HTTP_TRANSFER_ENCODING", "").split(",")]
        if codings == ["chunked"] and environ.get("REQUEST_METHOD") in BODY_METHODS:
            self._measure(environ)
        result: Iterable[bytes] = self.wsgi_app(environ, start_response)
        return result

    def _measure(self, environ: dict[str, Any]) -> None:
        try:
            body = environ["wsgi.input"].read(self.limit + 1)
        # The server's parse errors (gunicorn's are its own classes) would escape the app and be
        # answered with the server's page; as a failed read, the app answers its own 400.
        except Exception as error:  # noqa: BLE001
            environ["wsgi.input"] = _UnreadableBody(OSError(f"unreadable request body: {type(error).__name__}"))
            return
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        # What the app reads now is that many bytes, no longer chunked (Werkzeug ignores
        # Content-Length beside a chunked Transfer-Encoding).
        del environ["HTTP_TRANSFER_ENCODING"]


def register_input_checks(app: Flask) -> None:
    """Check every request's path and query string before the views, on every database alike;
    measure chunked bodies before anything reads them."""
    app.before_request(refuse_unstorable_path_and_query)
    app.wsgi_app = ChunkedBodyLength(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"])  # type: ignore[method-assign]
