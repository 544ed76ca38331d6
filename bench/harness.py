"""Run resetdesk under gunicorn on a throwaway SQLite database, for benchmarks.

    from harness import running_service

    with running_service(workers=2) as service:
        service.base_url   # "http://127.0.0.1:<port>"
        service.api_key    # a fresh key with role `client`
        service.cli("users", "create", "alice", "a@example.com", "--password-stdin", stdin="...")

Everything goes through the real entry points (`flask --app wsgi ...` and `gunicorn wsgi:app`)
as subprocesses, with settings in environment variables only. On leaving the block, normally
or by an exception or Ctrl-C, gunicorn gets SIGTERM and is waited for, and the temp directory
(database, server log) is removed.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's bin/, when run as .venv/bin/python
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


class HarnessError(RuntimeError):
    """The service could not be set up, started, or it died."""


def service_env(db_path: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for the CLI and gunicorn: a private database, real hashing, no limits."""
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{db_path}",
            "APP_ENV": "development",
            "SECRET_KEY": secrets.token_urlsafe(32),
            "RATELIMIT_ENABLED": "false",
            "RATELIMIT_STORAGE_URI": "memory://",
            # High enough that the sign-in throttle never answers 429 during a run.
            "LOGIN_MAX_FAILURES": "100000000",
            # Measure the production hash cost, whatever the caller's shell or .env says.
            "PASSWORD_HASH_CHEAP": "false",
        }
    )
    env.update(extra or {})
    return env


def run_cli(env: Mapping[str, str], *args: str, stdin: str | None = None) -> str:
    """Run `flask --app wsgi ARGS...` in the project root; its stdout, or HarnessError."""
    command = [str(BIN / "flask"), "--app", "wsgi", *args]
    result = subprocess.run(
        command, cwd=ROOT, env=dict(env), input=stdin, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise HarnessError(
            f"`flask --app wsgi {' '.join(args)}` exited {result.returncode}:\n"
            f"{result.stdout}{result.stderr}"
        )
    return result.stdout


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Service:
    """A running service: where it answers, a client key, and its environment for the CLI."""

    base_url: str
    api_key: str
    env: Mapping[str, str]
    log_path: Path

    def cli(self, *args: str, stdin: str | None = None) -> str:
        return run_cli(self.env, *args, stdin=stdin)


def _wait_until_healthy(process: subprocess.Popen, base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise HarnessError(f"gunicorn exited {process.returncode} at start:\n{log_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise HarnessError(f"/healthz did not answer within {START_TIMEOUT:.0f} s:\n{log_tail(log_path)}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM (gunicorn's graceful stop), wait; SIGKILL only if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def log_tail(log_path: Path, lines: int = 40) -> str:
    """The end of the server's log, for error messages."""
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


@contextmanager
def running_service(
    workers: int = 2, extra_env: Mapping[str, str] | None = None, key_role: str = "client"
) -> Iterator[Service]:
    """Migrate a fresh SQLite database, create an API key, start gunicorn; yield a Service."""
    with tempfile.TemporaryDirectory(prefix="resetdesk-bench-") as tmp:
        tmp_path = Path(tmp)
        env = service_env(tmp_path / "bench.db", extra_env)
        run_cli(env, "db", "upgrade")
        api_key = run_cli(env, "apikeys", "create", "bench", "--role", key_role).strip().splitlines()[-1]
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        log_path = tmp_path / "gunicorn.log"
        with open(log_path, "wb") as log:
            # A session of its own: Ctrl-C reaches only this script, which then stops gunicorn.
            process = subprocess.Popen(
                [str(BIN / "gunicorn"), "-w", str(workers), "-b", f"127.0.0.1:{port}", "wsgi:app"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            _wait_until_healthy(process, base_url, log_path)
            yield Service(base_url=base_url, api_key=api_key, env=env, log_path=log_path)
            if process.poll() is not None:
                raise HarnessError(f"gunicorn died during the run:\n{log_tail(log_path)}")
        except Exception as error:
            if not isinstance(error, HarnessError):  # those carry the log already
                error.add_note(f"server log, last lines:\n{log_tail(log_path)}")
            raise
        finally:
            _stop(process)
