"""Rate limits and the sign-in throttle live in Redis: shared by every process while it answers,
kept per process in memory while it is gone (looser, never failing, never slow), and back in
Redis when it returns.

Each app runs in a process of its own, as a gunicorn worker does: Flask-Limiter is one object
per process (its storage, key prefix and "storage is dead" flag are not per app), so apps made
inside the test process would share counts whatever Redis did, and inherit other tests' state.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import redis

from tests.conftest import OTHER_STRONG_PASSWORD, TEST_REDIS_URL, hashed_username, requires_redis
from tests.conftest import test_settings as settings_for

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[2]
REDIS_SERVER = shutil.which("redis-server")
PER_IP = 5
MAX_FAILURES = 3
SOCKET_TIMEOUT = 0.2
# "Quickly": a dead or silent Redis may cost a request a few socket timeouts, never more.
QUICK_SECONDS = 4 * SOCKET_TIMEOUT + 0.2
# Flask-Limiter re-checks a dead storage with backoff (1, 2, 4 ... 32 s apart).
RECOVERY_WAIT_SECONDS = 40
ANSWER_WAIT_SECONDS = 30

requires_redis_server = pytest.mark.skipif(
    REDIS_SERVER is None, reason="no redis-server binary on PATH: cannot start a private Redis to kill"
)

# The app process: builds the app from the settings on its first input line, then answers one
# JSON request per line with its status and how long the app took.
APP_PROCESS = r"""
import json, sys, time
import service.accounts.throttle
from service import create_app
from service.access.apikeys import create_api_key
from service.platform.clock import utcnow
from service.platform.extensions import db

job = json.loads(sys.stdin.readline())
if job["throttle_retry_after"] is not None:
    service.accounts.throttle.RETRY_SHARED_STORAGE_AFTER = job["throttle_retry_after"]
app = create_app(job["settings"])
with app.app_context():
    db.create_all()
    _key, presented = create_api_key(db.session, job["key_name"], "client", now=utcnow())
    db.session.commit()
client = app.test_client()
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    call = json.loads(line)
    headers = {"Authorization": "Bearer " + presented} if call["key"] else {}
    started = time.perf_counter()
    response = client.open(
        call["path"], method=call["method"], json=call["json"], headers=headers,
        environ_base={"REMOTE_ADDR": call["ip"]},
    )
    print(json.dumps({"status": response.status_code, "seconds": time.perf_counter() - started}), flush=True)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def unique_ip() -> str:
    raw = uuid.uuid4().bytes
    return f"10.{raw[0]}.{raw[1]}.{raw[2]}"


