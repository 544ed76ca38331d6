"""Does a reset cost the same with 1,000,000 accounts and 1,000,000 audit rows as with an empty
database? (PostgreSQL.)

Two throwaway databases are created (and dropped at the end, also on Ctrl-C or an error) and
migrated with `flask --app wsgi db upgrade`:

- **empty**: `--small` accounts (default 1,000), nothing else;
- **full**: `--accounts` accounts (default 1,000,000), `--audit` audit rows (default 1,000,000),
  and a history as a busy shop keeps it within its retention: `--history` (default 1,000,000)
  each of sent outbox messages, resolved reset requests and used, revoked or expired resets.

Rows are made by PostgreSQL itself (INSERT ... SELECT over generate_series, the trigram indexes
dropped during the load and rebuilt after, then ANALYZE), not through the service: only the
timed part goes through it. The accounts are `user<n>`, with the email `user<n>@example.com`.

Then, in each database, alternating between them (`--rounds`, default 2: empty, full, full,
empty) so that a change of the machine's load falls on both:

1. **the request path**: gunicorn `-w 2` with OUTBOX_DISPATCH=external and no outbox worker, 8
   closed-loop clients on POST /api/v1/password-resets for `--duration` seconds (half existing
   usernames, half missing): requests/s, p50, p99;
2. **the whole reset**: gunicorn `-w 2` with OUTBOX_DISPATCH=inline, mail to a local SMTP sink
   (bench/smtp_sink.py, lean): `--resets` requests for existing accounts, one at a time, each
   timed from the request to its mail's arrival at the sink (the answer, the dispatcher's
   resolution, the reset, its mail rendered, queued, claimed, sent and recorded): p50 and p99.

Then the plans: the service's own hot statements, captured while the service's functions run
against the full database (find_account, the link and code lookups, the sign-in
temporary-password query, the request claim, the outbox claim, the mail cap, the revocation of
older resets), each shown with EXPLAIN (ANALYZE, BUFFERS) inside a transaction rolled back.

Exit code 0 after a complete run, 2 when something fails, 130/143 when interrupted.

    .venv/bin/python bench/scale.py [--accounts 1000000] [--audit 1000000] [--history 1000000]
            [--small 1000] [--duration 8] [--resets 200] [--rounds 2] [--no-plans | --plans-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from harness import (
    ROOT,
    HarnessError,
    install_sigterm_exit,
    postgres_database,
    psql,
    run_cli,
    running_service,
    running_smtp_sink,
    service_env,
)
from loadgen import LoadError, failure_exit, loadavg, run_load

EMPTY, FULL = "bench_scale_empty", "bench_scale_full"
MAIL_WAIT = 30.0

ACCOUNT_ROWS = """
INSERT INTO accounts (username, username_key, email, email_key, status, must_change_password, created_at,
                      search_text, phone_digits)
SELECT 'user' || g, 'user' || g, 'user' || g || '@example.com', 'user' || g || '@example.com', 'active', false,
       now() - interval '400 days', 'user' || g || chr(10) || 'user' || g || '@example.com', ''
FROM generate_series(1, {count}) AS g
"""
# Spread over the last 30 days, on accounts all over the table, of the kinds a shop records most.
AUDIT_ROWS = """
INSERT INTO audit_events (at, type, account_id, actor, ip, request_id, details)
SELECT now() - (g % 2592000) * interval '1 second',
       (ARRAY['reset.requested', 'reset.issued', 'mail.sent', 'signin.succeeded'])[1 + g % 4],
       1 + (g::bigint * 7919) % {accounts}, 'self', '203.0.113.7', md5(g::text),
       '{{"method": "link", "outcome": "issued"}}'
FROM generate_series(1, {count}) AS g
"""
OUTBOX_ROWS = """
INSERT INTO outbox (kind, recipient, subject, text_body, html_body, status, attempts, next_attempt_at,
                    created_at, claimed_at, sent_at, account_id)
