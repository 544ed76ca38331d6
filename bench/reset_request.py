"""How fast, how flat in time, and how independent of SMTP is POST /api/v1/password-resets?

The contract says the self-service reset records the username as typed and nothing else, so
it must be cheap, must take the same time for an existing and a missing username, and must
never wait for mail: mail is queued and sent by the dispatcher, off the request's path. This
script measures all three on the real service under gunicorn (2 sync workers, SQLite in WAL as
the service configures it, RATELIMIT_ENABLED=false, OUTBOX_DISPATCH=inline: each web process
runs its own background dispatcher thread, so its work is part of what is measured), with mail
going to a local aiosmtpd sink (bench/smtp_sink.py, a subprocess).

Three processes under test run side by side, each on its own port and its own SQLite file:

  A  the service, mail to a sink that answers at once;
  B  the same service, mail to a sink that holds every message 2 s before its 250;
  bare  bench/bare_app.py, a plain Flask app with one JSON POST endpoint (one indexed SELECT and
        one INSERT on SQLite, the service's pragmas), under the same gunicorn.conf.py and worker
        count: the floor of what Flask, gunicorn and a durable write cost;
  C  (unless --no-external-baseline) the service with OUTBOX_DISPATCH=external and no outbox
     worker: requests are recorded and never resolved, so it is the request path alone, and
     A minus C is what the inline dispatcher threads cost. No target; for diagnosis.

1. Throughput. `--concurrency` closed-loop keep-alive clients (bench/loadgen.py, asyncio) send
   POST /api/v1/password-resets for `--duration` seconds per target, taken as `--rounds`
   slices in rotating order (A, bare, B, C; then bare, B, C, A; ...) so that drifting machine
   load hits all of them alike. Half the usernames (`--existing-share`) name one of `--accounts`
   imported accounts with an email, the rest are random missing names, so the dispatcher both
   sends mail and records misses. After each A slice the script waits until A's dispatchers
   have resolved every request and sent every message (the "drain"), so A's background work
   never spills into another target's slice, and reports the rate including that drain.
   Printed per target: requests/s, p50 and p99 latency (connect to last byte), the gunicorn
   workers' CPU per request (from /proc), and what happened to keep-alive.
2. Timing. `--pairs` interleaved pairs on A through one http.client connection: each pair is
   one request for an existing username with an email and one for a fresh missing name of the
   same length, in random order. Every answer must be 202 with a byte-identical body. With
   `--settle` (the default) each timed request is sent only once A's dispatchers have
   resolved the previous request and sent its mail (read from A's SQLite file) and A's worker
   processes are idle (no thread runnable, no CPU used over 3 polls 1 ms apart, from
   /proc/<pid>/task/*/schedstat), so the pair compares the request paths themselves; without
   it a request for an existing name leaves ~10 ms of mail work behind, which would slow
   whatever comes next. `--no-settle` sends back to back. Reported: medians, the paired median
   gap (existing minus missing), Wilcoxon signed-rank and sign test p-values, and how long the
   dispatch took after each kind.
   Then, as a diagnostic without a target, the spill-over itself (`--spill-pairs`): from a
   settled state, a request for an existing or a missing name and at once a timed probe for
   another missing name; the paired gap is what an observer timing their *next* request sees.
3. Slow SMTP. B's slices from step 1 against A's: B's sink takes 2 s per message, so if any
   mail were sent on the request's path p99 would be over 2 s.

Targets, each printed as a PASS or FAIL line:
  throughput  A's requests/s >= half the bare endpoint's;
  timing      |paired median gap| < 1 ms and Wilcoxon p >= 0.05;
  slow SMTP   B's p99 <= max(1.5 x A's p99, A's p99 + 2 ms).

The exit code is 0 whatever the verdicts; 2 when the service fails or answers wrongly (any
answer but 202, or differing bodies); 130/143 when interrupted (everything is stopped and
removed either way).

    .venv/bin/python bench/reset_request.py [--duration S] [--rounds N] [--pairs N] [--no-settle]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

from harness import (
    HarnessError,
    child_pids,
    install_sigterm_exit,
    running_bare_app,
    running_service,
    running_smtp_sink,
)
from loadgen import LoadError, LoadResult, failure_exit, loadavg, run_load, tree_cpu_seconds
from scipy import stats

PATH = "/api/v1/password-resets"
TIMING_USER = "benchuser"  # 9 characters; missing names are drawn with the same length
MIN_PAIRS = 500
GAP_LIMIT_MS = 1.0
ALPHA = 0.05
THROUGHPUT_SHARE = 0.5
SLOW_P99_FACTOR = 1.5
SLOW_P99_SLACK_MS = 2.0
DRAIN_TIMEOUT = 120.0
SETTLE_TIMEOUT = 30.0


class UnexpectedAnswer(RuntimeError):
    """The service answered something other than the promised 202."""


def missing_username() -> str:
    return "u" + secrets.token_hex(4)  # same length as TIMING_USER, never an existing name


class Backlog:
    """Reads a service's SQLite database: what its dispatchers have still to do."""

    def __init__(self, database_url: str) -> None:
        self.path = database_url.removeprefix("sqlite:///")
        self.conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)

    def pending(self) -> tuple[int, int]:
        """(reset requests not yet resolved, mail not yet sent)."""
        requests = self.conn.execute("SELECT count(*) FROM reset_requests WHERE status = 'pending'").fetchone()[0]
        mail = self.conn.execute("SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')").fetchone()[0]
        return requests, mail

    def wait_empty(self, timeout: float, poll: float = 0.02) -> float:
        """Seconds until nothing is pending; raises HarnessError after `timeout`."""
        start = time.perf_counter()
        while self.pending() != (0, 0):
            if time.perf_counter() - start > timeout:
                raise HarnessError(f"dispatcher did not catch up within {timeout:.0f} s: pending {self.pending()}")
            time.sleep(poll)
        return time.perf_counter() - start

    def close(self) -> None:
        self.conn.close()


