"""Run resetdesk (and what a benchmark needs around it) as real processes, for benchmarks.

    from harness import running_service

    with running_service(workers=2) as service:
        service.base_url   # "http://127.0.0.1:<port>"
        service.api_key    # a fresh key with role `client`
        service.cli("users", "create", "alice", "a@example.com", "--password-stdin", stdin="...")

Everything goes through the real entry points (`flask --app wsgi ...` and `gunicorn wsgi:app`)
as subprocesses, with settings in environment variables only. On leaving the block, normally
or by an exception or Ctrl-C, gunicorn gets SIGTERM and is waited for, and the temp directory
(database, server log, Prometheus multiprocess files) is removed.

More pieces, each a context manager that cleans up after itself the same way:

- `running_service(..., extra_env={...})`: any setting on top of the defaults, e.g.
  `DATABASE_URL` (PostgreSQL), `RATELIMIT_STORAGE_URI` (Redis), `MAIL_SERVER`/`MAIL_PORT`,
  `OUTBOX_DISPATCH`; `outbox_workers=N` also starts N `flask --app wsgi outbox run` processes
  once gunicorn answers. `key_name` names the API key (it must be new in a reused database).
- `running_outbox_workers(env, count, log_dir)`: N `flask --app wsgi outbox run` processes on
  their own, e.g. against a queue filled beforehand; yields when each has said it is running.
- `running_bare_app(workers, accounts=...)`: `bench/bare_app.py` (a plain Flask app with one
  JSON POST endpoint doing one indexed SELECT and one INSERT on SQLite, with the service's
  pragmas) under gunicorn, from the project root so the same `gunicorn.conf.py` applies, on a
  SQLite file of its own holding `accounts`; a baseline that lives only in bench/, nothing is
  added to the service.
- `running_smtp_sink(delay, lean=False, processes=1)`: `bench/smtp_sink.py` (aiosmtpd, or its
  own lean server, in one or more processes on one port) in a subprocess; every message waits
  `delay` seconds before its 250, and is logged with its arrival time and recipient.
- `postgres_database(name)`: creates a PostgreSQL database with `psql` and drops it on exit.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bare_app import SCHEMA as BARE_SCHEMA

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent  # the venv's bin/, when run as .venv/bin/python
START_TIMEOUT = 30.0
STOP_TIMEOUT = 40.0  # gunicorn.conf.py gives workers a 30 s graceful timeout


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


# The production profile's middleware and settings, for comparisons on this machine's SQLite:
# JSON logs, HSTS, trusted hosts, metrics in multiprocess mode, request ids, access log (all
# on in any profile; production only changes the log format and adds HSTS). Limits stay off
# (RATELIMIT_ENABLED=false: they would refuse a load test), so the limiter touches no storage;
# the sign-in throttle still counts in `redis_url`. MAIL_SERVER must be set in production.
def production_settings(redis_url: str, mail: Mapping[str, str] | None = None) -> dict[str, str]:
    """Settings for `running_service(extra_env=...)` that run it as production does, on SQLite."""
    return {
        "APP_ENV": "production",
        "PUBLIC_BASE_URL": "http://127.0.0.1",
        "RATELIMIT_ENABLED": "false",
        "RATELIMIT_STORAGE_URI": redis_url,
        "LOGIN_MAX_FAILURES": "100000000",
        **(mail or {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": "9", "MAIL_USE_TLS": "false"}),
    }


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
    process: subprocess.Popen | None = None  # the gunicorn arbiter
    outbox_workers: list[subprocess.Popen] = field(default_factory=list)

    def cli(self, *args: str, stdin: str | None = None) -> str:
        return run_cli(self.env, *args, stdin=stdin)

    def worker_pids(self) -> list[int]:
        """The gunicorn worker processes' ids (children of the arbiter)."""
        return child_pids(self.process.pid) if self.process else []

    def log_count(self, needle: str) -> int:
        """How many lines of the server log contain `needle` (e.g. "Booting worker")."""
        return log_count(self.log_path, needle)


@dataclass(frozen=True)
class Server:
    """Some other app under gunicorn: where it answers, and its log."""

    base_url: str
    log_path: Path
    process: subprocess.Popen

    def log_count(self, needle: str) -> int:
        return log_count(self.log_path, needle)