SELECT 'email', 'user' || (1 + (g::bigint * 7919) % {accounts}) || '@example.com', 'Reset your password',
       '(delivered; the body is not kept)', NULL, 'sent', 1, t, t, t, t, 1 + (g::bigint * 7919) % {accounts}
FROM (SELECT g, now() - ({count} - g) * interval '2 seconds' AS t FROM generate_series(1, {count}) AS g) AS history
"""
REQUEST_ROWS = """
INSERT INTO reset_requests (kind, username_sealed, ip, requested_at, status, processed_at, attempts)
SELECT 'reset', '', '203.0.113.7', t, 'processed', t, 0
FROM (SELECT g, now() - ({count} - g) * interval '2 seconds' AS t FROM generate_series(1, {count}) AS g) AS history
"""
RESET_ROWS = """
INSERT INTO password_resets (account_id, method, requested_by, ip, secret_hash, created_at, expires_at,
                             used_at, revoked_at, code_hash, code_attempts)
SELECT 1 + (g::bigint * 7919) % {accounts}, 'link', 'self', '203.0.113.7', md5(g::text), t, t + interval '1 hour',
       CASE WHEN g % 3 = 0 THEN t + interval '5 minutes' END, CASE WHEN g % 3 = 1 THEN t + interval '1 minute' END,
       md5('code' || g), 0
