"""Several `flask --app wsgi outbox run` worker processes share one queue: every message is
delivered exactly once, the work really is spread over the workers, and SIGTERM stops them cleanly.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import func, select

from service import create_app
from service.models import OutboxMessage
from service.outbox.mail import RenderedEmail
from service.outbox.queue import queue_email
from service.platform.clock import utcnow
from service.platform.extensions import db
from tests.conftest import TEST_DATABASE_URL, SmtpSink, reset_postgresql
from tests.conftest import test_settings as settings_for

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[2]
FLASK = Path(sys.executable).parent / "flask"
DELIVERY_WAIT_SECONDS = 120
# SIGTERM lets a worker finish the message in flight; docker compose gives it 30 s.
STOP_GRACE_SECONDS = 15
MARKER = re.compile(r"marker-[0-9a-f]{32}")
# Python's make_msgid (used by Flask-Mail) puts the sending process's pid in every Message-ID.
MESSAGE_ID_PID = re.compile(r"^<\d+\.(\d+)\.\d+@")

Worker = tuple[subprocess.Popen[bytes], Path]  # the process and its log file

requires_postgresql = pytest.mark.skipif(
    not TEST_DATABASE_URL, reason="TEST_DATABASE_URL is not set: no PostgreSQL to test against"
)


# The app that queues the mail and the workers that open it must share the key it is sealed with.
WORKER_SECRET_KEY = "outbox-worker-test-secret-key-0123456789"


def worker_env(database_url: str, smtp: SmtpSink) -> dict[str, str]:
    """What a deployment gives an outbox worker, and none of the tests' own settings."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TEST_", "DATABASE_", "MAIL_", "RATELIMIT_", "SECRET_", "PUBLIC_", "FLASK_", "OUTBOX_"))
    }
    env.update(
        APP_ENV="development",
        SECRET_KEY=WORKER_SECRET_KEY,
        DATABASE_URL=database_url,
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=str(smtp.port),
        MAIL_TIMEOUT="5",
        OUTBOX_DISPATCH="external",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def upgrade_schema(env: dict[str, str]) -> None:
    """Create the schema the way an operator does: `flask --app wsgi db upgrade`."""
    done = subprocess.run(
        [str(FLASK), "--app", "wsgi", "db", "upgrade"],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, f"db upgrade failed:\n{done.stdout}\n{done.stderr}"


def queue_marked_emails(database_url: str, how_many: int) -> set[str]:
    """Queue `how_many` emails to distinct recipients, each carrying a unique marker."""
    app = create_app(settings_for(database_url, SECRET_KEY=WORKER_SECRET_KEY))
    markers = {f"marker-{uuid.uuid4().hex}" for _ in range(how_many)}
    try:
        with app.app_context():
            now = utcnow()
            for number, marker in enumerate(sorted(markers)):
                email = RenderedEmail(subject=f"Test {marker}", text_body=f"Your {marker}.\n", html_body=None)
                queue_email(db.session, f"customer{number}@example.com", email, account_id=None, now=now)
            db.session.commit()
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    return markers


def outbox_counts(engine: sqlalchemy.Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status))
        return dict(rows.all())


def start_workers(env: dict[str, str], how_many: int, logs: Path) -> list[Worker]:
    workers = []
    for number in range(how_many):
        log_path = logs / f"worker-{number}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(FLASK), "--app", "wsgi", "outbox", "run"],
                cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        workers.append((process, log_path))
    return workers


def stop_workers(workers: list[Worker]) -> None:
    """Last resort for a failed test: no worker outlives it."""
    for process, _log in workers:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def wait_until_delivered(
    engine: sqlalchemy.Engine, smtp: SmtpSink, expected: int, workers: list[Worker]
) -> float:
    """Wait (bounded) until nothing in the outbox is left pending or sending."""
    started = time.monotonic()
    while True:
        for process, log in workers:
            assert process.poll() is None, f"a worker died:\n{log.read_text()}"
        counts = outbox_counts(engine)
        if not counts.get("pending") and not counts.get("sending"):
            return time.monotonic() - started
        assert time.monotonic() - started < DELIVERY_WAIT_SECONDS, (
            f"after {DELIVERY_WAIT_SECONDS} s: {len(smtp.messages)} of {expected} delivered, outbox {counts}"
        )
        time.sleep(0.2)


def terminate_cleanly(workers: list[Worker]) -> None:
    for process, _log in workers:
        process.send_signal(signal.SIGTERM)
    for process, log in workers:
        try:
            returncode = process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker {process.pid} ignored SIGTERM for {STOP_GRACE_SECONDS} s:\n{log.read_text()}")
        output = log.read_text()
        assert returncode == 0, f"worker {process.pid} exited with {returncode}:\n{output}"
        assert "Outbox worker stopped." in output, output


def sender_pids(smtp: SmtpSink) -> Counter[int]:
    pids: Counter[int] = Counter()
    for message in smtp.messages:
        match = MESSAGE_ID_PID.match(message["Message-ID"] or "")
        assert match, message["Message-ID"]
        pids[int(match.group(1))] += 1
    return pids


def run_workers_over_the_queue(
    database_url: str, tmp_path: Path, how_many: int, worker_count: int, sink_delay: float = 0.0
) -> None:
    smtp = SmtpSink()
    # A worker claims a batch at a time: with a sink that answers at once, the first worker up
    # may deliver a small queue before the others have started, and sharing would not be seen.
    smtp.delay = sink_delay
    smtp.start()
    workers: list[Worker] = []
    engine = sqlalchemy.create_engine(database_url)
    try:
        env = worker_env(database_url, smtp)
        upgrade_schema(env)
        markers = queue_marked_emails(database_url, how_many)
        assert outbox_counts(engine) == {"pending": how_many}

        workers = start_workers(env, worker_count, tmp_path)
        wait_until_delivered(engine, smtp, how_many, workers)
        terminate_cleanly(workers)

        # Exactly once: every marker arrived, none twice, nothing else arrived.
        received = Counter(MARKER.search(message["Subject"]).group(0) for message in smtp.messages)
        duplicates = {marker: times for marker, times in received.items() if times > 1}
        assert not duplicates, f"{len(duplicates)} message(s) delivered more than once"
        assert set(received) == markers
        assert len(smtp.messages) == how_many
        assert outbox_counts(engine) == {"sent": how_many}
        with engine.connect() as connection:
            attempts = connection.scalars(select(OutboxMessage.attempts).distinct()).all()
        assert attempts == [1]

        # The work was shared: messages came from more than one of the worker processes.
        pids = sender_pids(smtp)
        assert set(pids) <= {process.pid for process, _log in workers}, pids
        assert len(pids) > 1, f"one worker delivered everything: {pids}"
    finally:
        stop_workers(workers)
        smtp.stop()
        engine.dispose()


@pytest.mark.postgres
@requires_postgresql
def test_four_worker_processes_deliver_a_thousand_emails_exactly_once_on_postgresql(tmp_path: Path) -> None:
    reset_postgresql(TEST_DATABASE_URL)
    try:
        run_workers_over_the_queue(TEST_DATABASE_URL, tmp_path, how_many=1000, worker_count=4)
    finally:
        reset_postgresql(TEST_DATABASE_URL)


def test_two_worker_processes_share_a_sqlite_queue_without_sending_twice(tmp_path: Path) -> None:
    run_workers_over_the_queue(
        f"sqlite:///{tmp_path / 'outbox.db'}", tmp_path, how_many=200, worker_count=2, sink_delay=0.02
    )


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=[pytest.mark.postgres, requires_postgresql])])
def test_sigterm_finishes_the_message_in_flight_and_hands_the_rest_back(tmp_path: Path, backend: str) -> None:
    database_url = f"sqlite:///{tmp_path / 'outbox.db'}" if backend == "sqlite" else TEST_DATABASE_URL
    if backend == "postgresql":
        reset_postgresql(TEST_DATABASE_URL)
    smtp = SmtpSink()
    smtp.delay = 0.2  # a slow server: the worker is mid-message most of the time
    smtp.start()
    workers: list[Worker] = []
    engine = sqlalchemy.create_engine(database_url)
    try:
        env = worker_env(database_url, smtp)
        upgrade_schema(env)
        markers = queue_marked_emails(database_url, 30)
        workers = start_workers(env, 1, tmp_path)
        deadline = time.monotonic() + 30
        while len(smtp.messages) < 3:
            assert workers[0][0].poll() is None, workers[0][1].read_text()
            assert time.monotonic() < deadline, "the worker delivered nothing within 30 s"
            time.sleep(0.05)

        terminate_cleanly(workers)

        counts = outbox_counts(engine)
        delivered = [MARKER.search(message["Subject"]).group(0) for message in smtp.messages]
        assert len(delivered) == len(set(delivered)) < len(markers), "it should stop well before the end"
        # Whatever was sent is marked sent; the rest of its batch is pending again, not left
        # "sending" for the five-minute claim lease to expire.
        assert counts == {"sent": len(delivered), "pending": len(markers) - len(delivered)}
        with engine.connect() as connection:
            unclaimed = connection.scalar(
                select(func.count()).select_from(OutboxMessage)
                .where(OutboxMessage.status == "pending", OutboxMessage.claimed_at.is_(None))
            )
        assert unclaimed == len(markers) - len(delivered)
    finally:
        stop_workers(workers)
        smtp.stop()
        engine.dispose()
        if backend == "postgresql":
            reset_postgresql(TEST_DATABASE_URL)