def child_pids(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(part) for part in text.split()]


def log_count(log_path: Path, needle: str) -> int:
    try:
        return sum(needle in line for line in log_path.read_text(errors="replace").splitlines())
    except OSError:
        return 0


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
    """SIGTERM (gunicorn's and the outbox worker's graceful stop), wait; SIGKILL only if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        # Its own session (start_new_session), so the group is this process and its children.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except OSError:
            process.kill()
        process.wait()


def log_tail(log_path: Path, lines: int = 40) -> str:
    """The end of the server's log, for error messages."""
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def _metrics_dir(tmp_path: Path, env: dict[str, str]) -> None:
    """Keep Prometheus' multiprocess files in our temp dir.

    Otherwise gunicorn.conf.py makes a fresh /tmp/resetdesk-metrics-* for every start and
    nothing removes it.
    """
    if "PROMETHEUS_MULTIPROC_DIR" not in env or not env["PROMETHEUS_MULTIPROC_DIR"]:
        metrics = tmp_path / "metrics"
        metrics.mkdir(exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)


@contextmanager
def running_gunicorn(
    app_spec: str,
    workers: int,
    env: Mapping[str, str],
    log_path: Path,
    pythonpath: Path | None = None,
    *,
    executable: Path | None = None,
    cwd: Path = ROOT,
    extra_args: Sequence[str] = (),
) -> Iterator[tuple[subprocess.Popen, str]]:
    """`gunicorn -w N -b 127.0.0.1:<free port> APP` from the project root (so gunicorn.conf.py
    applies; `cwd` elsewhere leaves it out); yields (arbiter process, base URL) once GET /healthz
    answers; SIGTERM on exit. `executable` is another venv's gunicorn (the Django peer's)."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = [str(executable or BIN / "gunicorn"), "-w", str(workers), "-b", f"127.0.0.1:{port}", *extra_args]
    if pythonpath is not None:
        command += ["--pythonpath", str(pythonpath)]
    with open(log_path, "ab") as log:
        # A session of its own: Ctrl-C reaches only this script, which then stops gunicorn.
        process = subprocess.Popen(
            [*command, app_spec],
            cwd=cwd,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_until_healthy(process, base_url, log_path)
        yield process, base_url
        if process.poll() is not None:
            raise HarnessError(f"gunicorn died during the run:\n{log_tail(log_path)}")
    except Exception as error:
        if not isinstance(error, HarnessError):  # those carry the log already
            error.add_note(f"server log ({app_spec}), last lines:\n{log_tail(log_path)}")
        raise
    finally:
        _stop(process)


@contextmanager
def running_outbox_workers(
    env: Mapping[str, str], count: int, log_dir: Path, wait_ready: bool = True
) -> Iterator[list[subprocess.Popen]]:
    """Start `count` `flask --app wsgi outbox run` processes; SIGTERM (finish the message in
    flight) and wait on exit. With wait_ready, yields once each has printed that it runs."""
    processes: list[subprocess.Popen] = []
    logs: list[Path] = []
    try:
        for number in range(count):
            log_path = log_dir / f"outbox-{number}.log"
            logs.append(log_path)
            with open(log_path, "ab") as log:
                processes.append(
                    subprocess.Popen(
                        [str(BIN / "flask"), "--app", "wsgi", "outbox", "run"],
                        cwd=ROOT,
                        env=dict(env),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        if wait_ready:
            deadline = time.monotonic() + START_TIMEOUT
            for process, log_path in zip(processes, logs, strict=False):
                while log_count(log_path, "Outbox worker running") == 0:
                    if process.poll() is not None:
                        raise HarnessError(f"outbox worker exited {process.returncode}:\n{log_tail(log_path)}")
                    if time.monotonic() > deadline:
                        raise HarnessError(f"outbox worker did not start:\n{log_tail(log_path)}")
                    time.sleep(0.05)
        yield processes
        for process, log_path in zip(processes, logs, strict=False):
            if process.poll() is not None:
                raise HarnessError(f"outbox worker died during the run:\n{log_tail(log_path)}")
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            _stop(process)


@contextmanager
def running_service(
    workers: int = 2,
    extra_env: Mapping[str, str] | None = None,
    key_role: str = "client",
    *,
    outbox_workers: int = 0,
    key_name: str = "bench",
) -> Iterator[Service]:
    """Migrate a fresh SQLite database (or the one `extra_env["DATABASE_URL"]` names), create an
    API key, start gunicorn (and `outbox_workers` outbox workers); yield a Service."""
    with tempfile.TemporaryDirectory(prefix="resetdesk-bench-") as tmp, ExitStack() as stack:
        tmp_path = Path(tmp)
        env = service_env(tmp_path / "bench.db", extra_env)
        _metrics_dir(tmp_path, env)
        run_cli(env, "db", "upgrade")
        api_key = run_cli(env, "apikeys", "create", key_name, "--role", key_role).strip().splitlines()[-1]
        log_path = tmp_path / "gunicorn.log"
        process, base_url = stack.enter_context(running_gunicorn("wsgi:app", workers, env, log_path))
        workers_list: list[subprocess.Popen] = []
        if outbox_workers:
            workers_list = stack.enter_context(running_outbox_workers(env, outbox_workers, tmp_path))
        yield Service(
            base_url=base_url, api_key=api_key, env=env, log_path=log_path,
            process=process, outbox_workers=workers_list,
        )


def seed_bare_accounts(database_path: Path, usernames: Iterable[str]) -> None:
    """Give bench/bare_app.py's database its accounts (the schema bare_app.py makes), so its
    SELECT finds the same names the service's does."""
    conn = sqlite3.connect(database_path, timeout=10)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        for statement in BARE_SCHEMA:
            conn.execute(statement)
        conn.executemany(
            "INSERT OR IGNORE INTO accounts (username, email) VALUES (?, ?)",
            [(name, f"{name}@example.com") for name in usernames],
        )
        conn.commit()
    finally:
        conn.close()


