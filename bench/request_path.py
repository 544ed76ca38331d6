"""How close is POST /api/v1/password-resets to a bare durable write? (issue 15, item 1)

Two servers side by side, each under gunicorn with `--workers` sync workers and the project's
gunicorn.conf.py (JSON access log to a file), each on its own SQLite file in WAL with
synchronous=NORMAL:

  service  resetdesk with the production profile's middleware (bench/harness.py
           `production_settings`: APP_ENV=production, JSON logs, metrics in multiprocess mode,
           request ids, security headers, trusted hosts), OUTBOX_DISPATCH=external and no
           outbox worker: the request path alone (the request is sealed and recorded, and
           resolved later by a worker that is not running). RATELIMIT_ENABLED=false: limits
           would refuse the load; off, Flask-Limiter touches no storage.
  bare     bench/bare_app.py: Flask, one indexed SELECT and one INSERT with plain sqlite3 and
           the same pragmas, 202.

`--concurrency` closed-loop clients (bench/loadgen.py) send the same bodies to both: half
(`--existing-share`) name one of `--accounts` accounts that both databases hold, the rest random
missing names. The load runs in `--rounds` slices per server in alternating order, after a
warm-up. Printed: requests/s, p50/p99, the gunicorn processes' CPU per request, and the ratio
service/bare (target >= 0.6).

With `--profile S`, S more seconds of load on each server alone while py-spy samples each of its
workers (bench/profiling.py), and the top of each profile is printed: the tables that
bench/README.md quotes.

    .venv/bin/python bench/request_path.py [--duration 10] [--rounds 2] [--profile 10] [--json]
"""

from __future__ import annotations

import json
import os
import random
import secrets
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass

from harness import (
    DEFAULT_REDIS_URL,
    HarnessError,
    child_pids,
    comparison_options,
    production_settings,
    running_bare_app,
    running_service,
    start_comparison,
)
from loadgen import LoadResult, loadavg, run_and_print, run_load, tree_cpu_seconds

PATH = "/api/v1/password-resets"
TARGET_RATIO = 0.6


@dataclass
class Measured:
    """One server's slices, added up."""

    name: str
    base_url: str
    arbiter_pid: int
    result: LoadResult | None = None
    cpu_s: float = 0.0

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu_s / self.result.count if self.result and self.result.count else 0.0


def account_names(count: int) -> list[str]:
    return [f"acct{number:05d}" for number in range(count)]


def import_accounts(service, names: list[str]) -> None:
    """`flask users import` the names, each with an email and no password."""
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as csv:
        csv.write("username,email,password_hash\n")
        for name in names:
            csv.write(f"{name},{name}@example.com,\n")
    try:
        output = service.cli("users", "import", csv.name)
    finally:
        os.unlink(csv.name)
    if f"Imported {len(names)} account(s)" not in output:
        raise HarnessError(f"users import did not import every account:\n{output}")


def body_maker(names: list[str], existing_share: float):
    def make() -> bytes:
        name = random.choice(names) if random.random() < existing_share else "u" + secrets.token_hex(4)
        return json.dumps({"username": name}).encode()
    return make


def load_slice(target: Measured, make_body, concurrency: int, duration: float) -> None:
    before = tree_cpu_seconds(target.arbiter_pid)
    result = run_load(target.base_url, PATH, make_body, label=target.name, concurrency=concurrency,
                      duration=duration, max_requests=10**7, expect_status=202)
    target.cpu_s += tree_cpu_seconds(target.arbiter_pid) - before
    target.result = result if target.result is None else target.result.merge(result)
    print(f"  {target.name:8} slice: {result.line()}  load {loadavg().split()[0]}", file=sys.stderr, flush=True)


