"""Access logs without secrets: the path with any reset token replaced by `<token>` and no query
string (searches hold names and emails), as JSON built by json.dumps for gunicorn, and the
same redaction for the development server's request lines. Paths are normalised first, so
`//reset-password/<token>` (which the router takes to the same page) is redacted alike."""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

from flask import has_request_context, request
from gunicorn.glogging import Logger

# Paths whose next segment (and anything after it) is a token, except these fixed words: reset
# links, "this wasn't me" links and email-change confirmations.
TOKEN_PREFIXES = ("/reset-password/", "/api/v1/password-resets/", "/report/", "/confirm-email/")
FIXED_WORDS = frozenset({"new", "done", "confirm", "code"})
TOKEN = "<token>"
# Paths whose next segment is a customer's username: personal data, kept out of the log.
USERNAME_PREFIXES = ("/api/v1/accounts/", "/api/v1/support/accounts/", "/support/accounts/")
USERNAME = "<username>"


# Anything this long made of a token's characters is taken for a token wherever it stands: the
# backstop for a route or a spelling the prefixes above do not foresee. No word of a route is
# this long (a test checks).
TOKEN_LIKE = re.compile(r"[A-Za-z0-9._-]{20,}")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
MAX_DECODINGS = 3


def normalised_path(path: str) -> str:
    """The path the router sees, whatever the spelling: without query or fragment, percent-
    decoding undone (repeatedly: `%252F`), repeated slashes merged (werkzeug merges them) and
    `.` and `..` segments resolved. A control character decoded from it is encoded again."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    if ABSOLUTE.match(path):  # an absolute URI in the request line: its path
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    for _ in range(MAX_DECODINGS):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return CONTROL.sub(lambda found: f"%{ord(found.group()):02X}", "/" + "/".join(segments))


def redact_path(path: str) -> str:
    """The path as it may be logged: normalised (see `normalised_path`), `<token>` where a
    token was and `<username>` where a customer's username was, and no query string."""
    path = normalised_path(path)
    for prefix in TOKEN_PREFIXES:
        if path.startswith(prefix):
            rest = path[len(prefix):]
            if rest and rest not in FIXED_WORDS:
                return prefix + TOKEN
    for prefix in USERNAME_PREFIXES:
        if path.startswith(prefix) and len(path) > len(prefix):
            _username, slash, action = path[len(prefix):].partition("/")
            path = prefix + USERNAME + slash + action
            break
    return TOKEN_LIKE.sub(TOKEN, path)


def redact_request_line(line: str) -> str:
    """`GET /reset-password/abc HTTP/1.1` as it may be logged."""
    parts = line.split(" ")
    if len(parts) == 3:
        return f"{parts[0]} {redact_path(parts[1])} {parts[2]}"
    return redact_path(line)


def _status_code(status: str | int) -> int | str:
    code = str(status).split(None, 1)[0] if str(status).strip() else "-"
    return int(code) if code.isdigit() else code


def access_entry(environ: dict[str, Any], status: str | int, sent: int | None, duration: timedelta, request_id: str | None) -> str:
    """One access-log line: a JSON object, whatever the client put in its headers."""
    return json.dumps(
        {
            "remote": environ.get("REMOTE_ADDR", "-"),
            "method": environ.get("REQUEST_METHOD", "-"),
            "path": redact_path(environ.get("PATH_INFO") or "/"),
            "status": _status_code(status),
            "bytes": sent,
            "duration_ms": duration.seconds * 1000 + duration.microseconds // 1000,
            "request_id": request_id,
            "agent": environ.get("HTTP_USER_AGENT", "-"),
        },
        ensure_ascii=False,
    )


# gunicorn's own lines about a request it could not parse or serve, which quote what the client
# sent: a request line or a header may hold a reset token or an API key.
INVALID_REQUEST = "Invalid request from ip="
QUOTED = re.compile(r"""['"].*""", re.S)
ERROR_HANDLING_REQUEST = "Error handling request %s %s"


def redact_invalid_request(message: str) -> str:
    """gunicorn's warning about a request it refused, without what the client sent."""
    if not message.startswith(INVALID_REQUEST):
        return message
    return TOKEN_LIKE.sub(TOKEN, QUOTED.sub("(what was sent is not logged)", message))


class JsonAccessLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger, with each access written as `access_entry` builds it, and its own
    lines about a refused or failed request without the path's token or what the client sent."""

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        super().warning(redact_invalid_request(msg) if isinstance(msg, str) else msg, *args, **kwargs)

    def exception(self, msg: str, *args: Any, **kwargs: Any) -> None:
        if msg == ERROR_HANDLING_REQUEST and len(args) == 2:
            args = (args[0], redact_path(str(args[1])))
        super().exception(msg, *args, **kwargs)

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> None:
        if not self.access_log_enabled:
            return
        headers = dict((name.lower(), value) for name, value in (resp.headers or []))
        line = access_entry(environ, resp.status, getattr(resp, "sent", None), request_time, headers.get("x-request-id"))
        # The line is the whole message: no %-formatting of what a client sent.
        self.access_log.info("%s", line)


class RedactRequestLine(logging.Filter):
    """Rewrites the development server's (werkzeug's) request lines so no token reaches the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args and isinstance(record.args[0], str):
            record.args = (redact_request_line(record.args[0]), *record.args[1:])
        return True


class RedactExceptionPath(logging.Filter):
    """Flask logs an unhandled exception as `Exception on <path> [GET]`: with the path redacted
    here, a 500 on a reset link's page does not write its token into the error log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context() and isinstance(record.msg, str) and record.msg.startswith("Exception on "):
            record.msg = record.msg.replace(request.path, redact_path(request.path), 1)
        return True


def redact_development_server_log() -> None:
    """Install the filter on werkzeug's logger once per process."""
    logger = logging.getLogger("werkzeug")
    if not any(isinstance(existing, RedactRequestLine) for existing in logger.filters):
        logger.addFilter(RedactRequestLine())