class Quiet:
    """Says when gunicorn's workers have gone idle: every thread asleep and none has used CPU
    (per /proc/<pid>/task/<tid>/schedstat, in nanoseconds) over `polls` polls in a row."""

    def __init__(self, arbiter_pid: int, polls: int = 3, interval: float = 0.001) -> None:
        self.arbiter_pid = arbiter_pid  # its children, the workers, are read afresh each time
        self.polls = polls
        self.interval = interval

    def _snapshot(self) -> tuple[bool, int]:
        asleep, used = True, 0
        for pid in child_pids(self.arbiter_pid):
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:  # a worker that just ended
                continue
            for tid in tids:
                try:
                    with open(f"/proc/{pid}/task/{tid}/stat") as stat:
                        state = stat.read().rsplit(")", 1)[1].split()[0]
                    with open(f"/proc/{pid}/task/{tid}/schedstat") as schedstat:
                        used += int(schedstat.read().split()[0])
                except OSError:  # a thread that just ended
                    continue
                asleep = asleep and state in ("S", "D", "I")
        return asleep, used

    def wait(self, timeout: float) -> float:
        """Seconds until idle; HarnessError after `timeout`."""
        start = time.perf_counter()
        quiet_polls, last = 0, None
        while quiet_polls < self.polls:
            if time.perf_counter() - start > timeout:
                raise HarnessError(f"the service's processes did not go idle within {timeout:.0f} s")
            time.sleep(self.interval)
            asleep, used = self._snapshot()
            quiet_polls = quiet_polls + 1 if asleep and used == last else 0
            last = used
        return time.perf_counter() - start


class Target:
    """One server under load, and what its slices added up to."""

    def __init__(self, name: str, base_url: str, arbiter_pid: int, backlog: Backlog | None) -> None:
        self.name = name
        self.base_url = base_url
        self.arbiter_pid = arbiter_pid
        self.backlog = backlog
        self.result: LoadResult | None = None
        self.server_cpu = 0.0
        self.drain_s = 0.0
        self.backlog_after: list[tuple[int, int]] = []
        self.loads: list[str] = []


