"""Logging: one JSON object a line in production (for the log pipeline), text on a laptop."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from flask import Flask
from flask.logging import default_handler

from service.platform.accesslog import RedactExceptionPath, redact_development_server_log
from service.platform.requestids import current_request_id


class RequestIdFilter(logging.Filter):
    """Adds the request id (or None) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id()
        return True


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: time, level, logger, message, request id, and any trace."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def configure_logging(app: Flask) -> None:
    """Send the service's logs to standard error in the configured format (not under tests,
    where pytest captures them)."""
    redact_development_server_log()
    app.logger.addFilter(RedactExceptionPath())
    if app.config["TESTING"]:
        return
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if app.config["LOG_FORMAT"] == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    # Flask gave the app's logger ("service", the parent of every module's logger) its own
    # text handler when the filter above first touched it: every line would be written twice,
    # once in Flask's format (a line the JSON pipeline cannot read).
    app.logger.removeHandler(default_handler)
