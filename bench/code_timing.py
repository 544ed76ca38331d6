"""Does a wrong reset code take the same time for an account with a reset pending as for a
missing username?

`POST /api/v1/password-resets/confirm` with `{"username", "code", "new_password"}` answers 400
`token_invalid`, with the same body, for a wrong code and for a missing username alike; its
time must not tell them apart either, or anyone could ask for a reset for a name and then
learn from a wrong code whether the name exists.

The script starts the real service under gunicorn on a fresh SQLite database (bench/harness.py;
rate limits off, mail written to the log), creates one account with an email, asks for a reset
for it through the API and waits until the reset is issued, then sends interleaved pairs over
one connection, in random order: a random wrong code for the account, and one for a fresh
random missing username. RESET_CODE_ATTEMPTS is raised so that the reset stays pending through
the run (a wrong code that happens to start like the real one counts against it). The
statistics and the verdict are verify_timing.py's: PASS when |median gap| < 1 ms and the
Wilcoxon p-value >= 0.05. Exit code 0 either way; 2 when the service answers something else.

    .venv/bin/python bench/code_timing.py [--pairs N] [--workers W]
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import sqlite3
import sys
import time
from urllib.parse import urlsplit

from harness import HarnessError, running_service
from verify_timing import MIN_PAIRS, USERNAME, PairedClient, report, run_timing, timed_pairs

PATH = "/api/v1/password-resets/confirm"
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # service/resets/codes.py
NEW_PASSWORD = "a long and unusual new passphrase"


class Client(PairedClient):
    """Random wrong codes: 400 `token_invalid` for every name."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url, PATH, 400, "token_invalid")

    def attempt_ns(self, username: str) -> int:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(10))
        return self.post_ns(username, {"username": username, "code": code, "new_password": NEW_PASSWORD})


def pending_resets(database_url: str) -> int:
    with sqlite3.connect(database_url.removeprefix("sqlite:///")) as connection:
        return connection.execute("SELECT count(*) FROM password_resets WHERE used_at IS NULL AND revoked_at IS NULL").fetchone()[0]


def ask_for_reset(base_url: str, database_url: str) -> None:
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    conn.request("POST", "/api/v1/password-resets", body=json.dumps({"username": USERNAME}),
                 headers={"Content-Type": "application/json"})
    if conn.getresponse().status != 202:
        raise HarnessError("asking for a reset was not accepted")
    conn.close()
    deadline = time.monotonic() + 30
    while pending_resets(database_url) < 1:
        if time.monotonic() > deadline:
            raise HarnessError("no reset was issued within 30 s")
        time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=500, help=f"timed pairs (at least {MIN_PAIRS}; default 500)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed pairs first (default 20)")
    args = parser.parse_args()
    if args.pairs < MIN_PAIRS:
        parser.error(f"--pairs must be at least {MIN_PAIRS} for the tests to mean anything")
    def measure() -> None:
        with running_service(workers=args.workers, extra_env={"RESET_CODE_ATTEMPTS": "1000000"}) as service:
            service.cli("users", "create", USERNAME, "bench@example.com")
            ask_for_reset(service.base_url, service.env["DATABASE_URL"])
            client = Client(service.base_url)
            try:
                existing_ns, missing_ns = timed_pairs(client, args.pairs, args.warmup)
            finally:
                client.close()
            if pending_resets(service.env["DATABASE_URL"]) < 1:
                raise HarnessError("the account's reset did not stay pending through the run")
            report(existing_ns, missing_ns, args.workers, client.server_closed,
                   "with one reset pending, asked for through the API", existing_label="existing, wrong code")

    return run_timing(measure)

if __name__ == "__main__":
    sys.exit(main())