@contextmanager
def running_bare_app(
    workers: int = 2, extra_env: Mapping[str, str] | None = None, accounts: Iterable[str] = ()
) -> Iterator[Server]:
    """bench/bare_app.py (`bare_app:app`) under gunicorn with the service's gunicorn.conf.py, on
    its own SQLite file (WAL, the service's pragmas) holding `accounts`."""
    with tempfile.TemporaryDirectory(prefix="resetdesk-bare-") as tmp:
        tmp_path = Path(tmp)
        env = dict(os.environ)
        env["BARE_DATABASE_PATH"] = str(tmp_path / "bare.db")
        env.update(extra_env or {})
        seed_bare_accounts(Path(env["BARE_DATABASE_PATH"]), accounts)
        _metrics_dir(tmp_path, env)
        log_path = tmp_path / "gunicorn.log"
        with running_gunicorn("bare_app:app", workers, env, log_path, pythonpath=BENCH) as (process, base_url):
            yield Server(base_url=base_url, log_path=log_path, process=process)


@dataclass(frozen=True)
class SmtpSink:
    """A running bench/smtp_sink.py: where it listens, and its logs of received messages."""

    host: str
    port: int
    log_path: Path
    delay: float
    # One log per sink process (`processes` > 1): log_path first, then log_path.1, ...
    log_paths: tuple[Path, ...] = ()

    def env(self) -> dict[str, str]:
        """The service settings that send mail here."""
        return {"MAIL_SERVER": self.host, "MAIL_PORT": str(self.port), "MAIL_USE_TLS": "false"}

    def _logs(self) -> tuple[Path, ...]:
        return self.log_paths or (self.log_path,)

    def messages(self) -> list[tuple[float, str]]:
        """(arrival time.time(), recipient) for every message received so far."""
        received = []
        for log_path in self._logs():
            try:
                lines = log_path.read_text().splitlines()
            except OSError:
                continue
            for line in lines:
                stamp, _, recipient = line.partition(" ")
                if recipient:
                    received.append((float(stamp), recipient))
        return received

    def count(self) -> int:
        total = 0
        for log_path in self._logs():
            try:
                with open(log_path, "rb") as log:
                    total += log.read().count(b"\n")
            except OSError:
                pass
        return total


