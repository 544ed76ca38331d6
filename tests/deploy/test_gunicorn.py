"""End to end in a real deployment shape: gunicorn with two workers, the CLI, SMTP, over HTTP."""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import OTHER_STRONG_PASSWORD, STRONG_PASSWORD, SmtpSink
from tests.processes import call, flask, free_port, served_by_gunicorn, service_env

pytestmark = pytest.mark.slow

MAIL_WAIT_SECONDS = 15


@pytest.fixture
def gunicorn(tmp_path: Path, smtp: SmtpSink) -> Iterator[dict[str, Any]]:
    """A migrated database with an account and a client key, served by gunicorn; stopped after."""
    port = free_port()
    env = service_env(tmp_path, port, smtp)
    flask(env, "db", "upgrade")
    flask(env, "users", "create", "jane", "jane@example.com", "--password-stdin", stdin=STRONG_PASSWORD + "\n")
    key = flask(env, "apikeys", "create", "website", "--role", "client").strip().splitlines()[-1]
    with served_by_gunicorn(env, port, tmp_path / "gunicorn.log") as base:
        yield {"base": base, "key": key, "log": tmp_path / "gunicorn.log"}


def wait_for_mail(smtp: SmtpSink, address: str, count: int) -> list[Any]:
    deadline = time.monotonic() + MAIL_WAIT_SECONDS
    while len(smtp.to(address)) < count:
        assert time.monotonic() < deadline, f"no mail to {address} within {MAIL_WAIT_SECONDS} s"
        time.sleep(0.1)
    return smtp.to(address)


def test_a_reset_over_real_http_through_gunicorn_with_inline_dispatch(
    gunicorn: dict[str, Any], smtp: SmtpSink
) -> None:
    base, bearer = gunicorn["base"], {"Authorization": f"Bearer {gunicorn['key']}"}

    status, body = call("POST", f"{base}/api/v1/password-resets", {"username": "jane"})
    assert (status, body["status"]) == (202, "accepted")

    [mail] = wait_for_mail(smtp, "jane@example.com", 1)
    match = re.search(re.escape(base) + r"/reset-password/(\S+)", SmtpSink.text_of(mail))
    assert match, SmtpSink.text_of(mail)
    token = match.group(1)

    assert call("GET", f"{base}/api/v1/password-resets/{token}")[0] == 200
    confirm = f"{base}/api/v1/password-resets/confirm"
    assert call("POST", confirm, {"token": token, "new_password": OTHER_STRONG_PASSWORD})[0] == 204

    verify = f"{base}/api/v1/auth/verify"
    status, body = call("POST", verify, {"username": "jane", "password": OTHER_STRONG_PASSWORD}, bearer)
    assert status == 200 and body["username"] == "jane" and body["must_change_password"] is False
    status, body = call("POST", verify, {"username": "jane", "password": STRONG_PASSWORD}, bearer)
    assert (status, body["code"]) == (401, "invalid_credentials")

    # The inline dispatcher also sends the change notice, and the link is now spent.
    notices = wait_for_mail(smtp, "jane@example.com", 2)
    assert notices[1]["Subject"] == "Your password was changed"
    status, body = call("POST", confirm, {"token": token, "new_password": "one more strong passphrase"})
    assert (status, body["code"]) == (410, "token_used")

    # The access log (JSON lines) names the route: the live token never reached it.
    log = gunicorn["log"].read_text()
    assert token not in log
    access = [json.loads(line) for line in log.splitlines() if line.startswith("{") and '"method"' in line]
    assert any(entry["method"] == "GET" and entry["path"] == "/api/v1/password-resets/<token>" for entry in access)


def _post_chunked(base: str, path: str, body: bytes, content_type: str) -> tuple[int, str, bytes]:
    """POST `body` in 8 KiB chunks (no Content-Length) over a raw connection, as a streaming
    client does; returns the status, the content type and the body of the answer."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    chunks = (body[start:start + 8192] for start in range(0, len(body), 8192))
    connection.request("POST", path, body=chunks, headers={"Content-Type": content_type}, encode_chunked=True)
    response = connection.getresponse()
    answer = (response.status, response.getheader("Content-Type", ""), response.read())
    connection.close()
    return answer


def test_a_chunked_body_over_64_kib_is_413_and_one_within_is_read(gunicorn: dict[str, Any]) -> None:
    """Without a Content-Length, a body over the limit used to reach the view cut at 64 KiB,
    and fail as bad JSON (400) or an expired form."""
    base = gunicorn["base"]
    big = json.dumps({"username": "jane", "padding": "p" * (70 * 1024)}).encode()
    status, content_type, body = _post_chunked(base, "/api/v1/password-resets", big, "application/json")
    assert (status, content_type) == (413, "application/problem+json"), body
    assert json.loads(body)["code"] == "payload_too_large"

    form = b"username=jane&csrf_token=x&padding=" + b"p" * (70 * 1024)
    status, content_type, body = _post_chunked(base, "/reset-password", form, "application/x-www-form-urlencoded")
    assert status == 413 and content_type.startswith("text/html"), body

    small = json.dumps({"username": "jane", "padding": "p" * 1024}).encode()
    status, _content_type, body = _post_chunked(base, "/api/v1/password-resets", small, "application/json")
    assert (status, json.loads(body)["status"]) == (202, "accepted"), body


def test_a_malformed_chunked_body_is_a_problem_400(gunicorn: dict[str, Any]) -> None:
    """A chunk size that is not hexadecimal: the service's own 400, not the server's page."""
    host, port = gunicorn["base"].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(
            b"POST /api/v1/password-resets HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"zz\r\n{}\r\n0\r\n\r\n"
        )
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head = answer.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 400"), answer
    assert b"application/problem+json" in head, answer


def test_an_address_too_long_gets_the_service_s_own_414_through_gunicorn(gunicorn: dict[str, Any]) -> None:
    """Past gunicorn's default limit on the request line (4,094 bytes) and within the one its
    configuration sets: the service's problem+json, not gunicorn's page."""
    host, port = gunicorn["base"].removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", "/api/v1/password-resets/" + "a" * 5000)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    assert response.status == 414, body
    assert response.getheader("Content-Type") == "application/problem+json", body
    assert json.loads(body)["code"] == "uri_too_long"


def test_a_request_gunicorn_refuses_is_logged_without_what_it_carried(gunicorn: dict[str, Any]) -> None:
    """gunicorn answers a request line or header it cannot parse itself, and warned with the
    line or header quoted: a reset link's token, or a key, went into the error log."""
    host, port = gunicorn["base"].removeprefix("http://").split(":")
    token = "Zq9" + "x" * 30
    for raw in (
        f"GET /reset-password/{token}\xe9 HTTP/1.1\r\nHost: {host}\r\n\r\n".encode("latin-1"),
        f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Key: a\x00{token}\r\n\r\n".encode("latin-1"),
    ):
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            connection.sendall(raw)
            assert connection.recv(65536).startswith(b"HTTP/1.1 400")
    deadline = time.monotonic() + 5
    log = gunicorn["log"]
    while log.read_text().count("Invalid request from ip=") < 2:
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.1)
    assert token not in log.read_text()
    assert "Zq9" not in log.read_text()
