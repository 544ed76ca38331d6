"""SQLite writers wait for the write lock on a lock file (service/platform/sqlite_writer.py).

Every connection here has a busy timeout of 0: a writer that found SQLite's lock taken would
fail at once with "database is locked". So a second writer that waits and then succeeds can
only have waited on the lock file.
"""

from __future__ import annotations

import fcntl
import gc
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from service import create_app
from service.platform import sqlite_writer
from service.platform.extensions import db
from service.platform.sqlite_writer import WriterLockConnection, writer_lock_path
from tests.conftest import test_settings as settings_for

JOIN_SECONDS = 10


@pytest.fixture(autouse=True)
def fresh_module_state() -> Iterator[None]:
    """What the module remembers per process (files set aside or unusable) starts empty."""
    sqlite_writer._set_aside.clear()
    sqlite_writer._unopenable.clear()
    yield
    sqlite_writer._set_aside.clear()
    sqlite_writer._unopenable.clear()


@pytest.fixture
def database(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "queue.db")
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT)")
    setup.commit()
    setup.close()
    yield path


def connect(path: str) -> WriterLockConnection:
    connection = sqlite3.connect(path, timeout=0, factory=WriterLockConnection, check_same_thread=False)
    assert isinstance(connection, WriterLockConnection)
    return connection


def lock_is_free(path: str) -> bool:
    """Whether nobody holds the database's lock file (asked with a file of its own)."""
    lock_path = writer_lock_path(path)
    assert lock_path is not None
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(descriptor)
    return True


def in_thread(work: Any) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(work())
        except Exception as error:  # the test reads it
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_second_writer_waits_for_the_first_to_commit_instead_of_failing(database: str) -> None:
    first, second = connect(database), connect(database)
    first.execute("INSERT INTO item (name) VALUES ('first')")
    assert first.holds_writer_lock and not lock_is_free(database)

    started = threading.Event()

    def write_second() -> str:
        started.set()
        second.execute("INSERT INTO item (name) VALUES ('second')")
        second.commit()
        return "written"

    thread, outcome = in_thread(write_second)
    started.wait(JOIN_SECONDS)
    thread.join(0.2)
    assert thread.is_alive(), "the second writer waits while the first holds the lock"
    first.commit()
    thread.join(JOIN_SECONDS)
    assert outcome == ["written"]
    assert [name for (name,) in first.execute("SELECT name FROM item ORDER BY id")] == ["first", "second"]
    assert lock_is_free(database)


def test_without_the_queue_the_same_second_writer_fails_at_once(database: str) -> None:
    """The control: plain sqlite3 connections with the same busy timeout do not wait."""
    first, second = connect(database), sqlite3.connect(database, timeout=0)
    first.execute("INSERT INTO item (name) VALUES ('first')")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        second.execute("INSERT INTO item (name) VALUES ('second')")
    first.rollback()


def test_reads_take_no_lock_and_do_not_hold_writers_up(database: str) -> None:
    reader, writer = connect(database), connect(database)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM item").fetchone() == (0,)
    assert reader.execute("WITH n AS (SELECT 1) SELECT * FROM n").fetchone() == (1,)
    assert not reader.holds_writer_lock and lock_is_free(database)
    writer.execute("INSERT INTO item (name) VALUES ('x')")
    writer.commit()
    reader.rollback()


@pytest.mark.parametrize("end", ["commit", "rollback", "close"])
def test_the_lock_is_given_up_when_the_transaction_ends(database: str, end: str) -> None:
    connection = connect(database)
    connection.execute("UPDATE item SET name = 'y'")
    assert connection.holds_writer_lock and not lock_is_free(database)
    getattr(connection, end)()
    assert lock_is_free(database)


def test_a_failed_first_write_gives_the_lock_up(database: str) -> None:
    connection = connect(database)
    with pytest.raises(sqlite3.OperationalError):
        connection.execute("INSERT INTO no_such_table VALUES (1)")
    assert not connection.in_transaction
    assert not connection.holds_writer_lock and lock_is_free(database)


