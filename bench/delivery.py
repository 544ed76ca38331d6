"""How fast do `flask --app wsgi outbox run` workers empty the outbox, against what the SMTP sink
itself can take?

For each database (PostgreSQL, a throwaway database created and dropped here; SQLite, a file in a
temporary directory) and each worker count (`--workers`, default 1, 2, 4):

1. `--messages` emails (default 5000) are queued through the service's own `queue_email`, in an
   app context, rendered once from the reset-link template, each to its own address, held back
   (due a day later) so that no worker starts early;
2. the workers are started and have said they run (their start-up stays out of the figure);
3. one UPDATE makes every message due now, and the script waits until the sink has them all.

Reported per cell: mails/s from the first message the sink received to the last, the same over
the 10%..90% stretch (steady state), the workers' CPU per message and (PostgreSQL) that of their
database backends, and a check that every message arrived exactly once and the outbox says sent.

In the same run, the sink's own ceiling: a bare loop (`smtplib`, no database, no rendering)
sending the same message bytes `--messages` times over one reused connection, and over as many
parallel connections (processes) as each worker count, so the comparison is fair to the workers;
measured after the first cell and again at the end, the best of the two counting (the machine
may be shared).

The sink is bench/smtp_sink.py's lean server by default (`--sink lean`): aiosmtpd's own
(`--sink aiosmtpd`) tops out at about 700 messages/s on two cores and would be the bottleneck.
It offers PIPELINING, as a shop's mail relay does, and the workers use it (`hand_over`); the
bare loop is smtplib's `sendmail`, one command at a time. `--no-pipelining` runs the workers
against a sink that does not offer it.

Exit code 0 after a complete run, 2 when something fails (a lost or duplicated message, a worker
that dies), 130/143 when interrupted. With `--json` the last line printed is one JSON object:
{"ceiling_per_s": float, "postgresql": {"1": float, "2": float, "4": float}, "sqlite": {...}, ...}.

    .venv/bin/python bench/delivery.py [--messages 5000] [--workers 1,2,4] [--databases postgresql,sqlite]
            [--sink lean|aiosmtpd] [--sink-processes 1] [--no-pipelining] [--database bench_delivery] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import smtplib
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from harness import (
    BIN,
    ROOT,
    HarnessError,
    SmtpSink,
    install_sigterm_exit,
    postgres_database,
    psql,
    run_cli,
    running_outbox_workers,
    running_smtp_sink,
    service_env,
)
from loadgen import cpu_seconds, loadavg

DATABASE = "bench_delivery"
DELIVERY_TIMEOUT = 300.0
SENDER = "noreply@example.com"

# Run inside the project with the service's settings: queue N emails the way the service does,
# held back a day, and write the MIME bytes one of them goes out as (for the bare loop).
QUEUE_SCRIPT = r"""
import sys, types
from datetime import timedelta
from service import create_app
from service.platform.clock import utcnow
from service.outbox.mail import mime_bytes, render_email, sender_address
from service.platform.extensions import db
from service.outbox.queue import queue_email

count, prefix, mime_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
app = create_app()
with app.app_context():
    now = utcnow()
    account = types.SimpleNamespace(username="bench", email="bench@example.com", language=None, id=None)
    email = render_email("reset_link", "Reset your password", now=now, account=account,
                         link="http://127.0.0.1/reset-password/" + "x" * 60, code="ABCD-EFGH",
                         code_page="http://127.0.0.1/reset-password/code", report_link="http://127.0.0.1/report/" + "y" * 40,
                         expires_at=now, lifetime_minutes=60)
    held = now + timedelta(days=1)
    for number in range(count):
        queue_email(db.session, f"{prefix}{number:06d}@example.com", email, account_id=None, now=held)
    db.session.commit()
    config = app.config
    with open(mime_path, "wb") as out:
        out.write(mime_bytes(sender_address(config["SHOP_NAME"], config["MAIL_DEFAULT_SENDER"]), "bench@example.com",
                             email.subject, email.text_body, email.html_body, message_id="<bench@127.0.0.1>"))
    print(f"queued {count} messages, {len(email.text_body)} + {len(email.html_body)} characters each")