FROM (SELECT g, now() - ({count} - g) * interval '2 seconds' AS t FROM generate_series(1, {count}) AS g) AS history
"""
TRIGRAM_INDEXES = {
    "ix_accounts_search_text_trgm": "CREATE INDEX ix_accounts_search_text_trgm ON accounts USING gin (search_text gin_trgm_ops)",
    "ix_accounts_phone_digits_trgm": "CREATE INDEX ix_accounts_phone_digits_trgm ON accounts USING gin (phone_digits gin_trgm_ops)",
}

def load(database: str, accounts: int, audit: int, history: int) -> dict[str, float]:
    """Fill a migrated database; returns seconds per step."""
    timings: dict[str, float] = {}

    def step(name: str, sql: str) -> None:
        started = time.perf_counter()
        psql(sql, database)
        timings[name] = time.perf_counter() - started

    for index in TRIGRAM_INDEXES:
        psql(f"DROP INDEX {index}", database)
    step("accounts", ACCOUNT_ROWS.format(count=accounts))
    if audit:
        step("audit", AUDIT_ROWS.format(count=audit, accounts=accounts))
    if history:
        step("outbox", OUTBOX_ROWS.format(count=history, accounts=accounts))
        step("requests", REQUEST_ROWS.format(count=history))
        step("resets", RESET_ROWS.format(count=history, accounts=accounts))
    started = time.perf_counter()
    for sql in TRIGRAM_INDEXES.values():
        psql(sql, database)
    timings["trigram indexes"] = time.perf_counter() - started
    step("analyze", "ANALYZE")
    return timings


def table_rows(database: str) -> str:
    sizes = psql(
        "SELECT relname, n_live_tup FROM pg_stat_user_tables WHERE relname IN "
        "('accounts', 'audit_events', 'outbox', 'reset_requests', 'password_resets') ORDER BY relname",
        database,
    )
    return ", ".join(f"{name} {int(rows):,}" for name, rows in (line.split("|") for line in sizes.split()))


def request_path(database_url: str, accounts: int, args: argparse.Namespace, secret_key: str) -> dict[str, float]:
    """8 closed-loop clients on the reset request, external dispatch: the request path alone."""
    settings = {"DATABASE_URL": database_url, "OUTBOX_DISPATCH": "external", "SECRET_KEY": secret_key}
    rng = random.Random()

    def body() -> bytes:
        if rng.random() < 0.5:
            return json.dumps({"username": f"user{rng.randint(1, accounts)}"}).encode()
        return json.dumps({"username": f"nobody{secrets.token_hex(4)}"}).encode()

    with running_service(2, settings, key_name=f"scale-{secrets.token_hex(3)}") as service:
        run_load(service.base_url, "/api/v1/password-resets", body, label="warm-up", duration=1.0, expect_status=202)
        result = run_load(service.base_url, "/api/v1/password-resets", body, label="requests",
                          concurrency=8, duration=args.duration, expect_status=202)
    return {"rps": result.rps, "p50": result.p50_ms, "p99": result.p99_ms}


def whole_reset(database_url: str, accounts: int, args: argparse.Namespace, secret_key: str, sink: Any,
                used: set[int]) -> dict[str, float]:
    """One reset at a time, inline dispatch: from the request to its mail at the sink."""
    settings = {"DATABASE_URL": database_url, "OUTBOX_DISPATCH": "inline", "SECRET_KEY": secret_key,
                "RESET_MAILS_PER_HOUR": "1000000", **sink.env()}
    rng = random.Random()
    latencies: list[float] = []
    answers: list[float] = []
    with running_service(2, settings, key_name=f"scale-{secrets.token_hex(3)}") as service:
        for number in range(args.resets + 10):  # the first 10 warm the workers up, untimed
            account = rng.randint(1, accounts)
            while account in used:
                account = rng.randint(1, accounts)
            used.add(account)
            recipient = f"user{account}@example.com"
            before = sink.count()
            request = urllib.request.Request(
                f"{service.base_url}/api/v1/password-resets", method="POST",
                data=json.dumps({"username": f"user{account}"}).encode(), headers={"Content-Type": "application/json"},
            )
            sent = time.time()
            with urllib.request.urlopen(request, timeout=10) as answer:
                if answer.status != 202:
                    raise HarnessError(f"reset request answered {answer.status}")
                answer.read()
            answered = time.time()
            deadline = time.monotonic() + MAIL_WAIT
            while sink.count() == before:
                if time.monotonic() > deadline:
                    raise HarnessError(f"no mail for {recipient} within {MAIL_WAIT:.0f} s")
                time.sleep(0.0005)
            arrival = next(stamp for stamp, to in reversed(sink.messages()) if to == recipient)
            if number >= 10:
                latencies.append((arrival - sent) * 1000)
                answers.append((answered - sent) * 1000)
    ordered = sorted(latencies)
    return {"p50": statistics.median(ordered), "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
            "answer_p50": statistics.median(answers)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--audit", type=int, default=1_000_000)
    parser.add_argument("--history", type=int, default=1_000_000, help="sent mails, resolved requests, old resets each")
    parser.add_argument("--small", type=int, default=1000, help="accounts in the empty database (default 1000)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of request-path load per slice")
    parser.add_argument("--resets", type=int, default=200, help="timed whole resets per slice")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-plans", action="store_true", help="skip the EXPLAIN of the hot statements")
    parser.add_argument("--plans-only", action="store_true", help="load the full database and show the plans, no timing")
    args = parser.parse_args()
    install_sigterm_exit()

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    print(f"machine: nproc {os.cpu_count()}, Python {platform.python_version()}, commit {commit}, "
          f"load average {loadavg()} at start", flush=True)
    secret_key = secrets.token_urlsafe(32)
    rows: dict[str, list[dict[str, float]]] = {"request path": [], "whole reset": []}
    try:
        with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="resetdesk-scale-") as tmp:
            urls = {name: stack.enter_context(postgres_database(name)) for name in (EMPTY, FULL)}
            sizes = {EMPTY: args.small, FULL: args.accounts}
            for url in urls.values():
                env = service_env(Path(tmp) / "unused.db", {"DATABASE_URL": url, "SECRET_KEY": secret_key})
                run_cli(env, "db", "upgrade")
            started = time.perf_counter()
            load(EMPTY, args.small, 0, 0)
            timings = load(FULL, args.accounts, args.audit, args.history)
            print(f"loaded in {time.perf_counter() - started:.1f} s: "
                  + ", ".join(f"{step} {seconds:.1f} s" for step, seconds in timings.items()), flush=True)
            for name in (EMPTY, FULL):
                print(f"  {name}: {table_rows(name)}", flush=True)
            if args.plans_only:
                for title, plan in explain_hot_statements(urls[FULL], secret_key, Path(tmp)):
                    print(f"\n-- {title}\n{plan}")
                return 0
            sink = stack.enter_context(running_smtp_sink(0.0, lean=True))
            used: dict[str, set[int]] = {EMPTY: set(), FULL: set()}
            # An untimed slice first: the first servers of a run start on cold caches.
            request_path(urls[EMPTY], sizes[EMPTY], argparse.Namespace(**{**vars(args), "duration": 2.0}), secret_key)
            psql("DELETE FROM reset_requests WHERE status = 'pending'", EMPTY)
            order = [EMPTY, FULL]
            for round_number in range(args.rounds):
                for name in (order if round_number % 2 == 0 else order[::-1]):
                    path = request_path(urls[name], sizes[name], args, secret_key)
                    psql("DELETE FROM reset_requests WHERE status = 'pending'", name)  # left by external dispatch
                    reset = whole_reset(urls[name], sizes[name], args, secret_key, sink, used[name])
                    rows["request path"].append({"database": name, **path, "load": float(loadavg().split()[0])})
                    rows["whole reset"].append({"database": name, **reset, "load": float(loadavg().split()[0])})
                    print(f"  round {round_number + 1} {name}: requests {path['rps']:.1f}/s p50 {path['p50']:.2f} ms "
                          f"p99 {path['p99']:.2f} ms; whole reset p50 {reset['p50']:.2f} ms p99 {reset['p99']:.2f} ms "
                          f"(load {loadavg()})", file=sys.stderr, flush=True)
            plans = [] if args.no_plans else explain_hot_statements(urls[FULL], secret_key, Path(tmp))
    except (HarnessError, LoadError, OSError, subprocess.SubprocessError, KeyboardInterrupt) as error:
        return failure_exit(error, "servers stopped, databases dropped")

    print(f"\nPostgreSQL, gunicorn -w 2; empty = {args.small:,} accounts and nothing else; full = {args.accounts:,} "
          f"accounts, {args.audit:,} audit rows, {args.history:,} each of sent mails, resolved requests and old resets")
    print(f"request path: POST /api/v1/password-resets, 8 closed-loop clients, {args.duration:g} s a slice, external dispatch")
    print(f"whole reset: {args.resets} resets a slice one at a time, inline dispatch, from the request to the mail at the sink")
    print(f"{'':24} | {'empty':>22} | {'full':>22} | full/empty")
    verdicts = []
    for label, keys in (("request path", ("rps", "p50", "p99")), ("whole reset", ("p50", "p99", "answer_p50"))):
        for key in keys:
            values = {name: statistics.median(row[key] for row in rows[label] if row["database"] == name) for name in (EMPTY, FULL)}
            every = {name: " / ".join(f"{row[key]:.1f}" for row in rows[label] if row["database"] == name) for name in (EMPTY, FULL)}
            ratio = values[FULL] / values[EMPTY] if values[EMPTY] else float("nan")
            unit = "req/s" if key == "rps" else "ms"
            print(f"{label + ' ' + key:24} | {values[EMPTY]:9.2f} {unit:5} ({every[EMPTY]:>5}) | "
                  f"{values[FULL]:9.2f} {unit:5} ({every[FULL]:>5}) | {ratio:5.2f}")
            if key in ("rps", "p50"):
                verdicts.append((label, key, ratio))
    for label, key, ratio in verdicts:
        slower = 1 / ratio if key == "rps" else ratio
        verdict = "PASS" if slower <= 1.2 else "FAIL"
        print(f"{verdict}: {label} {key} full vs empty {ratio:.2f} (limit: at most 20% worse, the run-to-run noise here)")
    print(f"load average at the end: {loadavg()}")
    for title, plan in plans:
        print(f"\n-- {title}\n{plan}")
    return 0


def explain_hot_statements(database_url: str, secret_key: str, tmp: Path) -> list[tuple[str, str]]:
    """Run the service's hot paths against `database_url`, capturing their statements; EXPLAIN each."""
    script = tmp / "plans.py"
    script.write_text(PLANS_CODE)
    env = service_env(tmp / "unused.db", {"DATABASE_URL": database_url, "SECRET_KEY": secret_key})
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise HarnessError(f"plans failed:\n{done.stdout}{done.stderr}")
    return [tuple(json.loads(line)) for line in done.stdout.splitlines() if line.startswith("[")]