def measure(
    *, workers: int = 2, concurrency: int = 8, duration: float = 10.0, rounds: int = 2, warmup: float = 1.0,
    accounts: int = 100, existing_share: float = 0.5, redis_url: str = DEFAULT_REDIS_URL, profile_s: float = 0.0,
    profile_top: int = 25,
) -> dict:
    """Run both servers and return the figures (and the profile table, if asked)."""
    names = account_names(accounts)
    make_body = body_maker(names, existing_share)
    with ExitStack() as stack:
        settings = {**production_settings(redis_url), "OUTBOX_DISPATCH": "external"}
        service = stack.enter_context(running_service(workers, settings))
        import_accounts(service, names)
        bare = stack.enter_context(running_bare_app(workers, accounts=names))
        targets = [Measured("service", service.base_url, service.process.pid),
                   Measured("bare", bare.base_url, bare.process.pid)]
        for target in targets:
            run_load(target.base_url, PATH, make_body, label=target.name, concurrency=concurrency,
                     duration=warmup, expect_status=202)
        for number in range(rounds):
            for target in targets if number % 2 == 0 else reversed(targets):
                load_slice(target, make_body, concurrency, duration / rounds)
        profiles: dict[str, str] = {}
        if profile_s:
            from profiling import sampling

            for name, server in (("service", service), ("bare", bare)):
                print(f"  profiling {name} for {profile_s:g} s (py-spy) ...", file=sys.stderr, flush=True)
                with sampling(child_pids(server.process.pid), profile_s) as profile:
                    run_load(server.base_url, PATH, make_body, label="profile", concurrency=concurrency,
                             duration=profile_s, max_requests=10**7, expect_status=202)
                profiles[name] = profile.table(profile_top)
        restarts = {"service": service.log_count("Autorestarting worker"), "bare": bare.log_count("Autorestarting worker")}
    service_m, bare_m = targets
    ratio = service_m.result.rps / bare_m.result.rps
    return {
        "service": {"rps": service_m.result.rps, "p50_ms": service_m.result.p50_ms, "p99_ms": service_m.result.p99_ms,
                    "cpu_ms": service_m.cpu_ms, "requests": service_m.result.count},
        "bare": {"rps": bare_m.result.rps, "p50_ms": bare_m.result.p50_ms, "p99_ms": bare_m.result.p99_ms,
                 "cpu_ms": bare_m.cpu_ms, "requests": bare_m.result.count},
        "ratio": ratio, "target": TARGET_RATIO, "passed": ratio >= TARGET_RATIO,
        "restarts": restarts, "profiles": profiles,
        "client_cpu_share": sum(t.result.client_cpu_s for t in targets) / sum(t.result.elapsed_s for t in targets),
    }


def report(figures: dict, args) -> None:
    print(f"\nPOST {PATH}: gunicorn -w {args.workers}, {args.concurrency} closed-loop clients, {args.duration:g} s per "
          f"server in {args.rounds} slices, {100 * args.existing_share:.0f}% existing names (of {args.accounts})")
    print(f"{'server':50} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU/req':>10}")
    labels = {"service": "service (production middleware, dispatch external)",
              "bare": "bare Flask (1 indexed SELECT + 1 INSERT, sqlite3)"}
    for key in ("service", "bare"):
        row = figures[key]
        print(f"{labels[key]:50} {row['rps']:8.1f} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} {row['cpu_ms']:7.2f} ms")
    print(f"client (this process) CPU: {100 * figures['client_cpu_share']:.0f}% of a core while loading")
    if any(figures["restarts"].values()):
        print(f"note: gunicorn restarted workers (max_requests): {figures['restarts']}")
    verdict = "PASS" if figures["passed"] else "FAIL"
    print(f"request path / bare: {figures['ratio']:.2f}x (target >= {TARGET_RATIO}x): {verdict}")
    for name, table in figures["profiles"].items():
        print(f"\nprofile of the {name} workers under the same load (py-spy, {args.profile:g} s):\n{table}")


def main() -> int:
    parser = comparison_options(__doc__.split("\n\n")[0])
    parser.add_argument("--profile", type=float, default=0.0, metavar="S", help="then profile the service for S seconds with py-spy")
    parser.add_argument("--top", type=int, default=25, help="rows of the profile tables (default 25)")
    args = parser.parse_args()
    start_comparison(args)
    return run_and_print(args, lambda: measure(workers=args.workers, concurrency=args.concurrency, duration=args.duration, rounds=args.rounds,
                          warmup=args.warmup, accounts=args.accounts, existing_share=args.existing_share,
                          redis_url=args.redis_url, profile_s=args.profile, profile_top=args.top), report, errors=(HarnessError,))


if __name__ == "__main__":
    sys.exit(main())
