"""What the dispatcher's work costs, step by step, in one process: CPU per resolved reset
request and per delivered message, and (with --profile) where that CPU goes.

The script builds the app in this process against a throwaway database (a temporary SQLite
file, or with `--database postgresql` a PostgreSQL database created and dropped here), creates
`--accounts` accounts with an email, records `--requests` self-service reset requests (half for
those accounts, half for missing names, interleaved), and then:

1. resolves them the way `outbox run` does (`resolve_requests` until none is left): CPU per
   request of this process, and of its PostgreSQL backend;
2. delivers the mail that came of it plus `--messages` more queued emails into a local SMTP sink
   (bench/smtp_sink.py, answers at once) the way `outbox run` does (`deliver_due` until nothing
   is due): CPU per message of this process and of its backend, and messages/s.

CPU time, not wall time: it moves little with what else runs on the machine, which is what a
before/after comparison of one change needs. `--profile resolve|deliver` runs that phase under
cProfile and prints the functions that took the most time (cumulative and own).

    .venv/bin/python bench/dispatcher_cost.py [--database sqlite|postgresql] [--requests 400]
            [--messages 1000] [--profile resolve|deliver] [--top 25] [--pg-name bench_dispatcher_cost]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from harness import ROOT, HarnessError, install_sigterm_exit, postgres_database, run_cli, running_smtp_sink
from loadgen import cpu_seconds, loadavg

sys.path.insert(0, str(ROOT))

DATABASE = "bench_dispatcher_cost"


def measure(label: str, work: Callable[[], int], backend_pid: int | None, profile: bool, top: int) -> dict[str, float]:
    """Run `work` (returns how many items it handled); CPU of this process and of the backend."""
    # Timed by CPU, not the wall clock: waiting for the database or the sink is not our cost.
    profiler = cProfile.Profile(time.process_time) if profile else None
    pg_before = cpu_seconds([backend_pid]) if backend_pid else 0.0
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    items = work()
    if profiler:
        profiler.disable()
    cpu, wall = time.process_time() - cpu_before, time.perf_counter() - wall_before
    pg = (cpu_seconds([backend_pid]) - pg_before) if backend_pid else 0.0
    result = {"items": items, "cpu_ms": 1000 * cpu / max(1, items), "pg_ms": 1000 * pg / max(1, items),
              "wall_s": wall, "rate": items / wall if wall else 0.0}
    print(f"{label:28} {items:6d} items  {result['cpu_ms']:6.3f} ms CPU/item  pg {result['pg_ms']:6.3f} ms/item  "
          f"{result['rate']:8.1f} items/s wall  (load {loadavg()})", flush=True)
    if profiler:
        for order in ("cumulative", "tottime"):
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).strip_dirs().sort_stats(order).print_stats(top)
            print(f"\n--- {label}: top {top} by {order} ---")
            print("\n".join(line for line in text.getvalue().splitlines() if line.strip())[:20000])
    return result


def run(args: argparse.Namespace, database_url: str, sink_env: dict[str, str], tmp: Path) -> None:
    from sqlalchemy import select, text
    from sqlalchemy.orm import Session

    from service import create_app
    from service.accounts.records import create_account
    from service.models import OutboxMessage, OutboxStatus, ResetRequest
    from service.outbox.mail import Courier, RenderedEmail
    from service.outbox.queue import queue_email
    from service.platform.clock import utcnow
    from service.platform.extensions import db
    from service.resets.policy import reset_policy
    from service.resets.requests import request_reset
    from service.worker.dispatcher import deliver_due, resolve_requests

    settings: dict[str, Any] = {
        "APP_ENV": "development",
        "SECRET_KEY": secrets.token_urlsafe(32),
        "DATABASE_URL": database_url,
        "PUBLIC_BASE_URL": "http://127.0.0.1",
        "RATELIMIT_ENABLED": False,
        "RATELIMIT_STORAGE_URI": "memory://",
        "OUTBOX_DISPATCH": "external",
        "RESET_MAILS_PER_HOUR": 1000000,
        "MAIL_SERVER": sink_env["MAIL_SERVER"],
        "MAIL_PORT": int(sink_env["MAIL_PORT"]),
        "MAIL_USE_TLS": False,
    }
    env = {**os.environ, **{name: str(value) for name, value in settings.items()}}
    run_cli(env, "db", "upgrade")
    app = create_app(settings)
    with app.app_context():
        session = db.session
        backend_pid = None
        if session.get_bind().dialect.name == "postgresql":
            backend_pid = -1  # the worker's own connection's, below
        policy = reset_policy()
        now = utcnow()
        names = [f"bench{number:05d}" for number in range(args.requests // 2)]
        for name in names:
            create_account(session, username=name, email=f"{name}@example.com", password=None, actor="cli", now=now)
        session.commit()
        for name in names:
            request_reset(session, name, policy=policy, ip="127.0.0.1", now=now)
            request_reset(session, f"missing{secrets.token_hex(4)}", policy=policy, ip="127.0.0.1", now=now)
        # About the size of a reset mail, in lines SMTP accepts.
        email = RenderedEmail("Reset your password", ("x" * 75 + "\n") * 20, ("<p>" + "x" * 75 + "</p>\n") * 50)
        for number in range(args.messages):
            queue_email(session, f"extra{number:06d}@example.com", email, account_id=None, now=now)
        session.commit()

        # As a worker's pass does: one connection held for the whole run, one SMTP connection.
        connection = db.engine.connect()
        work_session = Session(bind=connection)
        courier = Courier()

        def resolve_all() -> int:
            total = 0
            while (handled := resolve_requests(work_session, policy=policy)) > 0:
                total += handled
            return total

        def deliver_all() -> int:
            total = 0
            while (report := deliver_due(work_session, courier=courier)).handled > 0:
                total += report.sent
            return total

        if backend_pid:
            backend_pid = work_session.scalar(text("SELECT pg_backend_pid()"))
            work_session.rollback()
        resolved = measure("resolve (half missing)", resolve_all, backend_pid, args.profile == "resolve", args.top)
        pending = session.scalar(select(ResetRequest.id).where(ResetRequest.status == "pending").limit(1))
        delivered = measure("deliver", deliver_all, backend_pid, args.profile == "deliver", args.top)
        left = session.scalar(select(OutboxMessage.id).where(OutboxMessage.status != OutboxStatus.SENT).limit(1))
        if pending is not None or left is not None:
            raise HarnessError(f"work left: request {pending}, message {left}")
        if resolved["items"] != args.requests:
            raise HarnessError(f"{resolved['items']} requests resolved of {args.requests}")
        if delivered["items"] != args.messages + args.requests // 2:
            raise HarnessError(f"{delivered['items']} messages sent of {args.messages + args.requests // 2}")
        courier.close()
        work_session.close()
        connection.close()
        db.session.remove()
        db.engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--requests", type=int, default=400, help="reset requests, half for missing names (default 400)")
    parser.add_argument("--messages", type=int, default=1000, help="extra queued emails (default 1000)")
    parser.add_argument("--profile", choices=("resolve", "deliver"), help="run this phase under cProfile")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--pg-name", default=DATABASE,
                        help=f"name of the throwaway PostgreSQL database, created and dropped here (default {DATABASE})")
    args = parser.parse_args()
    install_sigterm_exit()
    print(f"{args.database}, load average {loadavg()} at start", flush=True)
    try:
        with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="resetdesk-cost-") as tmp:
            if args.database == "postgresql":
                database_url = stack.enter_context(postgres_database(args.pg_name))
            else:
                database_url = f"sqlite:///{Path(tmp) / 'cost.db'}"
            sink = stack.enter_context(running_smtp_sink(0.0))
            run(args, database_url, sink.env(), Path(tmp))
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
