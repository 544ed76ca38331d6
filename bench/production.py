"""How much does resetdesk serve under its production profile, per gunicorn worker count?

The production profile is PostgreSQL for the database, Redis for rate limits and the sign-in
throttle, gunicorn sync workers for the web tier and separate `flask --app wsgi outbox run`
workers for mail (OUTBOX_DISPATCH=external). This script sets exactly that up on this machine
and measures:

1. the web tier with gunicorn -w 1, 2 and 4 (`--workers`): requests/s, p50 and p99 latency and
   the workers' CPU per request, for
   - POST /api/v1/password-resets (records the request; nothing else on the request's path),
   - POST /api/v1/auth/verify with the correct password of an existing account: one argon2id
     verification (19 MiB, 2 passes, about 20-30 ms of one core), so at best about
     cores / (CPU per request) per second, whatever the worker count;
   each with `--concurrency` closed-loop clients (bench/loadgen.py) for `--duration` seconds.
   No outbox worker runs meanwhile (the reset requests wait in the table), so the figures are
   the web tier's alone.
2. outbox delivery: `--messages` emails are queued through the service's own `queue_email` in an
   app context (rendered once from the reset-link template), then 1 and 4 (`--outbox-workers`)
   `flask --app wsgi outbox run` processes deliver them into a local SMTP sink
   (bench/smtp_sink.py, aiosmtpd, answers at once). Reported: messages/s from the first to the
   last message the sink received, the wall time from starting the workers (including their
   start-up) until the last one, and a check that every message arrived exactly once.

Settings: APP_ENV=production (JSON logs; PUBLIC_BASE_URL=http://127.0.0.1 so loopback Host
headers are accepted), DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/bench_resetdesk
(created here with psql and dropped at the end, also on Ctrl-C), RATELIMIT_STORAGE_URI=
redis://127.0.0.1:6379/12 (FLUSHDB at the start and the end), RATELIMIT_ENABLED=false so limits do
not refuse the load, the throttle still counting in Redis, LOGIN_MAX_FAILURES=100000000.

The exit code is 0 after a complete run, 2 when something fails or answers wrongly (any answer
but 202/200, a lost or duplicated message), 130/143 when interrupted.

    .venv/bin/python bench/production.py [--workers 1,2,4] [--duration S] [--messages N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from harness import (
    BIN,
    ROOT,
    HarnessError,
    install_sigterm_exit,
    postgres_database,
    psql,
    run_cli,
    running_outbox_workers,
    running_service,
    running_smtp_sink,
    service_env,
)
from loadgen import LoadError, LoadResult, cpu_seconds, failure_exit, loadavg, run_load, tree_cpu_seconds

DATABASE = "bench_resetdesk"
REDIS_DB = 12
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
USERNAME = "benchuser"
PASSWORD = "correct horse battery staple"
DELIVERY_TIMEOUT = 150.0

# Run inside the project with the service's settings: queue N emails the way the service does.
QUEUE_SCRIPT = r"""
import sys, types
from service import create_app
from service.platform.clock import utcnow
from service.outbox.mail import RenderedEmail, render_email
from service.platform.extensions import db
from service.outbox.queue import queue_email

count = int(sys.argv[1])
app = create_app()
with app.test_request_context():
    now = utcnow()
    account = types.SimpleNamespace(username="bench", email="bench@example.com", language=None, id=None)
    try:
        email = render_email("reset_link", "Reset your password", now=now, account=account,
                             link="http://127.0.0.1/reset-password/" + "x" * 60, expires_at=now,
                             lifetime_minutes=60)
        how = "rendered from mail/reset_link"
    except Exception as error:  # the templates changed under us: a body of the same size
        email = RenderedEmail("Reset your password", "x" * 1500, "<p>" + "x" * 4000 + "</p>")
        how = f"synthetic ({type(error).__name__}: {error})"
    for number in range(count):
        queue_email(db.session, f"bench{number:06d}@example.com", email, account_id=None, now=now)
    db.session.commit()
    print(f"queued {count} messages, {len(email.text_body)} + {len(email.html_body)} characters each, {how}")