"""


def _bare_sender(port: int, count: int, prefix: str, message: bytes, start: Any) -> None:
    connection = smtplib.SMTP("127.0.0.1", port, timeout=30)
    connection.ehlo()
    start.wait()
    for number in range(count):
        connection.sendmail(SENDER, [f"{prefix}{number:06d}@example.com"], message)
    connection.quit()


def ceiling(sink: SmtpSink, message: bytes, count: int, connections: int, tag: str) -> float:
    """Messages/s of a bare smtplib loop, `connections` processes each with one connection."""
    context = multiprocessing.get_context("fork")
    start = context.Event()
    share = count // connections
    before = sink.count()
    senders = [
        context.Process(target=_bare_sender, args=(sink.port, share, f"ceiling-{tag}-{index}-", message, start))
        for index in range(connections)
    ]
    for sender in senders:
        sender.start()
    time.sleep(0.5)  # every connection open and greeted
    began = time.perf_counter()
    start.set()
    for sender in senders:
        sender.join()
    elapsed = time.perf_counter() - began
    if any(sender.exitcode for sender in senders) or sink.count() - before != share * connections:
        raise HarnessError(f"bare loop with {connections} connections: {sink.count() - before} of {share * connections} arrived")
    return share * connections / elapsed


def measure_ceilings(sink: SmtpSink, message: bytes, count: int, connection_counts: list[int],
                     ceilings: dict[int, float], runs: dict[int, list[float]], tag: str) -> None:
    """The bare loop over each number of connections; `ceilings` keeps the best of the runs."""
    for connections in connection_counts:
        rate = ceiling(sink, message, count, connections, f"{tag}{connections}")
        runs.setdefault(connections, []).append(rate)
        ceilings[connections] = max(runs[connections])
        print(f"  bare loop, {connections} connection(s): {rate:.1f} mails/s", file=sys.stderr, flush=True)


def backend_pids(database: str) -> list[int]:
    output = psql(f"SELECT pid FROM pg_stat_activity WHERE datname = '{database}' AND pid <> pg_backend_pid()")
    return [int(line) for line in output.split()]


def sql(kind: str, target: str, statement: str) -> str:
    """Run one statement on the bench database: psql for PostgreSQL, sqlite3 for SQLite."""
    if kind == "postgresql":
        return psql(statement, target)
    with sqlite3.connect(target, timeout=30) as connection:
        rows = connection.execute(statement).fetchall()
    return "\n".join("|".join(str(value) for value in row) for row in rows)


def deliver(kind: str, target: str, env: dict[str, str], sink: SmtpSink, workers: int, messages: int,
            tmp: Path) -> dict[str, Any]:
    """Queue, start the workers, release the messages, time their arrival at the sink."""
    sql(kind, target, "DELETE FROM outbox")
    if kind == "postgresql":
        # Each cell starts from the same table. Without this, the previous cells' 10,000 deleted
        # rows stay in the table and its indexes until autovacuum comes by, and the next cell's
        # statements pay for them: PostgreSQL's CPU a mail went from 0.17 to 0.34-0.44 ms in the
        # 4-worker cell (ANALYZE alone did not help; VACUUM did).
        sql(kind, target, "VACUUM ANALYZE outbox")
    prefix = f"{kind}-{workers}-"
    mime_path = tmp / "message.eml"
    queued = subprocess.run([str(BIN / "python"), "-c", QUEUE_SCRIPT, str(messages), prefix, str(mime_path)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if queued.returncode != 0:
        raise HarnessError(f"queueing failed:\n{queued.stdout}{queued.stderr}")
    note = queued.stdout.strip().splitlines()[-1]
    log_dir = Path(tempfile.mkdtemp(prefix=f"{kind}-{workers}-", dir=tmp))
    mine = lambda: [(stamp, to) for stamp, to in sink.messages() if to.startswith(prefix)]  # noqa: E731
    with running_outbox_workers(env, workers, log_dir) as processes:
        pids = [process.pid for process in processes]
        backends = backend_pids(target) if kind == "postgresql" else []
        released = time.time()
        sql(kind, target, "UPDATE outbox SET next_attempt_at = CURRENT_TIMESTAMP")
        marks: dict[str, tuple[int, float, float, float]] = {}
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while (arrived := sum(1 for _ in mine())) < messages:
            for name, share in (("low", 0.1), ("high", 0.9)):
                if name not in marks and arrived >= share * messages:
                    marks[name] = (arrived, time.perf_counter(), cpu_seconds(pids), cpu_seconds(backends))
            if time.monotonic() > deadline:
                raise HarnessError(f"{kind}, {workers} workers: only {arrived}/{messages} arrived in {DELIVERY_TIMEOUT:.0f} s")
            time.sleep(0.02)
        time.sleep(0.5)  # anything sent twice would arrive now
        load = loadavg()
    received = mine()
    statuses = dict(line.split("|") for line in sql(kind, target, "SELECT status, count(*) FROM outbox GROUP BY status").split())
    recipients = [to for _, to in received]
    duplicates = len(recipients) - len(set(recipients))
    if duplicates or len(set(recipients)) != messages or statuses != {"sent": str(messages)}:
        raise HarnessError(f"{kind}, {workers} workers: {len(recipients)} received, {duplicates} duplicates, outbox {statuses}")
    stamps = sorted(stamp for stamp, _ in received)
    low, high = marks.get("low"), marks.get("high")
    steady = (high[0] - low[0]) if low and high else 0
    span = stamps[-1] - stamps[0]
    return {
        "rate": (messages - 1) / span if span else float("inf"),
        "span": span,
        "steady_rate": steady / (high[1] - low[1]) if steady else 0.0,
        "worker_cpu_ms": 1000 * (high[2] - low[2]) / steady if steady else 0.0,
        "pg_cpu_ms": 1000 * (high[3] - low[3]) / steady if steady else 0.0,
        "first_after": stamps[0] - released,
        "load": load,
        "note": note,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000, help="emails per cell (default 5000)")
    parser.add_argument("--workers", default="1,2,4", help="outbox worker counts (default 1,2,4)")
    parser.add_argument("--databases", default="postgresql,sqlite", help="default postgresql,sqlite")
    parser.add_argument("--sink", choices=("lean", "aiosmtpd"), default="lean")
    parser.add_argument("--sink-processes", type=int, default=1, help="lean sink processes on the port (default 1)")
    parser.add_argument("--no-pipelining", action="store_true", help="a sink that does not offer PIPELINING")
    parser.add_argument("--database", default=DATABASE,
                        help=f"name of the throwaway PostgreSQL database, created and dropped here (default {DATABASE})")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    args = parser.parse_args()
    worker_counts = [int(part) for part in args.workers.split(",")]
    databases = [part.strip() for part in args.databases.split(",") if part.strip()]
    install_sigterm_exit()

    start_load = loadavg()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    print(f"machine: nproc {os.cpu_count()}, Python {platform.python_version()}, commit {commit}, "
          f"load average {start_load} at start", flush=True)
    results: dict[str, dict[int, dict[str, Any]]] = {}
    ceilings: dict[int, float] = {}
    ceiling_runs: dict[int, list[float]] = {}
    try:
        with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="resetdesk-delivery-") as tmp_name:
            tmp = Path(tmp_name)
            sink = stack.enter_context(running_smtp_sink(0.0, lean=args.sink == "lean", processes=args.sink_processes,
                                                            pipelining=not args.no_pipelining))
            for kind in databases:
                if kind == "postgresql":
                    database_url = stack.enter_context(postgres_database(args.database))
                    target = args.database
                elif kind == "sqlite":
                    target = str(tmp / "delivery.db")
                    database_url = f"sqlite:///{target}"
                else:
                    raise HarnessError(f"unknown database {kind!r}")
                env = service_env(tmp / "unused.db", {
                    "DATABASE_URL": database_url, "OUTBOX_DISPATCH": "external", **sink.env(),
                    "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"), "HOUSEKEEPING_INTERVAL_SECONDS": "0",
                })
                (tmp / "metrics").mkdir(exist_ok=True)
                run_cli(env, "db", "upgrade")
                results[kind] = {}
                for workers in worker_counts:
                    results[kind][workers] = deliver(kind, target, env, sink, workers, args.messages, tmp)
                    cell = results[kind][workers]
                    print(f"  {kind} x{workers}: {cell['rate']:.1f} mails/s (load {cell['load']})", file=sys.stderr, flush=True)
                    if not ceilings:
                        measure_ceilings(sink, (tmp / "message.eml").read_bytes(), args.messages,
                                         sorted({1, *worker_counts}), ceilings, ceiling_runs, "a")
            # Once more at the end: the machine is shared, and the sink's ceiling is its best.
            measure_ceilings(sink, (tmp / "message.eml").read_bytes(), args.messages,
                             sorted({1, *worker_counts}), ceilings, ceiling_runs, "b")
    except (HarnessError, OSError, subprocess.SubprocessError) as error:
        print(f"error: {error}", *getattr(error, "__notes__", []), sep="\n", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; workers and sink stopped, database dropped", file=sys.stderr)
        return 130

    note = next(iter(next(iter(results.values())).values()))["note"]
    print(f"\noutbox delivery: {args.messages} emails per cell ({note}), into bench/smtp_sink.py "
          f"({args.sink}{f', {args.sink_processes} processes' if args.sink_processes > 1 else ''}, answers at once)")
    print("the sink's ceiling (bare smtplib loop, the same message bytes, no database; best of a run after the "
          "first cell and one at the end): "
          + ", ".join(f"{rate:.1f} mails/s over {connections} connection(s) "
                      f"({' / '.join(f'{run:.0f}' for run in ceiling_runs[connections])})"
                      for connections, rate in ceilings.items()))
    header = (f"{'database':>10} | {'workers':>7} | {'mails/s':>8} | {'10%..90%':>8} | {'vs 1 conn':>9} | "
              f"{'vs N conns':>10} | {'CPU/mail':>9} {'pg':>8} | {'first after':>11} | exactly once | load")
    print(header)
    for kind, cells in results.items():
        for workers, cell in cells.items():
            print(f"{kind:>10} | {workers:7d} | {cell['rate']:8.1f} | {cell['steady_rate']:8.1f} | "
                  f"{cell['rate'] / ceilings[1]:8.2f}x | {cell['rate'] / ceilings[workers]:9.2f}x | "
                  f"{cell['worker_cpu_ms']:6.2f} ms {cell['pg_cpu_ms']:5.2f} ms | {cell['first_after']:9.2f} s | "
                  f"yes          | {cell['load']}")
    print(f"load average at the end: {loadavg()}")
    if 4 in ceilings and "postgresql" in results and 4 in results["postgresql"]:
        rate = results["postgresql"][4]["rate"]
        ratio = rate / ceilings[1]
        verdict = "PASS" if ratio >= 0.8 and rate >= min(1000.0, 0.8 * ceilings[1]) else "FAIL"
        print(f"target, 4 workers on PostgreSQL >= 0.8x the sink's ceiling over one connection and >= 1000 mails/s "
              f"where the sink allows it: {verdict} ({rate:.1f} mails/s = {ratio:.2f}x of {ceilings[1]:.1f})")
    if args.json:
        print(json.dumps({
            "ceiling_per_s": round(ceilings[1], 1),
            "ceiling_parallel_per_s": {str(connections): round(rate, 1) for connections, rate in ceilings.items()},
            **{kind: {str(workers): round(cell["rate"], 1) for workers, cell in cells.items()} for kind, cells in results.items()},
            "steady_per_s": {kind: {str(workers): round(cell["steady_rate"], 1) for workers, cell in cells.items()}
                             for kind, cells in results.items()},
            "messages": args.messages, "sink": args.sink, "commit": commit, "load_at_start": start_load,
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