def import_accounts(service, count: int) -> list[str]:
    """`flask users import` of TIMING_USER and `count` accounts, each with an email, no password."""
    names = [f"acct{number:05d}" for number in range(count)]
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as csv:
        csv.write("username,email,password_hash\n")
        for name in [TIMING_USER, *names]:
            csv.write(f"{name},{name}@example.com,\n")
    try:
        output = service.cli("users", "import", csv.name)
    finally:
        os.unlink(csv.name)
    if f"Imported {count + 1} account(s)" not in output:
        raise HarnessError(f"users import did not import every account:\n{output}")
    return names


def body_maker(accounts: list[str], existing_share: float):
    def make() -> bytes:
        name = random.choice(accounts) if random.random() < existing_share else missing_username()
        return json.dumps({"username": name}).encode()
    return make


def run_slice(target: Target, make_body, args, duration: float) -> None:
    before = tree_cpu_seconds(target.arbiter_pid)
    result = run_load(
        target.base_url, PATH, make_body, label=target.name, concurrency=args.concurrency,
        duration=duration, max_requests=args.max_requests, expect_status=202,
    )
    target.server_cpu += tree_cpu_seconds(target.arbiter_pid) - before
    target.result = result if target.result is None else target.result.merge(result)
    target.loads.append(loadavg().split()[0])
    line = f"  {target.name:5} slice: {result.line()}"
    if target.backlog is not None and target.name == "A":
        target.backlog_after.append(target.backlog.pending())
        target.drain_s += target.backlog.wait_empty(DRAIN_TIMEOUT)
        line += f"; backlog {target.backlog_after[-1]} drained in {target.drain_s:.1f} s so far"
    print(line, file=sys.stderr, flush=True)


class PairClient:
    """Times reset requests over one HTTP connection and checks every answer."""

    def __init__(self, base_url: str, backlog: Backlog, quiet: Quiet, settle: bool, pause_s: float) -> None:
        url = urlsplit(base_url)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        self.headers = {"Content-Type": "application/json"}
        self.backlog = backlog
        self.quiet = quiet
        self.settle_enabled = settle
        self.pause_s = pause_s
        self.reference: tuple[int, str, bytes] | None = None
        self.server_closed = 0
        self.requests = 0
        self.last_kind = "missing"
        self.dispatch_ms: dict[str, list[float]] = {"existing": [], "missing": []}

    def settle(self, record: bool = True) -> None:
        """Wait until A's dispatchers have resolved the last request and sent its mail, then
        until A's worker processes are idle (the dispatcher makes one more, empty, pass after
        its last commit), then `pause_s` more."""
        waited = self.backlog.wait_empty(SETTLE_TIMEOUT, poll=0.001)
        if record:
            self.dispatch_ms[self.last_kind].append(1000 * waited)
        self.quiet.wait(SETTLE_TIMEOUT)
        if self.pause_s:
            time.sleep(self.pause_s)

    def request_ns(self, username: str) -> int:
        body = json.dumps({"username": username})
        start = time.perf_counter_ns()
        self.conn.request("POST", PATH, body=body, headers=self.headers)
        response = self.conn.getresponse()
        payload = response.read()
        elapsed = time.perf_counter_ns() - start
        self.requests += 1
        self.server_closed += response.will_close
        kind = "existing" if username == TIMING_USER else "missing"
        self.last_kind = kind
        answer = (response.status, response.getheader("Content-Type", ""), payload)
        if response.status != 202:
            raise UnexpectedAnswer(f"{kind} username {username!r}: {response.status} {payload[:300]!r}")
        if self.reference is None:
            self.reference = answer
        elif answer != self.reference:
            raise UnexpectedAnswer(f"answers differ ({kind} username {username!r}):\n  {self.reference!r}\n  {answer!r}")
        return elapsed

    def timed(self, username: str) -> int:
        if self.settle_enabled:
            self.settle()
        return self.request_ns(username)

    def pair(self) -> tuple[int, int]:
        """(existing ns, missing ns), sent in random order."""
        missing = missing_username()
        self.existing_first = random.random() < 0.5
        if self.existing_first:
            existing_ns = self.timed(TIMING_USER)
            missing_ns = self.timed(missing)
        else:
            missing_ns = self.timed(missing)
            existing_ns = self.timed(TIMING_USER)
        return existing_ns, missing_ns

    def spill_pair(self) -> tuple[int, int]:
        """(probe after existing ns, probe after missing ns): from a settled state, a request for
        an existing or a missing name, then at once a timed probe for another missing name."""
        times = {}
        for kind in random.sample(["existing", "missing"], 2):
            self.settle(record=False)
            self.request_ns(TIMING_USER if kind == "existing" else missing_username())
            times[kind] = self.request_ns(missing_username())
        return times["existing"], times["missing"]

    def close(self) -> None:
        self.conn.close()