def test_a_worker_serves_its_own_delivery_metrics_on_worker_metrics_port(tmp_path: Path) -> None:
    """Deliveries happen in `outbox run` workers, which have no web routes: with
    WORKER_METRICS_PORT set, each serves its counts itself, so a scrape can see them."""
    import socket
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    database_url = f"sqlite:///{tmp_path / 'worker-metrics.db'}"
    smtp = SmtpSink()
    smtp.start()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**worker_env(database_url, smtp), "WORKER_METRICS_PORT": str(port)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    workers: list[Worker] = []
    try:
        upgrade_schema(env)
        queue_marked_emails(database_url, 3)
        workers = start_workers(env, 1, tmp_path)
        sent = 0.0
        deadline = time.monotonic() + 30
        while sent < 3 and time.monotonic() < deadline:
            assert workers[0][0].poll() is None, workers[0][1].read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
                    text = answer.read().decode()
            except OSError:
                time.sleep(0.2)
                continue
            sent = sum(
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "resetdesk_outbox_deliveries_total"
                and sample.labels == {"kind": "email", "outcome": "sent"}
            )
            time.sleep(0.2)
        assert sent == 3
        assert len(smtp.messages) == 3
        terminate_cleanly(workers)
    finally:
        stop_workers(workers)
        smtp.stop()