class AppProcess:
    """One app in a process of its own, driven request by request."""

    def __init__(self, settings: dict[str, Any], log: Path, throttle_retry_after: float | None = None) -> None:
        self.log_path = log
        self._log: IO[bytes] = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-c", APP_PROCESS], cwd=PROJECT, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
        )
        job = {"settings": settings, "key_name": f"website-{uuid.uuid4().hex[:8]}", "throttle_retry_after": throttle_retry_after}
        assert self._exchange(job) == {"ready": True}

    def _exchange(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        answer: list[str] = []
        reader = threading.Thread(target=lambda: answer.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(ANSWER_WAIT_SECONDS)
        assert answer and answer[0], f"the app process gave no answer:\n{self.log_path.read_text()}"
        return json.loads(answer[0])

    def call(self, path: str, body: Any = None, *, ip: str = "192.0.2.1", key: bool = False, method: str = "POST") -> tuple[int, float]:
        answer = self._exchange({"path": path, "method": method, "json": body, "ip": ip, "key": key})
        return answer["status"], answer["seconds"]

    def ask_reset(self, ip: str) -> tuple[int, float]:
        return self.call("/api/v1/password-resets", {"username": f"user-{uuid.uuid4().hex[:8]}"}, ip=ip)

    def verify(self, username: str) -> tuple[int, float]:
        return self.call("/api/v1/auth/verify", {"username": username, "password": OTHER_STRONG_PASSWORD}, key=True)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(5)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        self._log.close()


class PrivateRedis:
    """A redis-server of this test's own, to kill, freeze and restart."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        connection = self.connection()
        deadline = time.monotonic() + 10
        while True:
            try:
                if connection.ping():
                    return
            except redis.ConnectionError:
                pass
            assert self.process.poll() is None, "redis-server exited at start"
            assert time.monotonic() < deadline, "redis-server did not answer within 10 s"
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)  # a frozen server cannot die otherwise
            self.process.kill()
            self.process.wait(5)

    def freeze(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def connection(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    if REDIS_SERVER is None:
        pytest.skip("no redis-server binary on PATH: cannot start a private Redis to kill")
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[Any]:
    """Start app processes on one SQLite file (as workers share a database); all killed after."""
    started: list[AppProcess] = []

    def start(storage_uri: str, throttle_retry_after: float | None = None) -> AppProcess:
        settings = settings_for(
            f"sqlite:///{tmp_path / 'shared.db'}",
            RATELIMIT_STORAGE_URI=storage_uri,
            RATELIMIT_RESET_PER_IP=f"{PER_IP}/minute",
            RATELIMIT_RESET_PER_USERNAME="1000/hour",
            LOGIN_MAX_FAILURES=MAX_FAILURES,
            REDIS_SOCKET_TIMEOUT=SOCKET_TIMEOUT,
        )
        app = AppProcess(settings, tmp_path / f"app-{len(started)}.log", throttle_retry_after)
        started.append(app)
        return app

    try:
        yield start
    finally:
        for app in started:
            app.close()


def keys(connection: redis.Redis, fragment: str) -> list[bytes]:
    return connection.keys(f"*{fragment}*")


def statuses_and_slowest(results: list[tuple[int, float]]) -> tuple[list[int], float]:
    return [status for status, _ in results], max(seconds for _, seconds in results)


def wait_until_counted_in_redis(connection: redis.Redis, app: AppProcess) -> None:
    """Send requests from fresh addresses until one is counted in Redis again (bounded)."""
    deadline = time.monotonic() + RECOVERY_WAIT_SECONDS
    while True:
        ip = unique_ip()
        status, seconds = app.ask_reset(ip)
        assert status == 202 and seconds < QUICK_SECONDS, (status, seconds)
        if keys(connection, f"/{ip}/"):
            return
        assert time.monotonic() < deadline, f"rate limits not back in Redis {RECOVERY_WAIT_SECONDS} s after it returned"
        time.sleep(0.25)


# --- a private Redis that dies and comes back -----------------------------------------------------


@requires_redis_server
def test_limits_survive_a_dead_redis_per_process_and_return_to_redis(private_redis: PrivateRedis, start_app: Any) -> None:
    # The throttle retries its shared storage 30 s after a failure; one second keeps this short.
    app = start_app(private_redis.url, throttle_retry_after=1.0)
    connection = private_redis.connection()
    ip = unique_ip()

    # While Redis answers, the counts are there.
    assert statuses_and_slowest([app.ask_reset(ip) for _ in range(3)])[0] == [202] * 3
    [per_ip_key] = keys(connection, f"/{ip}/reset-request-ip")
    assert int(connection.get(per_ip_key)) == 3
    assert statuses_and_slowest([app.verify("jane") for _ in range(2)])[0] == [401] * 2
    assert keys(connection, f"sign-in:account:{hashed_username('jane')}")

    private_redis.kill()

    # Every request still answers, quickly; the process counts in its own memory, from zero.
    statuses, slowest = statuses_and_slowest([app.ask_reset(ip) for _ in range(PER_IP + 2)])
    assert slowest < QUICK_SECONDS, f"a request took {slowest:.2f} s with Redis dead"
    assert statuses == [202] * PER_IP + [429] * 2
    statuses, slowest = statuses_and_slowest([app.verify("jane") for _ in range(MAX_FAILURES + 2)])
    assert slowest < QUICK_SECONDS, f"a sign-in took {slowest:.2f} s with Redis dead"
    assert statuses == [401] * MAX_FAILURES + [429] * 2
    for path in ("/healthz", "/readyz"):
        status, seconds = app.call(path, method="GET")
        assert status == 200 and seconds < QUICK_SECONDS, (path, status, seconds)

    private_redis.start()  # the same port, empty

    # Back in Redis: new counts land there, and a second process sees them.
    wait_until_counted_in_redis(connection, app)
    time.sleep(1.1)  # past the throttle's retry interval
    assert app.verify("kate")[0] == 401
    assert keys(connection, f"sign-in:account:{hashed_username('kate')}"), "sign-in failures are not counted in Redis again"

    shared_ip = unique_ip()
    assert statuses_and_slowest([app.ask_reset(shared_ip) for _ in range(PER_IP)])[0] == [202] * PER_IP
    assert statuses_and_slowest([app.verify("lena") for _ in range(MAX_FAILURES)])[0] == [401] * MAX_FAILURES
    second = start_app(private_redis.url)
    assert second.ask_reset(shared_ip)[0] == 429
    assert second.ask_reset(unique_ip())[0] == 202
    assert second.verify("lena")[0] == 429


@requires_redis_server
def test_a_silent_redis_costs_no_request_more_than_a_few_socket_timeouts(
    private_redis: PrivateRedis, start_app: Any
) -> None:
    app = start_app(private_redis.url)
    ip = unique_ip()
    assert app.ask_reset(ip)[0] == 202

    private_redis.freeze()  # accepts connections, never answers: worse than dead
    # Without socket timeouts a request would wait forever; thawing after a while turns that
    # hang into a slow answer, which the assertions below report.
    watchdog = threading.Timer(10, private_redis.thaw)
    watchdog.start()
    try:
        statuses, slowest = statuses_and_slowest([app.ask_reset(ip) for _ in range(PER_IP + 1)])
        assert slowest < QUICK_SECONDS, f"a request took {slowest:.2f} s with Redis silent"
        assert statuses == [202] * PER_IP + [429]
        statuses, slowest = statuses_and_slowest([app.verify("jane") for _ in range(MAX_FAILURES + 1)])
        assert slowest < QUICK_SECONDS, f"a sign-in took {slowest:.2f} s with Redis silent"
        assert statuses == [401] * MAX_FAILURES + [429]
        status, seconds = app.call("/healthz", method="GET")
        assert status == 200 and seconds < QUICK_SECONDS
    finally:
        watchdog.cancel()
        private_redis.thaw()


# --- the shared test Redis --------------------------------------------------------------------


@pytest.fixture
def shared_redis_fragments() -> Iterator[list[str]]:
    """Unique ips and usernames this test counts under; their keys are removed afterwards."""
    fragments: list[str] = []
    yield fragments
    connection = redis.Redis.from_url(TEST_REDIS_URL)
    for fragment in fragments:
        for key in keys(connection, fragment):
            connection.delete(key)


@pytest.mark.redis
@requires_redis
def test_two_processes_share_rate_limit_and_throttle_counts_through_redis(
    start_app: Any, shared_redis_fragments: list[str]
) -> None:
    first, second = start_app(TEST_REDIS_URL), start_app(TEST_REDIS_URL)
    ip, username = unique_ip(), f"shared-{uuid.uuid4().hex}"
    shared_redis_fragments += [f"/{ip}/", username, hashed_username(username)]

    # Requests from one address count toward one limit, whichever process answers them.
    assert [first.ask_reset(ip)[0] for _ in range(PER_IP - 2)] == [202] * (PER_IP - 2)
    assert [second.ask_reset(ip)[0] for _ in range(3)] == [202, 202, 429]
    assert first.ask_reset(ip)[0] == 429

    # Wrong passwords for one username count toward one throttle, whichever process sees them.
    assert [first.verify(username)[0] for _ in range(MAX_FAILURES - 1)] == [401] * (MAX_FAILURES - 1)
    assert [second.verify(username)[0] for _ in range(2)] == [401, 429]
    assert first.verify(username)[0] == 429
    assert keys(redis.Redis.from_url(TEST_REDIS_URL), hashed_username(username)), "the throttle's counts are not in Redis"