@contextmanager
def running_smtp_sink(
    delay: float = 0.0, *, lean: bool = False, processes: int = 1, pipelining: bool = True
) -> Iterator[SmtpSink]:
    """bench/smtp_sink.py on a free loopback port; yields once it accepts connections.

    `lean` runs the sink's own small asyncio server instead of aiosmtpd's, `processes` of
    them on the one port; `pipelining=False` leaves PIPELINING out of its EHLO answer."""
    if processes > 1 and not lean:
        raise ValueError("several sink processes need the lean server")
    with tempfile.TemporaryDirectory(prefix="resetdesk-smtp-") as tmp:
        log_path = Path(tmp) / "received.log"
        log_paths = (log_path, *(Path(f"{log_path}.{number}") for number in range(1, processes)))
        port = free_port()
        stderr_path = Path(tmp) / "sink.err"
        command = [sys.executable, str(BENCH / "smtp_sink.py"), "--port", str(port),
                   "--delay", str(delay), "--log", str(log_path)]
        if lean:
            command += ["--lean", "--processes", str(processes)]
        if not pipelining:
            command.append("--no-pipelining")
        with open(stderr_path, "wb") as errors:
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                if process.poll() is not None:
                    raise HarnessError(f"SMTP sink exited {process.returncode}:\n{log_tail(stderr_path)}")
                # Each sink process creates its log once it listens.
                if all(path.exists() for path in log_paths):
                    try:
                        with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                            if probe.recv(100).startswith(b"220"):
                                break
                    except OSError:
                        pass
                if time.monotonic() > deadline:
                    raise HarnessError("SMTP sink did not start")
                time.sleep(0.05)
            yield SmtpSink(host="127.0.0.1", port=port, log_path=log_path, delay=delay, log_paths=log_paths)
        finally:
            _stop(process)


def psql(sql: str, database: str = "postgres") -> str:
    """Run SQL through `psql` as postgres on 127.0.0.1; its output (tuples only), or HarnessError."""
    command = ["psql", "-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-d", database,
               "-v", "ON_ERROR_STOP=1", "-q", "-X", "-At", "-c", sql]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise HarnessError(f"psql failed ({sql[:80]}): {result.stderr.strip()}")
    return result.stdout


@contextmanager
def postgres_database(name: str) -> Iterator[str]:
    """CREATE DATABASE `name` (dropping a leftover of an earlier run first); DROP it on exit.

    Yields its SQLAlchemy URL (psycopg 3)."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"unsafe database name {name!r}")
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def install_sigterm_exit() -> None:
    """A plain `kill` cleans up like Ctrl-C does: SystemExit unwinds through the context managers."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


# The sign-in throttle's Redis (and the limiter's, untouched with limits off) in every comparison.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"


def comparison_options(
    description: str, *, concurrency: int = 8, workers_help: str = "gunicorn workers per server", mix: bool = True
) -> argparse.ArgumentParser:
    """The options every side-by-side comparison takes: servers, load, slices, the account mix
    (`mix`), the service's Redis and `--json`; a script adds its own before parsing."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--workers", type=int, default=2, help=f"{workers_help} (default 2)")
    parser.add_argument("--concurrency", type=int, default=concurrency, help=f"concurrent clients (default {concurrency})")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per server (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="slices per server, alternating (default 2)")
    parser.add_argument("--warmup", type=float, default=1.0, help="untimed seconds per server first (default 1)")
    if mix:
        parser.add_argument("--accounts", type=int, default=100, help="accounts with an email on both (default 100)")
        parser.add_argument("--existing-share", type=float, default=0.5, help="share of requests naming an account (default 0.5)")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL,
                        help=f"the service's Redis: the sign-in throttle and RATELIMIT_STORAGE_URI (default {DEFAULT_REDIS_URL})")
    parser.add_argument("--json", action="store_true", help="print one JSON line of figures instead of the report")
    return parser


def start_comparison(args: argparse.Namespace) -> None:
    """Clean up on SIGTERM too, and (unless --json) say what machine the figures come from."""
    from loadgen import loadavg

    install_sigterm_exit()
    if not args.json:
        print(f"machine: nproc {os.cpu_count()}, Python {platform.python_version()}, load average {loadavg()} at start")
