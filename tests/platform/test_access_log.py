"""Access logs hold no reset token and stay valid JSON: gunicorn's logger class and the
development server's request lines."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from gunicorn.config import Config

from service.platform.accesslog import JsonAccessLogger, RedactRequestLine, redact_path

TOKEN = "IjEyMyI.ZXhhbXBsZQ.c2lnbmF0dXJlLXNlY3JldA"


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        (f"/reset-password/{TOKEN}", "/reset-password/<token>"),
        (f"/api/v1/password-resets/{TOKEN}", "/api/v1/password-resets/<token>"),
        (f"/api/v1/password-resets/{TOKEN}/more", "/api/v1/password-resets/<token>"),
        ("/reset-password/new", "/reset-password/new"),
        ("/reset-password/done", "/reset-password/done"),
        ("/reset-password/code", "/reset-password/code"),
        ("/api/v1/password-resets/confirm", "/api/v1/password-resets/confirm"),
        ("/reset-password", "/reset-password"),
        ("/support?q=jane@example.com", "/support"),
    ],
)
def test_paths_are_logged_without_tokens_or_queries(path: str, logged: str) -> None:
    assert redact_path(path) == logged


def access_line(path: str, agent: str, caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    config = Config()
    config.set("accesslog", "-")
    logger = JsonAccessLogger(config)
    logger.access_log.propagate = True  # let caplog see it
    environ = {
        "REMOTE_ADDR": "192.0.2.1", "REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "",
        "RAW_URI": path, "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_USER_AGENT": agent,
    }
    response = SimpleNamespace(status="200 OK", sent=12, headers=[("X-Request-ID", "req-1")])
    with caplog.at_level(logging.INFO, logger="gunicorn.access"):
        logger.access(response, SimpleNamespace(headers=[]), environ, timedelta(milliseconds=7))
    lines = [record.getMessage() for record in caplog.records if record.name == "gunicorn.access"]
    assert len(lines) == 1
    assert TOKEN not in lines[0]
    return json.loads(lines[0])


def test_gunicorn_logs_method_and_route_as_json(caplog: pytest.LogCaptureFixture) -> None:
    entry = access_line(f"/reset-password/{TOKEN}", "Mozilla/5.0", caplog)
    assert entry["method"] == "GET"
    assert entry["path"] == "/reset-password/<token>"
    assert (entry["status"], entry["bytes"], entry["duration_ms"], entry["request_id"]) == (200, 12, 7, "req-1")


def test_quotes_and_backslashes_in_the_user_agent_keep_the_line_json(caplog: pytest.LogCaptureFixture) -> None:
    agent = 'evil" \\ "x":1 %(r)s'
    assert access_line(f"/api/v1/password-resets/{TOKEN}", agent, caplog)["agent"] == agent


def development_server_line(path: str, caplog: pytest.LogCaptureFixture, *, query: str = "") -> str:
    """What Werkzeug's development server logs for `GET <path><query>`, through the filter."""
    from werkzeug.serving import WSGIRequestHandler

    logger = logging.getLogger("werkzeug")
    redactor = RedactRequestLine()
    logger.addFilter(redactor)
    try:
        handler = WSGIRequestHandler.__new__(WSGIRequestHandler)
        handler.requestline = f"GET {path}{query} HTTP/1.1"
        handler.path = path + query
        handler.command, handler.request_version = "GET", "HTTP/1.1"
        handler.client_address = ("127.0.0.1", 5000)
        handler.log_date_time_string = lambda: "now"  # type: ignore[method-assign]
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            handler.log_request(200, 12)
    finally:
        logger.removeFilter(redactor)
    return " ".join(record.getMessage() for record in caplog.records if record.name == "werkzeug")


def test_the_development_server_request_line_has_no_token(caplog: pytest.LogCaptureFixture) -> None:
    message = development_server_line(f"/reset-password/{TOKEN}", caplog, query="?x=1")
    assert "GET /reset-password/<token> HTTP/1.1" in message
    assert TOKEN not in message


def test_an_app_installs_the_development_server_filter(app: Any) -> None:
    assert any(isinstance(f, RedactRequestLine) for f in logging.getLogger("werkzeug").filters)


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/report/eyJrIjoicmVzZXQifQ.abc.def", "/report/<token>"),
        ("/confirm-email/eyJjIjoxfQ.abc.def", "/confirm-email/<token>"),
        ("/confirm-email", "/confirm-email"),
        ("/api/v1/accounts/jane.doe/password", "/api/v1/accounts/<username>/password"),
        ("/api/v1/support/accounts/jane.doe", "/api/v1/support/accounts/<username>"),
        ("/support/accounts/jane.doe/unlock", "/support/accounts/<username>/unlock"),
        ("/api/v1/support/accounts", "/api/v1/support/accounts"),
    ],
)
def test_report_and_email_links_and_usernames_in_paths_stay_out_of_the_log(path: str, logged: str) -> None:
    from service.platform.accesslog import redact_path

    assert redact_path(path) == logged


