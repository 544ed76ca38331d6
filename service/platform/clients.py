"""What rate limits count by: the client's address and the username a request names."""

from __future__ import annotations

from flask import request
from werkzeug.exceptions import HTTPException

from service.platform.text import USERNAME_MAX_LENGTH, normalise_username


def client_ip() -> str:
    """The client's address as ProxyFix resolved it; never read from a header directly."""
    return request.remote_addr or "unknown"


def submitted_username() -> str:
    """The normalised username in a JSON body or form, so one name is limited however spelt.

    Missing and malformed names count under one shared key, so they are limited too.
    """
    try:
        if request.is_json:
            body = request.get_json(silent=True)
            raw = body.get("username") if isinstance(body, dict) else None
        else:
            raw = request.form.get("username")
    except (HTTPException, RecursionError):
        # A body too large (413), cut short or nested too deep: the view answers that error itself; raising here,
        # inside Flask-Limiter, would only be logged as a storage failure and loosen the limits.
        return "username:"
    if not isinstance(raw, str):
        return "username:"
    # Cut before normalising, exactly as the request is stored and later looked up: cutting
    # after would let padding (`"   ...victim"`) give every request a fresh key for one account.
    return "username:" + normalise_username(raw[:USERNAME_MAX_LENGTH])