def paired_stats(a_ns: list[int], b_ns: list[int]) -> dict[str, float]:
    diffs_ms = [(a - b) / 1e6 for a, b in zip(a_ns, b_ns, strict=False)]
    slower = sum(d > 0 for d in diffs_ms)
    faster = sum(d < 0 for d in diffs_ms)
    return {
        "n": len(diffs_ms),
        "gap": statistics.median(diffs_ms),
        "mean": statistics.fmean(diffs_ms),
        "wilcoxon_p": stats.wilcoxon(diffs_ms).pvalue,
        "sign_p": stats.binomtest(slower, slower + faster, 0.5).pvalue,
        "slower": slower,
        "faster": faster,
    }


def quartiles_ms(values_ns: list[int]) -> tuple[float, float, float]:
    q1, q2, q3 = statistics.quantiles(values_ns, n=4)
    return q1 / 1e6, q2 / 1e6, q3 / 1e6


def verdict(passed: bool, name: str, detail: str) -> str:
    return f"{name:22} {'PASS' if passed else 'FAIL'}: {detail}"


def report_throughput(targets: dict[str, Target], args) -> list[str]:
    print(f"\n1. throughput: POST {PATH}, {args.concurrency} closed-loop clients, "
          f"{args.duration:g} s per target in {args.rounds} slices, "
          f"{100 * args.existing_share:.0f}% existing usernames (of {args.accounts}, all with email)")
    print(f"{'target':40} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'gunicorn CPU/req':>17} {'load':>12}")
    labels = {
        "A": "A  service, fast SMTP sink",
        "bare": "bare Flask SELECT + INSERT",
        "B": "B  service, SMTP sink 2 s/message",
        "C": "C  service, dispatch external, none run",
    }
    for key in targets:
        target = targets[key]
        result = target.result
        cpu_ms = 1000 * target.server_cpu / result.count
        print(f"{labels[key]:40} {result.rps:8.1f} {result.p50_ms:8.2f} {result.p99_ms:8.2f} "
              f"{cpu_ms:14.2f} ms {'/'.join(target.loads):>12}")
    a, bare, b = targets["A"].result, targets["bare"].result, targets["B"].result
    sustained = a.count / (a.elapsed_s + targets["A"].drain_s)
    print(f"A incl. background: {a.count} requests answered in {a.elapsed_s:.1f} s, their dispatching "
          f"finished {targets['A'].drain_s:.1f} s later (backlog at slice ends, requests/mail: "
          f"{', '.join(map(str, targets['A'].backlog_after))}): {sustained:.1f} req/s sustained")
    print(f"keep-alive: A: {a.connection_note()}")
    print(f"            bare: {bare.connection_note()}")
    print(f"            B: {b.connection_note()}")
    results = [target.result for target in targets.values()]
    print(f"client (this process) CPU: {100 * sum(r.client_cpu_s for r in results) / sum(r.elapsed_s for r in results):.0f}% "
          "of a core while loading; it shares the machine's cores with the servers")
    if "C" in targets:
        c = targets["C"]
        print(f"C is A without its dispatcher threads (requests only recorded, never resolved): the request "
              f"path alone, {1000 * c.server_cpu / c.result.count:.2f} ms CPU/req against A's "
              f"{1000 * targets['A'].server_cpu / a.count:.2f} ms")
    share = a.rps / bare.rps
    return [verdict(share >= THROUGHPUT_SHARE, "throughput",
                    f"reset {a.rps:.1f} req/s = {100 * share:.0f}% of bare {bare.rps:.1f} req/s "
                    f"(target >= {100 * THROUGHPUT_SHARE:.0f}%)")]


