"""A request id for every request: taken from a trusted proxy's X-Request-ID or made here,
echoed in the answer, written in every log line and audit event of the request."""

from __future__ import annotations

import re
import secrets

from flask import Flask, Response, g, has_request_context, request

HEADER = "X-Request-ID"
# The header as the WSGI environ holds it: read there, a missing header is a plain None rather
# than the KeyError werkzeug's header lookup raises and catches on every request without one.
ENVIRON_KEY = "HTTP_X_REQUEST_ID"
# Only ids that cannot smuggle anything into logs are taken from outside.
ACCEPTABLE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def current_request_id() -> str | None:
    """This request's id, or None outside a request (CLI, dispatcher)."""
    if not has_request_context():
        return None
    request_id: str | None = g.get("request_id")
    return request_id


def register_request_ids(app: Flask) -> None:
    def assign_request_id() -> None:
        incoming = request.environ.get(ENVIRON_KEY, "")
        # 32 random hex digits, as uuid4().hex gave, without building a UUID object.
        g.request_id = incoming if ACCEPTABLE_ID.match(incoming) else secrets.token_hex(16)

    # First of all before-request functions: extensions registered earlier (CSRF) may refuse the
    # request there, and that answer and its log lines need the id too.
    app.before_request_funcs.setdefault(None, []).insert(0, assign_request_id)

    @app.after_request
    def echo_request_id(response: Response) -> Response:
        if "request_id" in g:
            response.headers[HEADER] = g.request_id
        return response
