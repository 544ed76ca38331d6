"""Breached passwords: Have I Been Pwned's Pwned Passwords range API, asked with k-anonymity.

Only the first 5 hex characters of the password's SHA-1 leave the service (one in about a
million hashes shares them); the API answers every hash suffix it holds under that prefix,
padded with made-up ones of count 0 (`Add-Padding: true`) so not even the answer's size tells
anything, and the match is made here. The password, its hash and the account never leave.

The check fails open: an API that is slow, down or answers oddly (a redirect included, which
is never followed) lets the password through (the shipped list of common passwords still
applies), and each outcome is counted in `resetdesk_pwned_password_checks_total`. Plain
urllib does the asking, as for webhooks: one GET needs no client library.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import re
import threading
import urllib.error
import urllib.request
from enum import StrEnum

from service.platform.counters import count

log = logging.getLogger(__name__)

# A padded range is about 40 KB; anything far larger is not a range.
MAX_ANSWER_BYTES = 512 * 1024
RANGE_LINE = re.compile(r"([0-9A-F]{35}):(\d+)")


class CheckOutcome(StrEnum):
    """How one check ended; the last three let the password through."""

    BREACHED = "breached"
    NOT_BREACHED = "not_breached"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    BAD_ANSWER = "bad_answer"


def sha1_hex(password: str) -> str:
    """The uppercase hex SHA-1 of a password's UTF-8, as the range API lists them."""
    return hashlib.sha1(password.encode("utf-8"), usedforsecurity=False).hexdigest().upper()


class RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx is not followed: urllib then raises it as an HTTPError, a bad answer. The range
    is asked of the configured API only, never of wherever an answer points."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


OPENER = urllib.request.build_opener(RefuseRedirects)


def _get(url: str, timeout: float) -> tuple[CheckOutcome | None, bytes]:
    request = urllib.request.Request(url, headers={"Add-Padding": "true", "User-Agent": "resetdesk"})
    try:
        with OPENER.open(request, timeout=timeout) as response:
            if response.status != 200:
                return CheckOutcome.BAD_ANSWER, b""
            body: bytes = response.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError:  # a 3xx, 4xx or 5xx answer (before URLError: it is one)
        return CheckOutcome.BAD_ANSWER, b""
    except TimeoutError:
        return CheckOutcome.TIMEOUT, b""
    except urllib.error.URLError as error:
        timed_out = isinstance(error.reason, TimeoutError)
        return (CheckOutcome.TIMEOUT if timed_out else CheckOutcome.UNREACHABLE), b""
    except (OSError, http.client.HTTPException):
        return CheckOutcome.UNREACHABLE, b""
    if len(body) > MAX_ANSWER_BYTES:
        return CheckOutcome.BAD_ANSWER, b""
    return None, body


def fetch_range(url: str, timeout: float) -> tuple[CheckOutcome | None, bytes]:
    """GET one range: `(None, body)` for a 200, else how it failed. Waits `timeout` seconds at
    most in all: the socket's timeout does not cover a slow name lookup or an answer that
    trickles in, so a thread does the asking and is left behind when it is late."""
    answers: list[tuple[CheckOutcome | None, bytes]] = []
    asker = threading.Thread(target=lambda: answers.append(_get(url, timeout)), name="pwned-range", daemon=True)
    asker.start()
    asker.join(timeout)
    return answers[0] if answers else (CheckOutcome.TIMEOUT, b"")


def times_breached(body: bytes, suffix: str) -> int | None:
    """How often the range says the hash with `suffix` was seen (0: not, or only as padding);
    None when the body is no range."""
    try:
        lines = [line.strip() for line in body.decode("ascii").splitlines() if line.strip()]
    except UnicodeDecodeError:
        return None
    found = 0
    for line in lines:
        match = RANGE_LINE.fullmatch(line.upper())
        if match is None:
            return None
        if match[1] == suffix:
            found = int(match[2])
    return found if lines else None


def is_breached(password: str, *, url: str, timeout: float) -> bool:
    """Whether the range API at `url` lists `password` (give it in the form it is stored in)
    as seen in a breach. False, asking nobody, when `url` is empty; False, counted, when the
    API cannot say within `timeout` seconds."""
    if not url:
        return False
    digest = sha1_hex(password)
    prefix, suffix = digest[:5], digest[5:]
    failure, body = fetch_range(f"{url}/{prefix}", timeout)
    seen = times_breached(body, suffix) if failure is None else None
    if failure is None and seen is None:
        failure = CheckOutcome.BAD_ANSWER
    if failure is not None:
        # The prefix is left out on purpose: it is 20 bits of the password's hash.
        log.warning("breached-password check let a password through: %s", failure.value)
        count("pwned_checks", failure.value)
        return False
    outcome = CheckOutcome.BREACHED if seen else CheckOutcome.NOT_BREACHED
    count("pwned_checks", outcome.value)
    return outcome == CheckOutcome.BREACHED
