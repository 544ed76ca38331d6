"""Running the real service in processes for tests: free ports, the CLI, gunicorn, JSON calls."""

from __future__ import annotations

import json
import os
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

from tests.conftest import SmtpSink

PROJECT = Path(__file__).resolve().parents[1]
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
