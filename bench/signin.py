"""Sign-in against argon2-cffi alone: how much of a core does /auth/verify spend beyond the hash?
(issue 15, target 4)

A right password costs one argon2id verification (19 MiB, 2 passes, 1 lane) and little else,
so the service's sign-ins per second should be close to what argon2-cffi alone verifies on the
same cores. Two measurements, one after the other, `--rounds` times alternating:

  service  resetdesk under gunicorn with `--workers` sync workers (production profile's
           middleware, bench/harness.py `production_settings`; the sign-in throttle counts in
           Redis at --redis-url, as in production), SQLite; `--concurrency` closed-loop clients
           (bench/loadgen.py) send POST /api/v1/auth/verify with a client API key and the right
           password of an account made by `flask users create`; every answer must be 200.
  argon2   `--workers` processes, each calling argon2-cffi's PasswordHasher().verify(hash,
           password) in a loop, with the very hash the service stored for that account (its
           parameters are read from the hash: the service's exact ones).

Printed: verifications per second for each, the service's p50/p99 and CPU per request, and the
ratio service/argon2 (target >= 0.9).

    .venv/bin/python bench/signin.py [--duration 10] [--rounds 2] [--json]
"""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import sys
import time

from argon2 import PasswordHasher
from harness import (
    DEFAULT_REDIS_URL,
    HarnessError,
    child_pids,
    comparison_options,
    production_settings,
    running_service,
    start_comparison,
)
from loadgen import LoadResult, loadavg, run_and_print, run_load, tree_cpu_seconds

PATH = "/api/v1/auth/verify"
USERNAME = "benchuser"
PASSWORD = "correct horse battery staple"
TARGET_RATIO = 0.9


def _verify_for(stored_hash: str, password: str, seconds: float, out: multiprocessing.Queue) -> None:
    hasher = PasswordHasher()
    count = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        hasher.verify(stored_hash, password)
        count += 1
    out.put(count)


def argon2_rate(stored_hash: str, processes: int, seconds: float) -> float:
    """Verifications per second of `processes` processes verifying the hash for `seconds`."""
    context = multiprocessing.get_context("fork")
    out: multiprocessing.Queue = context.Queue()
    workers = [context.Process(target=_verify_for, args=(stored_hash, PASSWORD, seconds, out)) for _ in range(processes)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    total = sum(out.get(timeout=seconds + 60) for _ in workers)
    for worker in workers:
        worker.join()
    return total / (time.perf_counter() - start)


def stored_hash_of(database_url: str, username: str) -> str:
    conn = sqlite3.connect(database_url.removeprefix("sqlite:///"))
    try:
        row = conn.execute("SELECT password_hash FROM accounts WHERE username = ?", (username,)).fetchone()
    finally:
        conn.close()
    if not row or not str(row[0]).startswith("$argon2id$"):
        raise HarnessError(f"no argon2id hash stored for {username}: {row!r}")
    return str(row[0])


def measure(*, workers: int = 2, concurrency: int = 4, duration: float = 10.0, rounds: int = 2, warmup: float = 1.0,
            redis_url: str = DEFAULT_REDIS_URL, profile_s: float = 0.0, profile_top: int = 25) -> dict:
    with running_service(workers, production_settings(redis_url)) as service:
        service.cli("users", "create", USERNAME, "bench@example.com", "--password-stdin", stdin=PASSWORD + "\n")
        stored_hash = stored_hash_of(service.env["DATABASE_URL"], USERNAME)
        body = json.dumps({"username": USERNAME, "password": PASSWORD}).encode()
        headers = {"Authorization": f"Bearer {service.api_key}"}
        run_load(service.base_url, PATH, lambda: body, label="verify", headers=headers, concurrency=concurrency,
                 duration=warmup, expect_status=200)
        result: LoadResult | None = None
        cpu_s, argon2_rates = 0.0, []
        for _ in range(rounds):
            before = tree_cpu_seconds(service.process.pid)
            part = run_load(service.base_url, PATH, lambda: body, label="verify", headers=headers,
                            concurrency=concurrency, duration=duration / rounds, expect_status=200)
            cpu_s += tree_cpu_seconds(service.process.pid) - before
            result = part if result is None else result.merge(part)
            print(f"  service slice: {part.line()}  load {loadavg().split()[0]}", file=sys.stderr, flush=True)
            argon2_rates.append(argon2_rate(stored_hash, workers, duration / rounds))
            print(f"  argon2  slice: {argon2_rates[-1]:.1f} verifications/s  load {loadavg().split()[0]}",
                  file=sys.stderr, flush=True)
        profile_table = None
        if profile_s:
            from profiling import sampling

            with sampling(child_pids(service.process.pid), profile_s) as profile:
                run_load(service.base_url, PATH, lambda: body, label="profile", headers=headers,
                         concurrency=concurrency, duration=profile_s, expect_status=200)
            profile_table = profile.table(profile_top)
    assert result is not None
    argon2 = sum(argon2_rates) / len(argon2_rates)
    ratio = result.rps / argon2
    return {
        "service": {"rps": result.rps, "p50_ms": result.p50_ms, "p99_ms": result.p99_ms,
                    "cpu_ms": 1000 * cpu_s / result.count, "requests": result.count},
        "argon2": {"rps": argon2, "cpu_ms": 1000 * workers / argon2},
        "hash_parameters": stored_hash.split("$")[3], "ratio": ratio, "target": TARGET_RATIO, "passed": ratio >= TARGET_RATIO,
        "profile": profile_table,
    }


def report(figures: dict, args) -> None:
    print(f"\nsign-in, right password: gunicorn -w {args.workers} with {args.concurrency} clients against argon2-cffi in "
          f"{args.workers} processes, {args.duration:g} s each in {args.rounds} alternating slices; "
          f"hash {figures['hash_parameters']}")
    service, argon2 = figures["service"], figures["argon2"]
    print(f"service  POST {PATH}: {service['rps']:7.1f} req/s   p50 {service['p50_ms']:.1f} ms   p99 {service['p99_ms']:.1f} ms   "
          f"CPU/req {service['cpu_ms']:.2f} ms")
    print(f"argon2-cffi PasswordHasher.verify: {argon2['rps']:7.1f} /s       (about {argon2['cpu_ms']:.2f} ms of a core each)")
    verdict = "PASS" if figures["passed"] else "FAIL"
    print(f"service / argon2-cffi: {figures['ratio']:.2f}x (target >= {TARGET_RATIO}x): {verdict}")
    if figures["profile"]:
        print(f"\nprofile of the service's workers (py-spy, {args.profile:g} s):\n{figures['profile']}")


def main() -> int:
    parser = comparison_options(__doc__.split("\n\n")[0], concurrency=4, workers_help="gunicorn workers, and argon2 processes",
                                mix=False)
    parser.add_argument("--profile", type=float, default=0.0, metavar="S", help="then profile the service for S seconds with py-spy")
    parser.add_argument("--top", type=int, default=25, help="rows of the profile tables (default 25)")
    args = parser.parse_args()
    start_comparison(args)
    return run_and_print(args, lambda: measure(workers=args.workers, concurrency=args.concurrency, duration=args.duration,
                          rounds=args.rounds, warmup=args.warmup, redis_url=args.redis_url, profile_s=args.profile,
                          profile_top=args.top), report, errors=(HarnessError,))


if __name__ == "__main__":
    sys.exit(main())