"""


def redis_cli(*args: str) -> str:
    result = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "-n", str(REDIS_DB), *args],
                            capture_output=True, text=True, timeout=30)
    if result.returncode != 0 or result.stdout.startswith(("ERR", "Could not connect")):
        raise HarnessError(f"redis-cli {' '.join(args)} failed: {result.stdout}{result.stderr}")
    return result.stdout.strip()


def backend_pids() -> list[int]:
    """The PostgreSQL server processes serving our database (the pools' connections)."""
    output = psql(f"SELECT pid FROM pg_stat_activity WHERE datname = '{DATABASE}' AND pid <> pg_backend_pid()")
    return [int(line) for line in output.split()]


def load_phase(service, workers: int, args, label: str, path: str, make_body, headers, expect: int) -> tuple[LoadResult, float, float]:
    """Warm up, then measure; returns (result, gunicorn CPU ms/request, PostgreSQL CPU ms/request)."""
    run_load(service.base_url, path, make_body, label=label, headers=headers, concurrency=args.concurrency,
             duration=args.warmup, expect_status=expect)
    backends = backend_pids()  # the pools have opened their connections during the warm-up
    before, before_pg = tree_cpu_seconds(service.process.pid), cpu_seconds(backends)
    result = run_load(service.base_url, path, make_body, label=label, headers=headers,
                      concurrency=args.concurrency, duration=args.duration, expect_status=expect)
    cpu_ms = 1000 * (tree_cpu_seconds(service.process.pid) - before) / max(1, result.count)
    pg_ms = 1000 * (cpu_seconds(backends) - before_pg) / max(1, result.count)
    print(f"  -w {workers} {label:7} {result.line()}  CPU/req: gunicorn {cpu_ms:.2f} ms, postgres {pg_ms:.2f} ms; "
          f"load {loadavg()}", file=sys.stderr, flush=True)
    return result, cpu_ms, pg_ms


def deliver(env: dict[str, str], workers: int, messages: int, tmp: Path) -> dict[str, float]:
    """Queue `messages` emails, start `workers` outbox workers, time their delivery into a sink."""
    psql("DELETE FROM outbox; DELETE FROM reset_requests", DATABASE)
    with running_smtp_sink(0.0) as sink:
        worker_env = {**env, **sink.env()}
        queued = subprocess.run([str(BIN / "python"), "-c", QUEUE_SCRIPT, str(messages)], cwd=ROOT,
                                env=worker_env, capture_output=True, text=True, timeout=120)
        if queued.returncode != 0:
            raise HarnessError(f"queueing failed:\n{queued.stdout}{queued.stderr}")
        note = queued.stdout.strip().splitlines()[-1]
        log_dir = tmp / f"outbox-{workers}"
        log_dir.mkdir()
        start = time.time()
        with running_outbox_workers(worker_env, workers, log_dir, wait_ready=False) as processes:
            # CPU per message in the steady state, between 10% and 90% of the messages: the
            # workers' start-up (imports) stays out of it.
            marks: dict[str, tuple[int, float, float, float]] = {}
            pids = [process.pid for process in processes]
            backends: list[int] = []
            deadline = time.monotonic() + DELIVERY_TIMEOUT
            while (received_count := sink.count()) < messages:
                for name, share in (("low", 0.1), ("high", 0.9)):
                    if name not in marks and received_count >= share * messages:
                        if not backends:
                            backends = backend_pids()
                        marks[name] = (received_count, time.perf_counter(), cpu_seconds(pids), cpu_seconds(backends))
                if time.monotonic() > deadline:
                    raise HarnessError(f"only {received_count}/{messages} messages arrived in {DELIVERY_TIMEOUT:.0f} s")
                time.sleep(0.02)
            end_wall = time.time()
            time.sleep(0.5)  # anything sent twice would arrive now
        received = sink.messages()
    counts = dict(line.split("|") for line in psql("SELECT status, count(*) FROM outbox GROUP BY status", DATABASE).split())
    recipients = [recipient for _, recipient in received]
    stamps = sorted(stamp for stamp, _ in received)
    duplicates = len(recipients) - len(set(recipients))
    if duplicates or len(set(recipients)) != messages or counts.get("sent") != str(messages):
        raise HarnessError(f"delivery with {workers} workers: {len(recipients)} received, {duplicates} duplicates, "
                           f"outbox {counts}")
    span = stamps[-1] - stamps[0]
    low, high = marks["low"], marks["high"]
    steady = high[0] - low[0]
    return {
        "workers": workers, "messages": messages, "span": span, "rate": (messages - 1) / span,
        "wall": end_wall - start, "first_after": stamps[0] - start, "note": note,
        "steady_rate": steady / (high[1] - low[1]),
        "worker_cpu_ms": 1000 * (high[2] - low[2]) / steady,
        "pg_cpu_ms": 1000 * (high[3] - low[3]) / steady,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4", help="gunicorn worker counts (default 1,2,4)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of load per endpoint and worker count (default 8)")
    parser.add_argument("--warmup", type=float, default=1.0, help="untimed seconds before each (default 1)")
    parser.add_argument("--messages", type=int, default=2000, help="emails to deliver per outbox run (default 2000)")
    parser.add_argument("--outbox-workers", default="1,4", help="outbox worker counts (default 1,4)")
    args = parser.parse_args()
    web_workers = [int(part) for part in args.workers.split(",")]
    outbox_workers = [int(part) for part in args.outbox_workers.split(",")]

    install_sigterm_exit()
    print(f"machine: nproc {os.cpu_count()}, Python {platform.python_version()}, load average {loadavg()} at start")
    rows, deliveries = [], []
    try:
        with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="resetdesk-prod-") as tmp:
            redis_cli("PING")
            redis_cli("FLUSHDB")
            stack.callback(redis_cli, "FLUSHDB")
            database_url = stack.enter_context(postgres_database(DATABASE))
            settings = {
                "APP_ENV": "production",
                "PUBLIC_BASE_URL": "http://127.0.0.1",
                "DATABASE_URL": database_url,
                "RATELIMIT_STORAGE_URI": REDIS_URL,
                "RATELIMIT_ENABLED": "false",
                "LOGIN_MAX_FAILURES": "100000000",
                "OUTBOX_DISPATCH": "external",
            }
            env = service_env(Path(tmp) / "unused.db", settings)
            env["PROMETHEUS_MULTIPROC_DIR"] = str(Path(tmp) / "metrics")
            Path(env["PROMETHEUS_MULTIPROC_DIR"]).mkdir()
            run_cli(env, "db", "upgrade")
            run_cli(env, "users", "create", USERNAME, "bench@example.com", "--password-stdin", stdin=PASSWORD + "\n")
            versions = psql("SHOW server_version", DATABASE).strip(), redis_cli("INFO", "server").split("redis_version:")[1].split()[0]
            print(f"PostgreSQL {versions[0]}, Redis {versions[1]}")

            def reset_body() -> bytes:
                return json.dumps({"username": "u" + secrets.token_hex(4)}).encode()

            verify_body = json.dumps({"username": USERNAME, "password": PASSWORD}).encode()
            for workers in web_workers:
                # Same settings and SECRET_KEY for every run; a new API key name in the same database.
                with running_service(workers, {**settings, "SECRET_KEY": env["SECRET_KEY"]},
                                     key_name=f"bench-w{workers}-{secrets.token_hex(2)}") as service:
                    auth = {"Authorization": f"Bearer {service.api_key}"}
                    reset = load_phase(service, workers, args, "reset", "/api/v1/password-resets",
                                       reset_body, {}, 202)
                    verify = load_phase(service, workers, args, "verify", "/api/v1/auth/verify",
                                        lambda: verify_body, auth, 200)
                    restarts = service.log_count("Autorestarting worker")
                rows.append((workers, reset, verify, loadavg().split()[0], restarts))

            for count in outbox_workers:
                deliveries.append(deliver(env, count, args.messages, Path(tmp)))
                print(f"  outbox x{count}: {deliveries[-1]['rate']:.1f} msg/s, load {loadavg()}", file=sys.stderr, flush=True)
    except (HarnessError, LoadError, OSError, subprocess.SubprocessError, KeyboardInterrupt) as error:
        return failure_exit(error, "servers stopped, database dropped")

    print(f"\nweb tier: gunicorn sync workers, {args.concurrency} closed-loop clients, {args.duration:g} s per cell, "
          "OUTBOX_DISPATCH=external (no outbox worker running)")
    print("CPU/req: the gunicorn workers' and (pg) their PostgreSQL backends' CPU time per answered request")
    print(f"{'':7} | {'POST /api/v1/password-resets':^45} | {'POST /api/v1/auth/verify (correct password)':^45} |")
    header = f"{'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'CPU/req':>9} {'pg':>9}"
    print(f"{'workers':7} | {header}    | {header}    | load 1m")
    for workers, (reset, reset_cpu, reset_pg), (verify, verify_cpu, verify_pg), load, restarts in rows:
        cells = []
        for result, cpu_ms, pg_ms in ((reset, reset_cpu, reset_pg), (verify, verify_cpu, verify_pg)):
            cells.append(f"{result.rps:7.1f} {result.p50_ms:7.2f} {result.p99_ms:7.2f} {cpu_ms:6.2f} ms {pg_ms:6.2f} ms")
        print(f"{workers:7d} | {cells[0]}    | {cells[1]}    | {load}"
              + (f"  ({restarts} worker restarts)" if restarts else ""))
    best_cpu = min(verify[1] + verify[2] for _, _, verify, _, _ in rows)
    print(f"verify ceiling on this machine: {os.cpu_count()} cores / {best_cpu:.1f} ms CPU per request = "
          f"{1000 * os.cpu_count() / best_cpu:.0f} req/s at best (if nothing else, not even the load generator, used the cores)")
    print(f"keep-alive: {rows[0][1][0].connection_note()}")

    print(f"\noutbox delivery: {args.messages} queued emails into a local SMTP sink (answers at once), "
          "`flask --app wsgi outbox run` workers")
    print(f"{'outbox workers':>14} | {'msg/s':>7} | {'first..last':>11} | {'10%..90% msg/s':>14} | "
          f"{'CPU/msg':>9} {'pg':>9} | {'wall incl. start':>16} | exactly once")
    for d in deliveries:
        print(f"{d['workers']:14d} | {d['rate']:7.1f} | {d['span']:9.1f} s | {d['steady_rate']:14.1f} | "
              f"{d['worker_cpu_ms']:6.2f} ms {d['pg_cpu_ms']:6.2f} ms | {d['wall']:14.1f} s | yes")
    print(f"({deliveries[0]['note']})")
    print(f"\nload average at the end: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