def test_a_schema_change_outside_a_transaction_gives_the_lock_up(database: str) -> None:
    connection = connect(database)
    connection.execute("CREATE TABLE other (id INTEGER PRIMARY KEY)")
    assert lock_is_free(database)


def test_a_thread_writing_through_a_second_connection_does_not_wait_for_itself(database: str) -> None:
    """It meets SQLite's lock instead, and its busy timeout ends that, as it always did."""
    first, second = connect(database), connect(database)

    def write_both() -> str:
        first.execute("INSERT INTO item (name) VALUES ('first')")
        try:
            second.execute("INSERT INTO item (name) VALUES ('second')")
        except sqlite3.OperationalError as error:
            return str(error)
        finally:
            first.rollback()
        return "written"

    thread, outcome = in_thread(write_both)
    thread.join(JOIN_SECONDS)
    assert not thread.is_alive(), "a thread never queues behind its own lock"
    assert outcome == ["database is locked"]
    assert lock_is_free(database)


def test_an_in_memory_database_has_no_lock_file(tmp_path: Path) -> None:
    assert writer_lock_path(":memory:") is None
    connection = sqlite3.connect(":memory:", factory=WriterLockConnection)
    connection.execute("CREATE TABLE t (id INTEGER)")
    connection.execute("INSERT INTO t VALUES (1)")
    assert isinstance(connection, WriterLockConnection) and not connection.holds_writer_lock
    connection.commit()


def test_the_apps_engine_on_sqlite_makes_its_writers_wait_on_the_lock_file(tmp_path: Path) -> None:
    """The service's engine makes these connections, so every door's writes wait on the file:
    the request path's, the dispatcher's, the CLI's."""
    app = create_app(settings_for(f"sqlite:///{tmp_path / 'app.db'}"))
    with app.app_context(), db.engine.connect() as connection:
        dbapi_connection = connection.connection.dbapi_connection
        assert isinstance(dbapi_connection, WriterLockConnection)
        connection.execute(text("CREATE TABLE queued (id INTEGER)"))
        connection.execute(text("INSERT INTO queued VALUES (1)"))
        assert dbapi_connection.holds_writer_lock
        connection.commit()
        assert not dbapi_connection.holds_writer_lock
        db.engine.dispose()


