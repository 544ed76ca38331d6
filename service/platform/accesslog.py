"""Access logs without secrets: the path with any reset token replaced by `<token>` and no query
string (searches hold names and emails), as JSON built by json.dumps for gunicorn, and the
same redaction for the development server's request lines."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from gunicorn.glogging import Logger

# Paths whose next segment (and anything after it) is a token, except these fixed words: reset
# links, "this wasn't me" links and email-change confirmations.
TOKEN_PREFIXES = ("/reset-password/", "/api/v1/password-resets/", "/report/", "/confirm-email/")
FIXED_WORDS = frozenset({"new", "done", "confirm", "code"})
TOKEN = "<token>"
# Paths whose next segment is a customer's username: personal data, kept out of the log.
USERNAME_PREFIXES = ("/api/v1/accounts/", "/api/v1/support/accounts/", "/support/accounts/")
USERNAME = "<username>"


def redact_path(path: str) -> str:
    """The path as it may be logged: no query string, `<token>` where a token was and
    `<username>` where a customer's username was."""
    path = path.split("?", 1)[0]
    for prefix in TOKEN_PREFIXES:
        if path.startswith(prefix):
            rest = path[len(prefix):]
            if rest and rest not in FIXED_WORDS:
                return prefix + TOKEN
    for prefix in USERNAME_PREFIXES:
        if path.startswith(prefix) and len(path) > len(prefix):
            _username, slash, action = path[len(prefix):].partition("/")
            return prefix + USERNAME + slash + action
    return path


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


class JsonAccessLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger, with each access written as `access_entry` builds it."""

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


def redact_development_server_log() -> None:
    """Install the filter on werkzeug's logger once per process."""
    logger = logging.getLogger("werkzeug")
    if not any(isinstance(existing, RedactRequestLine) for existing in logger.filters):
        logger.addFilter(RedactRequestLine())