def report_timing(existing_ns: list[int], missing_ns: list[int], spill: tuple[list[int], list[int]],
                  client: PairClient, args) -> list[str]:
    result = paired_stats(existing_ns, missing_ns)
    n = result["n"]
    mode = ("settled: each timed request sent once A's dispatchers had finished and its workers were idle"
            + (f" (+{args.settle_pause_ms:g} ms)" if args.settle_pause_ms else "")
            if args.settle else "back to back: background work of one request may overlap the next")
    print(f"\n2. timing: {n} interleaved pairs on A, one http.client connection, {mode}")
    if client.server_closed:
        print(f"connection:            server closed it after {client.server_closed}/{client.requests} answers; "
              "http.client reconnected each time")
    for name, values in (("existing (email)", existing_ns), ("missing username", missing_ns)):
        q1, median, q3 = quartiles_ms(values)
        print(f"{name + ':':22} median {median:8.3f} ms   (IQR {q1:.3f} .. {q3:.3f} ms)")
    print(f"paired median gap:     {result['gap']:+8.3f} ms   (existing minus missing; mean {result['mean']:+.3f} ms)")
    print(f"Wilcoxon signed-rank:  p = {result['wilcoxon_p']:.4f}")
    print(f"sign test:             p = {result['sign_p']:.4f}   (existing slower in {result['slower']}/{n} pairs, "
          f"faster in {result['faster']})")
    for kind in ("existing", "missing"):
        values = sorted(client.dispatch_ms[kind])
        if values:
            print(f"dispatch after {kind + ':':9} median {statistics.median(values):7.2f} ms, p99 "
                  f"{values[int(0.99 * (len(values) - 1))]:7.2f} ms from the answer until resolved and mail sent")
    after_e, after_m = spill
    if after_e:
        spilled = paired_stats(after_e, after_m)
        print(f"spill-over (no target): {spilled['n']} pairs of a request for an existing or a missing name, "
              f"then at once a timed probe for a missing name")
        print(f"  probe after existing median {statistics.median(after_e) / 1e6:.3f} ms, after missing "
              f"{statistics.median(after_m) / 1e6:.3f} ms; paired gap {spilled['gap']:+.3f} ms "
              f"(mean {spilled['mean']:+.3f}), Wilcoxon p = {spilled['wilcoxon_p']:.4f}, "
              f"sign p = {spilled['sign_p']:.4f}")
    reasons = []
    if abs(result["gap"]) >= GAP_LIMIT_MS:
        reasons.append(f"|gap| {abs(result['gap']):.3f} ms >= {GAP_LIMIT_MS} ms")
    if result["wilcoxon_p"] < ALPHA:
        reasons.append(f"Wilcoxon p {result['wilcoxon_p']:.4f} < {ALPHA}")
    detail = (f"gap {result['gap']:+.3f} ms, Wilcoxon p {result['wilcoxon_p']:.4f}, sign p {result['sign_p']:.4f}"
              + ("" if not reasons else " (" + "; ".join(reasons) + ")"))
    return [verdict(not reasons, "timing", detail)]


