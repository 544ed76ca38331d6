"""Does POST /api/v1/auth/verify take the same time for existing and missing usernames?

The contract promises that timing cannot reveal which usernames exist: a wrong password for an
existing account and any password for a missing username must both answer 401
`invalid_credentials`, with the same body, at the same cost (for a missing name the service checks
the password against a dummy argon2id hash with the same parameters, through the same calls).

This script starts the real service under gunicorn on a fresh SQLite database (bench/harness.py),
creates one account, then sends interleaved pairs of requests over one http.client connection:
each pair is one wrong password for the existing user and one request for a fresh random
missing username, in random order. Pairing cancels slow drift (CPU frequency, other load), so
the test is on the per-pair differences (existing minus missing): their median, a Wilcoxon
signed-rank test, and a sign test and paired t-test as second opinions.

With `--legacy-scheme SCHEME` (md5_crypt, bcrypt, ...) the account is not created by the
service but imported with `flask --app wsgi users import` from a CSV whose password_hash is
passlib's SCHEME.hash(password) (`--legacy-rounds N` sets the scheme's cost: bcrypt's log2
rounds, pbkdf2's iterations), as a shop's older system would hand it over. The import keeps it
wrapped in argon2id; a wrong password never upgrades it (only a successful sign-in does), so
every timed request for the account recomputes the legacy digest, and every request for a
missing name does the same legacy work on a stand-in (service/accounts/legacy.py).

Verdict: PASS when |median gap| < 1 ms and the Wilcoxon p-value >= 0.05, else FAIL. The exit
code is 0 either way; it is 2 when the service fails or answers something unexpected.

    .venv/bin/python bench/verify_timing.py [--pairs N] [--workers W] [--legacy-scheme md5_crypt [--legacy-rounds N]]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from harness import HarnessError, running_service
from passlib import hash as passlib_hash
from scipy import stats

USERNAME = "benchuser"  # 9 characters; missing names are drawn with the same length
PASSWORD = "correct horse battery staple"
PATH = "/api/v1/auth/verify"
MIN_PAIRS = 300
GAP_LIMIT_MS = 1.0
ALPHA = 0.05


class UnexpectedAnswer(RuntimeError):
    """The service answered something other than the promised 401."""


class PairedClient:
    """Times one kind of call over one HTTP connection, for an existing name and a missing one,
    and checks that every answer is the expected refusal with the very same body."""

    def __init__(self, base_url: str, path: str, status: int, code: str, headers: dict[str, str] | None = None) -> None:
        url = urlsplit(base_url)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        self.path, self.status, self.code = path, status, code
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.reference_body: bytes | None = None
        self.server_closed = 0  # answers after which the server closed the connection

    def attempt_ns(self, username: str) -> int:
        """Nanoseconds for one call naming `username`; each script says what it sends."""
        raise NotImplementedError

    def post_ns(self, username: str, body: dict[str, str]) -> int:
        start = time.perf_counter_ns()
        self.conn.request("POST", self.path, body=json.dumps(body), headers=self.headers)
        response = self.conn.getresponse()
        payload = response.read()
        elapsed = time.perf_counter_ns() - start
        self.server_closed += response.will_close
        self.check(username, response, payload)
        return elapsed

    def check(self, username: str, response: http.client.HTTPResponse, payload: bytes) -> None:
        kind = "existing" if username == USERNAME else "missing"
        if response.status != self.status or json.loads(payload or b"{}").get("code") != self.code:
            raise UnexpectedAnswer(f"{kind} username {username!r}: {response.status} {payload[:300]!r}")
        if self.reference_body is None:
            self.reference_body = payload
        elif payload != self.reference_body:
            raise UnexpectedAnswer(
                f"bodies differ ({kind} username {username!r}):\n"
                f"  {self.reference_body!r}\n  {payload!r}"
            )

    def pair(self, missing: str) -> tuple[int, int]:
        """(existing ns, missing ns), sent in random order."""
        if random.random() < 0.5:
            existing_ns = self.attempt_ns(USERNAME)
            missing_ns = self.attempt_ns(missing)
        else:
            missing_ns = self.attempt_ns(missing)
            existing_ns = self.attempt_ns(USERNAME)
        return existing_ns, missing_ns

    def close(self) -> None:
        self.conn.close()


class Client(PairedClient):
    """Sign-in attempts with a random wrong password: 401 `invalid_credentials` for every name."""

    def __init__(self, base_url: str, api_key: str) -> None:
        super().__init__(base_url, PATH, 401, "invalid_credentials", {"Authorization": f"Bearer {api_key}"})

    def attempt_ns(self, username: str) -> int:
        return self.post_ns(username, {"username": username, "password": secrets.token_urlsafe(18)})


def create_user(service, legacy_scheme: str | None, legacy_rounds: int | None = None) -> str:
    """Create USERNAME through the service, or import it with a legacy hash; describe how."""
    if legacy_scheme is None:
        service.cli("users", "create", USERNAME, "bench@example.com", "--password-stdin", stdin=PASSWORD + "\n")
        return "created by the service (argon2id)"
    hasher = getattr(passlib_hash, legacy_scheme)
    if legacy_rounds is not None:
        hasher = hasher.using(rounds=legacy_rounds)
    legacy_hash = hasher.hash(PASSWORD)
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as csv:
        csv.write(f"username,email,password_hash\n{USERNAME},bench@example.com,{legacy_hash}\n")
    try:
        output = service.cli("users", "import", csv.name)
    finally:
        os.unlink(csv.name)
    if "Imported 1 account(s)" not in output:
        raise HarnessError(f"users import refused the {legacy_scheme} hash:\n{output}")
    rounds = getattr(hasher.from_string(legacy_hash), "rounds", None)
    return (f"imported with a {legacy_scheme} hash ({legacy_hash[:7]}..., rounds {rounds}), never upgraded: "
            "every password tried is wrong")


def timed_pairs(client: Any, pairs: int, warmup: int) -> tuple[list[int], list[int]]:
    """`warmup` untimed pairs (each worker builds its dummy hash, opens the database, fills
    caches), then `pairs` timed ones from `client.pair(missing name)`: (existing ns, missing ns)."""
    for _ in range(warmup):
        client.pair(missing_username())
    client.server_closed = 0
    existing_ns, missing_ns = [], []
    for i in range(pairs):
        existing, missing = client.pair(missing_username())
        existing_ns.append(existing)
        missing_ns.append(missing)
        if (i + 1) % 100 == 0:
            print(f"  {i + 1}/{pairs} pairs", file=sys.stderr)
    return existing_ns, missing_ns


def missing_username() -> str:
    return "u" + secrets.token_hex(4)  # same length as USERNAME, never an existing name


def quartiles_ms(values_ns: list[int]) -> tuple[float, float, float]:
    q1, q2, q3 = statistics.quantiles(values_ns, n=4)
    return q1 / 1e6, q2 / 1e6, q3 / 1e6


def report(existing_ns: list[int], missing_ns: list[int], workers: int, server_closed: int, account: str,
           existing_label: str = "existing, wrong pw") -> None:
    diffs_ms = [(e - m) / 1e6 for e, m in zip(existing_ns, missing_ns, strict=False)]
    gap = statistics.median(diffs_ms)
    wilcoxon_p = stats.wilcoxon(diffs_ms).pvalue
    slower = sum(d > 0 for d in diffs_ms)
    faster = sum(d < 0 for d in diffs_ms)
    sign_p = stats.binomtest(slower, slower + faster, 0.5).pvalue
    ttest = stats.ttest_rel(existing_ns, missing_ns)
    n = len(diffs_ms)
    total = 2 * n

    print(f"pairs:                 {n} (gunicorn -w {workers}, {total} timed requests)")
    print(f"account:               {USERNAME}, {account}")
    if server_closed:
        print(f"connection:            server closed it after {server_closed}/{total} answers "
              "(gunicorn sync workers do not keep alive); http.client reconnected each time")
    for name, values in ((existing_label, existing_ns), ("missing username", missing_ns)):
        q1, median, q3 = quartiles_ms(values)
        print(f"{name + ':':22} median {median:8.3f} ms   (IQR {q1:.3f} .. {q3:.3f} ms)")
    print(f"paired median gap:     {gap:+8.3f} ms   (existing minus missing; mean {statistics.fmean(diffs_ms):+.3f} ms)")
    print(f"Wilcoxon signed-rank:  p = {wilcoxon_p:.4f}")
    print(f"sign test:             p = {sign_p:.4f}   (existing slower in {slower}/{n} pairs, faster in {faster})")
    print(f"paired t-test:         p = {ttest.pvalue:.4f}   (t = {ttest.statistic:+.2f})")
    passed = abs(gap) < GAP_LIMIT_MS and wilcoxon_p >= ALPHA
    reasons = []
    if abs(gap) >= GAP_LIMIT_MS:
        reasons.append(f"|gap| {abs(gap):.3f} ms >= {GAP_LIMIT_MS} ms")
    if wilcoxon_p < ALPHA:
        reasons.append(f"Wilcoxon p {wilcoxon_p:.4f} < {ALPHA}")
    print(
        "verdict:               "
        + ("PASS: timing does not tell existing from missing usernames" if passed else "FAIL: " + "; ".join(reasons))
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=500, help=f"timed pairs (at least {MIN_PAIRS}; default 500)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed pairs first (default 20)")
    parser.add_argument("--legacy-scheme", metavar="SCHEME", default=None,
                        help="import the account with passlib's SCHEME hash (md5_crypt, bcrypt, ...) "
                             "through `flask users import` instead of creating it")
    parser.add_argument("--legacy-rounds", metavar="N", type=int, default=None,
                        help="the legacy scheme's cost (bcrypt: log2 rounds, pbkdf2: iterations); passlib's default if unset")
    args = parser.parse_args()
    if args.pairs < MIN_PAIRS:
        parser.error(f"--pairs must be at least {MIN_PAIRS} for the tests to mean anything")
    if args.legacy_scheme is not None and not hasattr(getattr(passlib_hash, args.legacy_scheme, None), "hash"):
        parser.error(f"--legacy-scheme: passlib has no hash scheme {args.legacy_scheme!r}")
    if args.legacy_rounds is not None and args.legacy_scheme is None:
        parser.error("--legacy-rounds needs --legacy-scheme")

    def measure() -> None:
        with running_service(workers=args.workers) as service:
            account = create_user(service, args.legacy_scheme, args.legacy_rounds)
            client = Client(service.base_url, service.api_key)
            try:
                existing_ns, missing_ns = timed_pairs(client, args.pairs, args.warmup)
            finally:
                client.close()
            report(existing_ns, missing_ns, args.workers, client.server_closed, account)

    return run_timing(measure)


def run_timing(measure: Callable[[], None]) -> int:
    """Run a timing script's measurement with the exit codes they promise: 0 after a complete
    run, 2 when the service fails or answers something unexpected, 130 when interrupted (143 by
    a plain `kill`, which cleans up as Ctrl-C does: SystemExit unwinds through the harness)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        measure()
    except (HarnessError, UnexpectedAnswer, OSError, http.client.HTTPException) as error:
        print(f"error: {error}", *getattr(error, "__notes__", []), sep="\n", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; service stopped", file=sys.stderr)
        return 130
    return 0

if __name__ == "__main__":
    sys.exit(main())
