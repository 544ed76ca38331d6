"""A small closed-loop HTTP/1.1 load generator for the benchmarks (asyncio, raw sockets).

`run_load` keeps `concurrency` clients busy, each sending its next request as soon as its last
answer is read, until `duration` seconds have passed or `max_requests` were sent, whichever is
first. Each client asks for keep-alive and keeps its connection while the server allows it; when
the server answers `Connection: close` (gunicorn's sync workers always do) or drops the
connection, the client reconnects for the next request and the result counts it. A request's
latency runs from the moment the client starts on it (connecting first, when it has to) to the
last byte of the answer, so the reconnect is part of the latency, as it is for a real client.

Raw sockets rather than http.client threads: the client shares the machine's cores with the
server, so it should cost little per request. The result says how much CPU it used.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np


class LoadError(RuntimeError):
    """The server answered something unexpected, or could not be reached."""


@dataclass
class LoadResult:
    """What one load run did."""

    label: str
    concurrency: int
    elapsed_s: float = 0.0
    latencies_ns: list[int] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    connects: int = 0  # TCP connections opened
    server_closed: int = 0  # answers that ended with the server closing the connection
    stale_retries: int = 0  # kept connections found closed when reused, request retried
    client_cpu_s: float = 0.0
    unexpected: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.latencies_ns)

    @property
    def rps(self) -> float:
        return self.count / self.elapsed_s if self.elapsed_s else 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.latencies_ns, dtype=np.float64), q)) / 1e6

    @property
    def p50_ms(self) -> float:
        return self.percentile_ms(50)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(99)

    def merge(self, other: LoadResult) -> LoadResult:
        """Two runs of the same thing as one (e.g. slices taken in turns)."""
        merged = LoadResult(self.label, self.concurrency)
        for part in (self, other):
            merged.elapsed_s += part.elapsed_s
            merged.latencies_ns += part.latencies_ns
            merged.statuses += part.statuses
            merged.connects += part.connects
            merged.server_closed += part.server_closed
            merged.stale_retries += part.stale_retries
            merged.client_cpu_s += part.client_cpu_s
            merged.unexpected += part.unexpected
        return merged

    def connection_note(self) -> str:
        if self.count and self.server_closed >= self.count:
            return (f"server closed every connection after its answer ({self.server_closed}/{self.count}; "
                    f"{self.connects} TCP connects): no keep-alive")
        return (f"{self.connects} TCP connects for {self.count} requests, server closed "
                f"{self.server_closed}, {self.stale_retries} stale keep-alive retries")

    def line(self) -> str:
        return (f"{self.count:6d} req in {self.elapsed_s:5.1f} s = {self.rps:7.1f} req/s   "
                f"p50 {self.p50_ms:7.2f} ms   p99 {self.p99_ms:7.2f} ms   "
                f"(client CPU {100 * self.client_cpu_s / self.elapsed_s:.0f}% of a core)")


def build_request(host: str, port: int, method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: keep-alive",
             f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Connection:
    def __init__(self) -> None:
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _exchange(conn: _Connection, host: str, port: int, request: bytes, result: LoadResult) -> tuple[int, bytes, bool]:
    """Send one request, read one answer: (status, body, server closes)."""
    reused = conn.writer is not None
    for attempt in (1, 2):
        if conn.writer is None:
            conn.reader, conn.writer = await asyncio.open_connection(host, port)
            result.connects += 1
        try:
            conn.writer.write(request)
            head = await conn.reader.readuntil(b"\r\n\r\n")
        except (ConnectionError, asyncio.IncompleteReadError):
            conn.close()
            if reused and attempt == 1:  # the server dropped a kept connection: retry once, fresh
                result.stale_retries += 1
                continue
            raise
        break
    lines = head.decode("latin-1").split("\r\n")
    version, status_text = lines[0].split(" ", 2)[:2]
    length = 0
    closes = version == "HTTP/1.0"
    for header in lines[1:]:
        name, _, value = header.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection":
            closes = value.strip().lower() == "close"
    body = await conn.reader.readexactly(length) if length else b""
    if closes:
        conn.close()
    return int(status_text), body, closes


async def _run(
    base_url: str,
    method: str,
    path: str,
    make_body: Callable[[], bytes],
    headers: dict[str, str],
    concurrency: int,
    duration: float,
    max_requests: int,
    expect_status: int,
    result: LoadResult,
    record: bool,
) -> None:
    url = urlsplit(base_url)
    host, port = url.hostname, url.port
    sent = 0
    deadline = time.perf_counter() + duration

    async def client() -> None:
        nonlocal sent
        conn = _Connection()
        try:
            while time.perf_counter() < deadline and sent < max_requests:
                sent += 1
                request = build_request(host, port, method, path, make_body(), headers)
                start = time.perf_counter_ns()
                status, body, closes = await _exchange(conn, host, port, request, result)
                elapsed = time.perf_counter_ns() - start
                if not record:
                    continue
                result.latencies_ns.append(elapsed)
                result.statuses[status] += 1
                result.server_closed += closes
                if status != expect_status and len(result.unexpected) < 5:
                    result.unexpected.append(f"{status} {body[:200]!r}")
        finally:
            conn.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))


def run_load(
    base_url: str,
    path: str,
    make_body: Callable[[], bytes],
    *,
    label: str,
    headers: dict[str, str] | None = None,
    method: str = "POST",
    concurrency: int = 8,
    duration: float = 10.0,
    max_requests: int = 20_000,
    expect_status: int = 202,
    warmup: float = 0.0,
) -> LoadResult:
    """Closed-loop load: `concurrency` clients for `duration` s or `max_requests` requests.

    Raises LoadError when any answer's status is not `expect_status`."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    result = LoadResult(label, concurrency)
    try:
        if warmup > 0:
            asyncio.run(_run(base_url, method, path, make_body, all_headers, concurrency, warmup,
                             max_requests, expect_status, LoadResult(label, concurrency), record=False))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        asyncio.run(_run(base_url, method, path, make_body, all_headers, concurrency, duration,
                         max_requests, expect_status, result, record=True))
        result.elapsed_s = time.perf_counter() - wall0
        result.client_cpu_s = time.process_time() - cpu0
    except (OSError, asyncio.IncompleteReadError, ValueError) as error:
        raise LoadError(f"{label}: {type(error).__name__}: {error}") from error
    if result.unexpected:
        raise LoadError(f"{label}: unexpected answers {dict(result.statuses)}: {result.unexpected}")
    return result


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes (all their threads), from /proc."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(parent_pid: int) -> float:
    """CPU of a process, of its live children, and of its children that have ended and been
    waited for (cutime + cstime): for gunicorn, the arbiter and every worker it ever had, so a
    worker restarted by max_requests mid-run does not take its CPU figures away with it."""
    try:
        with open(f"/proc/{parent_pid}/stat") as file:
            fields = file.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{parent_pid}/task/{parent_pid}/children") as file:
            children = [int(pid) for pid in file.read().split()]
    except OSError:
        return 0.0
    own = sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return own + cpu_seconds(children)


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, as /proc/loadavg says."""
    try:
        with open("/proc/loadavg") as file:
            return " ".join(file.read().split()[:3])
    except OSError:
        return "?"


def failure_exit(error: BaseException, cleaned_up: str = "servers stopped") -> int:
    """Say why a benchmark stopped, and its exit code: 130 after Ctrl-C (`cleaned_up` says what
    was put away), else 2 (the service, the load or the set-up failed)."""
    if isinstance(error, KeyboardInterrupt):
        print(f"interrupted; {cleaned_up}", file=sys.stderr)
        return 130
    print(f"error: {error}", *getattr(error, "__notes__", []), sep="\n", file=sys.stderr)
    return 2


def run_and_print(args: Any, measure: Callable[[], dict[str, Any]], report: Callable[[dict[str, Any], Any], None],
                  errors: tuple[type[BaseException], ...] = ()) -> int:
    """The common end of a benchmark script's main(): measure, then print JSON (`--json`) or the
    report and the load average; 2 on a failure of the service or the load, 130 on Ctrl-C."""
    try:
        figures = measure()
    except (LoadError, OSError, KeyboardInterrupt, *errors) as error:
        return failure_exit(error)
    if args.json:
        print(json.dumps(figures))
    else:
        report(figures, args)
        print(f"\nload average at the end: {loadavg()}")
    return 0