PLANS_CODE = r'''
import json, sys
from datetime import timedelta
sys.path.insert(0, ".")
from sqlalchemy import event, text
from service import create_app
from service.accounts import signin
from service.accounts.changes import revoke_pending_resets
from service.accounts.records import find_account
from service.models import PasswordReset
from service.outbox.mail import RenderedEmail
from service.outbox.queue import any_due, claim_messages, queue_email
from service.platform.clock import utcnow
from service.platform.extensions import db
from service.resets import codes
from service.resets.links import check_link, make_link_token
from service.resets.mailcap import take_reset_mail
from service.resets.policy import reset_policy
from service.resets.requests import request_reset, take_due_requests

app = create_app()
captured = []

def capture(conn, cursor, statement, parameters, context, executemany):
    captured.append((statement, parameters))

with app.app_context():
    session = db.session
    now = utcnow()
    policy = reset_policy()
    # Some work waiting, as in a running shop: 100 requests and 100 mails due.
    for number in range(100):
        request_reset(session, f"user{number * 9973 + 1}", policy=policy, ip=None, now=now)
        queue_email(session, f"user{number}@example.com", RenderedEmail("Hi", "x", "y"), account_id=None, now=now)
    session.commit()
    account = find_account(session, "user500000") or find_account(session, "user1")
    reset = session.scalar(text("SELECT max(id) FROM password_resets WHERE account_id = :a"), {"a": account.id})
    session.rollback()
    engine = db.engine
    steps = [
        ("account lookup by username (find_account)", lambda: find_account(session, "user765432")),
        ("reset link lookup (check_link: by id from the token, then the secret's hash)",
         lambda: _try(lambda: check_link(session, make_link_token(reset or 1, "x" * 43), policy=policy, now=now))),
        ("reset code lookup (check_code)",
         lambda: _try(lambda: codes.check_code(session, account.username, "ABCD-EFGH", policy=policy, now=now))),
        ("sign-in temporary-password query", lambda: signin._matching_temporary_password(session, account, "wrong password", now)),
        ("request resolve claim (take_due_requests)", lambda: take_due_requests(session, now=now, limit=20)),
        ("mail cap (take_reset_mail)", lambda: take_reset_mail(session, account.id, per_hour=3, now=now)),
        ("older resets revoked (revoke_pending_resets)", lambda: revoke_pending_resets(session, account, now, keep_self_service="link")),
        ("outbox: anything due? (any_due)", lambda: any_due(session, now=now)),
        ("outbox claim (claim_messages)", lambda: claim_messages(session, now=now, limit=50)),
    ]

    def _try(call):
        try:
            call()
        except Exception as error:  # a rejected token or code is expected: the queries ran
            session.rollback() if "aborted" in str(error) else None

    for title, call in steps:
        account = session.merge(account)  # loaded again outside the capture: not the step's own query
        account.id
        captured.clear()
        event.listen(engine, "before_cursor_execute", capture)
        try:
            call()
        finally:
            event.remove(engine, "before_cursor_execute", capture)
            session.rollback()
        for position, (statement, parameters) in enumerate(captured):
            if statement.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK", "SET ")):
                continue
            raw = engine.raw_connection()
            try:
                cursor = raw.cursor()
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING ON) " + statement, parameters or None)
                plan = "\n".join(row[0] for row in cursor.fetchall())
            finally:
                raw.rollback()
                raw.close()
            name = title if len(captured) == 1 else f"{title}, statement {position + 1}"
            print(json.dumps([f"{name}\n{statement.strip()}", plan]))
'''


if __name__ == "__main__":
    sys.exit(main())