def test_the_per_username_limit_key_holds_no_typed_name(app: Flask) -> None:
    from service.platform.clients import submitted_username

    with app.test_request_context("/api/v1/password-resets", method="POST", json={"username": "Hunter2-MyPassword!"}):
        key = submitted_username()
    with app.test_request_context("/reset-password", method="POST", data={"username": " hunter2-mypassword! "}):
        same_name_other_spelling = submitted_username()
    assert "hunter2" not in key.casefold()
    assert key == same_name_other_spelling


# What a client can send that the router still takes to a token's page: repeated slashes
# (werkzeug merges them), dot segments, percent-encoded slashes and letters, an absolute URI.
NON_CANONICAL = [
    (f"//reset-password/{TOKEN}", "/reset-password/<token>"),
    (f"/reset-password//{TOKEN}", "/reset-password/<token>"),
    (f"/api/v1//password-resets/{TOKEN}", "/api/v1/password-resets/<token>"),
    (f"///api//v1///password-resets//{TOKEN}", "/api/v1/password-resets/<token>"),
    (f"/./reset-password/./{TOKEN}", "/reset-password/<token>"),
    (f"/x/../report/{TOKEN}", "/report/<token>"),
    (f"/reset-password%2F{TOKEN}", "/reset-password/<token>"),
    (f"/reset-password%252F{TOKEN}", "/reset-password/<token>"),
    (f"/%72eset-password/{TOKEN}", "/reset-password/<token>"),
    (f"//confirm-email/{TOKEN}", "/confirm-email/<token>"),
    ("//api/v1/support/accounts/jane.doe/unlock", "/api/v1/support/accounts/<username>/unlock"),
    (f"http://localhost//reset-password/{TOKEN}", "/reset-password/<token>"),
    # The backstop: a long token-like segment anywhere is never logged.
    (f"/somewhere/else/{TOKEN}", "/somewhere/else/<token>"),
    (f"/static/{TOKEN}.css", "/static/<token>"),
    ("/reset-password\\" + TOKEN, "/reset-password\\<token>"),
]


@pytest.mark.parametrize(("path", "logged"), NON_CANONICAL)
def test_a_non_canonical_path_is_logged_without_its_token(path: str, logged: str) -> None:
    assert redact_path(path) == logged


@pytest.mark.parametrize(("path", "logged"), NON_CANONICAL)
def test_gunicorn_logs_no_token_of_a_non_canonical_path(path: str, logged: str, caplog: pytest.LogCaptureFixture) -> None:
    assert access_line(path, "curl/8", caplog)["path"] == logged


@pytest.mark.parametrize(("path", "logged"), NON_CANONICAL)
def test_the_development_server_logs_no_token_of_a_non_canonical_path(
    path: str, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    message = development_server_line(path, caplog)
    assert TOKEN not in message
    assert f"GET {logged} HTTP/1.1".replace("\\", "\\\\") in message  # werkzeug doubles a backslash


def test_a_control_character_decoded_from_the_path_is_not_written_raw() -> None:
    assert redact_path("/reset-password%0a%0dinjected") == "/reset-password%0A%0Dinjected"


def test_no_word_of_a_route_is_taken_for_a_token(app: Flask) -> None:
    words = {part for rule in app.url_map.iter_rules() for part in rule.rule.split("/") if part and "<" not in part}
    assert "username-reminders" in words
    for word in words:
        assert redact_path(f"/{word}") == f"/{word}", word


def test_an_unhandled_exception_on_a_token_path_is_logged_without_the_token(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    def crash(token: str) -> str:
        raise RuntimeError("a bug")

    app.add_url_rule("/crash/<path:token>", view_func=crash)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    with caplog.at_level(logging.ERROR, logger=app.logger.name):
        assert app.test_client().get(f"/crash/{TOKEN}").status_code == 500
    logged = [record.getMessage() for record in caplog.records if record.name == app.logger.name]
    assert logged == ["Exception on /crash/<token> [GET]"]


def test_gunicorn_s_own_error_about_a_request_names_its_route_not_its_token(caplog: pytest.LogCaptureFixture) -> None:
    logger = JsonAccessLogger(Config())
    logger.error_log.propagate = True  # let caplog see it
    with caplog.at_level(logging.INFO, logger="gunicorn.error"):
        try:
            raise OSError("the client went away")
        except OSError:
            logger.exception("Error handling request %s %s", "GET", f"/reset-password/{TOKEN}?x=1")
    lines = {record.getMessage() for record in caplog.records if record.name == "gunicorn.error"}
    assert lines == {"Error handling request GET /reset-password/<token>"}