def test_a_lock_file_that_cannot_be_opened_leaves_writes_to_sqlites_busy_handler(
    database: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A lock file left unreadable (made by a command run as another user; here a directory
    in its place) must not stop the database: writes go on, as before, and it is said once."""
    lock_path = writer_lock_path(database)
    assert lock_path is not None
    os.mkdir(lock_path)
    connection = connect(database)
    connection.execute("INSERT INTO item (name) VALUES ('x')")
    connection.commit()
    assert not connection.holds_writer_lock
    assert connection.execute("SELECT count(*) FROM item").fetchone() == (1,)
    connect(database).close()
    warnings = [record for record in caplog.records if "will not wait on a lock file" in record.getMessage()]
    assert len(warnings) == 1 and lock_path in warnings[0].getMessage()


def test_a_lock_file_held_by_someone_else_slows_writes_down_but_never_stops_them(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone holding the lock file for ever (a stuck program, `flock -x FILE sleep ...`)
    without SQLite's lock: a writer waits LOCK_WAIT_SECONDS, then writes under SQLite's own."""
    monkeypatch.setattr(sqlite_writer, "LOCK_WAIT_SECONDS", 0.05)
    lock_path = writer_lock_path(database)
    assert lock_path is not None
    outsider = os.open(lock_path, os.O_RDONLY | os.O_CREAT)
    fcntl.flock(outsider, fcntl.LOCK_EX)
    try:
        thread, outcome = in_thread(lambda: _write_and_commit(connect(database)))
        thread.join(JOIN_SECONDS)
        assert outcome == ["written"]
        assert not lock_is_free(database), "the outsider still holds it"
    finally:
        os.close(outsider)


def _write_and_commit(connection: WriterLockConnection) -> str:
    connection.execute("INSERT INTO item (name) VALUES ('x')")
    assert not connection.holds_writer_lock
    connection.commit()
    return "written"


def test_the_lock_file_is_its_owners_alone(database: str) -> None:
    """Whoever can open the lock file can hold it and slow every writer down."""
    connect(database).close()
    lock_path = writer_lock_path(database)
    assert lock_path is not None
    assert os.stat(lock_path).st_mode & 0o077 == 0


def test_a_transaction_that_gave_up_waiting_does_not_wait_again_and_the_process_sets_the_file_aside(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waiting again at every write would add the wait up per statement, and hold SQLite's lock
    meanwhile; every other transaction waiting too would make each write as slow. After the set
    aside, the file is used again."""
    monkeypatch.setattr(sqlite_writer, "LOCK_WAIT_SECONDS", 0.05)
    waits: list[bool] = []
    real_wait = sqlite_writer._WriterLock._wait

    def counted_wait(lock: Any, seconds: float) -> bool:
        waits.append(taken := real_wait(lock, seconds))
        return taken

    monkeypatch.setattr(sqlite_writer._WriterLock, "_wait", counted_wait)
    lock_path = writer_lock_path(database)
    assert lock_path is not None
    outsider = os.open(lock_path, os.O_RDONLY | os.O_CREAT)
    fcntl.flock(outsider, fcntl.LOCK_EX)
    first, second = connect(database), connect(database)
    for name in ("a", "b", "c"):
        first.execute("INSERT INTO item (name) VALUES (?)", (name,))
    first.commit()
    second.execute("INSERT INTO item (name) VALUES ('d')")
    second.commit()
    assert waits == [False], "one wait, then the file is set aside"
    os.close(outsider)
    sqlite_writer._set_aside.clear()  # as SET_ASIDE_SECONDS later
    first.execute("INSERT INTO item (name) VALUES ('e')")
    assert waits == [False, True] and first.holds_writer_lock
    first.commit()
    assert lock_is_free(database)


def test_a_script_waits_for_the_lock_and_gives_it_up(database: str) -> None:
    first, second = connect(database), connect(database)
    first.execute("INSERT INTO item (name) VALUES ('first')")
    thread, outcome = in_thread(lambda: second.executescript("INSERT INTO item (name) VALUES ('script');") and "ran")
    thread.join(0.2)
    assert thread.is_alive(), "the script waits while the first writer holds the lock"
    first.commit()
    thread.join(JOIN_SECONDS)
    assert outcome == ["ran"]
    assert lock_is_free(database)


def test_a_connection_dropped_without_close_gives_the_lock_up(database: str) -> None:
    connection = connect(database)
    connection.execute("INSERT INTO item (name) VALUES ('x')")
    assert not lock_is_free(database)
    del connection
    gc.collect()
    assert lock_is_free(database)


def test_a_fifo_at_the_lock_path_neither_hangs_nor_stops_writes(database: str) -> None:
    lock_path = writer_lock_path(database)
    assert lock_path is not None
    os.mkfifo(lock_path)
    thread, outcome = in_thread(lambda: _write_and_commit(connect(database)))
    thread.join(JOIN_SECONDS)
    assert not thread.is_alive(), "opening the lock file must not block"
    assert outcome == ["written"]


def test_a_link_at_the_lock_path_is_not_followed(database: str, tmp_path: Path) -> None:
    lock_path = writer_lock_path(database)
    assert lock_path is not None
    elsewhere = tmp_path / "elsewhere" / "made-by-the-service"
    elsewhere.parent.mkdir()
    os.symlink(elsewhere, lock_path)
    assert _write_and_commit(connect(database)) == "written"
    assert not elsewhere.exists()


def test_an_older_lock_file_readable_by_others_is_made_the_owners_alone(database: str) -> None:
    lock_path = writer_lock_path(database)
    assert lock_path is not None
    os.close(os.open(lock_path, os.O_RDONLY | os.O_CREAT, 0o644))
    os.chmod(lock_path, 0o644)
    connect(database).close()
    assert os.stat(lock_path).st_mode & 0o777 == 0o600