def report_slow(targets: dict[str, Target], slow_sink, fast_sink) -> list[str]:
    a, b = targets["A"].result, targets["B"].result
    limit = max(SLOW_P99_FACTOR * a.p99_ms, a.p99_ms + SLOW_P99_SLACK_MS)
    print(f"\n3. slow SMTP: B's sink held each message {slow_sink.delay:g} s")
    print(f"p99 with fast SMTP (A): {a.p99_ms:8.2f} ms   p50 {a.p50_ms:.2f} ms   max {a.percentile_ms(100):.2f} ms")
    print(f"p99 with slow SMTP (B): {b.p99_ms:8.2f} ms   p50 {b.p50_ms:.2f} ms   max {b.percentile_ms(100):.2f} ms")
    backlog = targets["B"].backlog.pending()
    print(f"mail: A's sink received {fast_sink.count()} messages; B's sink {slow_sink.count()} "
          f"while B answered {b.count} requests; B's backlog at the end: {backlog[0]} unresolved "
          f"requests, {backlog[1]} queued messages")
    return [verdict(b.p99_ms <= limit, "slow SMTP p99",
                    f"{b.p99_ms:.2f} ms vs {a.p99_ms:.2f} ms with fast SMTP (limit {limit:.2f} ms)")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per server (default 2)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per target (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="slices per target, in rotating order (default 2)")
    parser.add_argument("--max-requests", type=int, default=20_000, help="cap per slice (default 20000)")
    parser.add_argument("--warmup", type=float, default=1.0, help="untimed seconds per target first (default 1)")
    parser.add_argument("--accounts", type=int, default=100, help="imported accounts with email (default 100)")
    parser.add_argument("--existing-share", type=float, default=0.5, help="share of load for existing names (default 0.5)")
    parser.add_argument("--pairs", type=int, default=500, help=f"timed pairs (at least {MIN_PAIRS}; default 500)")
    parser.add_argument("--settle", action=argparse.BooleanOptionalAction, default=True,
                        help="wait for the dispatchers before each timed request (default: yes)")
    parser.add_argument("--quiet-polls", type=int, default=3,
                        help="settled means A's workers used no CPU over this many 1 ms polls (default 3)")
    parser.add_argument("--settle-pause-ms", type=float, default=0.0,
                        help="and then this long more (default 0)")
    parser.add_argument("--spill-pairs", type=int, default=300,
                        help="pairs for the spill-over diagnostic, 0 to skip (default 300)")
    parser.add_argument("--slow-delay", type=float, default=2.0, help="B's SMTP delay per message (default 2 s)")
    parser.add_argument("--raw", metavar="FILE", help="also write every timing to FILE as JSON")
    parser.add_argument("--external-baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="also load C, the service with OUTBOX_DISPATCH=external and no outbox worker (default: yes)")
    args = parser.parse_args()
    if args.pairs < MIN_PAIRS:
        parser.error(f"--pairs must be at least {MIN_PAIRS}")

    install_sigterm_exit()
    print(f"machine: nproc {os.cpu_count()}, Python {platform.python_version()}, load average {loadavg()} at start")
    verdicts: list[str] = []
    try:
        with ExitStack() as stack:
            fast_sink = stack.enter_context(running_smtp_sink(0.0))
            slow_sink = stack.enter_context(running_smtp_sink(args.slow_delay))
            common = {"OUTBOX_DISPATCH": "inline", "RATELIMIT_ENABLED": "false"}
            service_a = stack.enter_context(running_service(args.workers, {**common, **fast_sink.env()}))
            service_b = stack.enter_context(running_service(args.workers, {**common, **slow_sink.env()}))
            bare = stack.enter_context(running_bare_app(args.workers))
            if args.external_baseline:
                external = {**common, **fast_sink.env(), "OUTBOX_DISPATCH": "external"}
                service_c = stack.enter_context(running_service(args.workers, external))
            accounts = import_accounts(service_a, args.accounts)
            import_accounts(service_b, args.accounts)
            backlog_a = Backlog(service_a.env["DATABASE_URL"])
            stack.callback(backlog_a.close)
            backlog_b = Backlog(service_b.env["DATABASE_URL"])
            stack.callback(backlog_b.close)
            targets = {
                "A": Target("A", service_a.base_url, service_a.process.pid, backlog_a),
                "bare": Target("bare", bare.base_url, bare.process.pid, None),
                "B": Target("B", service_b.base_url, service_b.process.pid, backlog_b),
            }
            if args.external_baseline:
                targets["C"] = Target("C", service_c.base_url, service_c.process.pid, None)
            make_body = body_maker(accounts, args.existing_share)
            print(f"warm-up and {args.rounds} rounds of load ...", file=sys.stderr, flush=True)
            for target in targets.values():
                run_load(target.base_url, PATH, make_body, label=target.name, concurrency=args.concurrency,
                         duration=args.warmup, expect_status=202)
            backlog_a.wait_empty(DRAIN_TIMEOUT)
            order = list(targets)
            slice_s = args.duration / args.rounds
            for round_number in range(args.rounds):
                shift = round_number % len(order)
                for key in order[shift:] + order[:shift]:
                    run_slice(targets[key], make_body, args, slice_s)
            # gunicorn.conf.py's max_requests (10000 + up to 1000 jitter) restarts a worker mid-run.
            servers = [("A", service_a), ("B", service_b), ("bare", bare)]
            if args.external_baseline:
                servers.append(("C", service_c))
            restarts = {name: svc.log_count("Autorestarting worker") for name, svc in servers}
            verdicts += report_throughput(targets, args)
            if any(restarts.values()):
                print(f"note: gunicorn restarted workers (max_requests in gunicorn.conf.py) during the run: "
                      f"{restarts}; CPU figures include the old and the new workers")

            print(f"\ntiming pairs ({args.pairs}) ...", file=sys.stderr, flush=True)
            backlog_a.wait_empty(DRAIN_TIMEOUT)
            quiet = Quiet(service_a.process.pid, polls=args.quiet_polls)
            client = PairClient(service_a.base_url, backlog_a, quiet, args.settle, args.settle_pause_ms / 1000)
            try:
                for _ in range(20):  # warm-up
                    client.pair()
                client.server_closed = client.requests = 0
                client.dispatch_ms = {"existing": [], "missing": []}
                existing_ns, missing_ns, existing_first = [], [], []
                for i in range(args.pairs):
                    existing, missing = client.pair()
                    existing_ns.append(existing)
                    missing_ns.append(missing)
                    existing_first.append(client.existing_first)
                    if (i + 1) % 100 == 0:
                        print(f"  {i + 1}/{args.pairs} pairs", file=sys.stderr, flush=True)
                after_e, after_m = [], []
                for i in range(args.spill_pairs):
                    e, m = client.spill_pair()
                    after_e.append(e)
                    after_m.append(m)
                    if (i + 1) % 100 == 0:
                        print(f"  {i + 1}/{args.spill_pairs} spill-over pairs", file=sys.stderr, flush=True)
            finally:
                client.close()
            verdicts += report_timing(existing_ns, missing_ns, (after_e, after_m), client, args)
            if args.raw:
                Path(args.raw).write_text(json.dumps({
                    "existing_ns": existing_ns, "missing_ns": missing_ns, "existing_first": existing_first,
                    "probe_after_existing_ns": after_e, "probe_after_missing_ns": after_m,
                    "latencies_ns": {key: target.result.latencies_ns for key, target in targets.items()},
                }))
            verdicts += report_slow(targets, slow_sink, fast_sink)
            print(f"\nload average at the end: {loadavg()}")
            print("\n" + "\n".join(verdicts))
    except (HarnessError, LoadError, UnexpectedAnswer, OSError, http.client.HTTPException, sqlite3.Error,
            KeyboardInterrupt) as error:
        return failure_exit(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
