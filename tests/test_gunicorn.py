"""End to end in a real deployment shape: gunicorn with two workers, the CLI, SMTP, over HTTP."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import OTHER_STRONG_PASSWORD, STRONG_PASSWORD, SmtpSink

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MAIL_WAIT_SECONDS = 15
START_WAIT_SECONDS = 20


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def service_env(tmp_path: Path, port: int, smtp: SmtpSink) -> dict[str, str]:
    """The environment of every process: only what a deployment sets, none of the tests' own."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TEST_", "DATABASE_", "MAIL_", "RATELIMIT_", "SECRET_", "PUBLIC_", "FLASK_"))
    }
    env.update(
        APP_ENV="development",
        SECRET_KEY="gunicorn-test-secret-key-0123456789",
        DATABASE_URL=f"sqlite:///{tmp_path / 'g.db'}",
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=str(smtp.port),
        MAIL_TIMEOUT="5",
        OUTBOX_DISPATCH="inline",
        PASSWORD_HASH_CHEAP="false",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def flask(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    """Run `flask --app wsgi ...` in the project; returns its standard output."""
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", *args],
        cwd=PROJECT, env=env, input=stdin, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, f"flask {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def call(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One HTTP request with urllib; returns the status and the parsed JSON body (or None)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    return status, json.loads(raw) if raw else None


@contextmanager
def served_by_gunicorn(env: dict[str, str], port: int, log_path: Path) -> Iterator[str]:
    """gunicorn with 2 workers on `port`, once it answers /healthz; yields its base URL and is
    stopped (SIGTERM, then SIGKILL) on the way out."""
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5", "wsgi:app"],
            cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + START_WAIT_SECONDS
            while True:
                assert process.poll() is None, log_path.read_text()
                try:
                    if call("GET", f"{base}/healthz")[0] == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "gunicorn did not answer in time"
                time.sleep(0.1)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


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
