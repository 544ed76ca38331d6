"""SQLite connections that wait for the database's one write lock on a lock file of their
own, trying again within a millisecond, not in SQLite's busy handler.

SQLite lets one connection write at a time. A connection that finds the write lock taken
waits in its busy handler, which sleeps 1, 2, 5, 10, 15, 20, 25... ms between tries. With
several writers at once (gunicorn workers, their dispatcher threads, `outbox run`), they sleep
through the moments the lock is free: cores idle while requests wait. These connections take
an exclusive `flock` on a file beside the database before their first write, and give it up
when the transaction ends; a writer that finds it taken tries again after 0.1 ms, then every
millisecond at most, so it starts within a millisecond of the lock coming free. (flock's own
blocking wait would wake it at once, but can wait for ever; this wait ends after
QUEUE_WAIT_SECONDS, and the writer goes on to SQLite's lock, so a lock file held by someone
else slows writes down but never stops them.)

SQLite's own lock and busy timeout stay as they were, for what does not queue here: another
program (the sqlite3 shell), an in-memory database, a write this module does not recognise
as one, and a thread that already holds the lock through another connection (which would
otherwise wait for itself; SQLite's busy timeout ends that wait with an error, as before).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, Self

# Statements that take SQLite's write lock: what Python's sqlite3 opens a transaction before
# (INSERT, UPDATE, DELETE, REPLACE), schema changes, and a WITH clause around a write.
_WRITE = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER)\b", re.IGNORECASE)
_WITH_WRITE = re.compile(r"\s*WITH\b.*\b(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE | re.DOTALL)

log = logging.getLogger(__name__)

# How long a writer waits in the queue before it goes on to SQLite's own lock, as the service's
# busy timeout (10 s) would have it wait there.
QUEUE_WAIT_SECONDS = 10.0
FIRST_PAUSE_SECONDS = 0.0001
LONGEST_PAUSE_SECONDS = 0.001
_unopenable: set[str] = set()

# The lock files each thread holds now (by path), so that a thread never queues behind itself.
_held = threading.local()


def writer_lock_path(database: str) -> str | None:
    """The lock file of a database file: the file's path with `-writer.lock`; None for an
    in-memory database."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return f"{database}-writer.lock"


def _wait_for(lock_file: int, seconds: float) -> bool:
    """Take the lock file, waiting up to `seconds`; False if it stayed taken that long.

    flock has no timed wait: a waiter tries again after 0.1 ms, then at most every millisecond.
    """
    pause = FIRST_PAUSE_SECONDS
    deadline = 0.0
    while True:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        now = time.monotonic()
        deadline = deadline or now + seconds
        if now >= deadline:
            return False
        time.sleep(pause)
        pause = min(2 * pause, LONGEST_PAUSE_SECONDS)


def _open_lock_file(path: str) -> int | None:
    """The lock file, opened for reading (all flock needs) and made if missing; None when it
    cannot be (made by another user, a read-only directory): that connection's writes then wait
    in SQLite's busy handler, as they did before, rather than fail."""
    try:
        # The owner's alone: anyone who can open the file can hold its lock and slow every
        # writer down to QUEUE_WAIT_SECONDS a write.
        return os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as error:
        if path not in _unopenable:
            _unopenable.add(path)
            log.warning("SQLite writers will not queue: cannot open %s (%s)", path, error.strerror)
        return None


def _is_write(sql: str) -> bool:
    return bool(_WRITE.match(sql) or _WITH_WRITE.match(sql))


def _held_paths() -> set[str]:
    paths: set[str] | None = getattr(_held, "paths", None)
    if paths is None:
        paths = _held.paths = set()
    return paths


class _Cursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> Self:
        return self._in_queue(super().execute, sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Self:
        return self._in_queue(super().executemany, sql, seq_of_parameters)

    def _in_queue(self, run: Callable[[str, Any], Self], sql: str, parameters: Any) -> Self:
        """Run a statement, having waited for the lock file first if it writes."""
        connection: QueuedWriterConnection = self.connection  # type: ignore[assignment]
        connection.queue_before(sql)
        try:
            return run(sql, parameters)
        finally:
            connection.release_outside_transaction()


class QueuedWriterConnection(sqlite3.Connection):
    """A sqlite3 connection (`sqlite3.connect(..., factory=QueuedWriterConnection)`) that holds
    the database's writer lock file from its first write to the end of its transaction."""

    def __init__(self, database: str | os.PathLike[str], *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self._lock_path = writer_lock_path(os.fspath(database))
        # An open file of its own: flock belongs to an open file, so two connections of one
        # process queue for each other as two processes do.
        self._lock_file: int | None = None
        if self._lock_path is not None:
            self._lock_file = _open_lock_file(self._lock_path)
        self._holding = False
        # The set of the thread that took the lock: the one to strike it from on release,
        # whichever thread ends the transaction (the pool may, when the connection returns).
        self._holder_paths: set[str] | None = None

    def cursor(self, factory: Any = _Cursor) -> Any:
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        cursor: _Cursor = self.cursor()
        return cursor.execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> sqlite3.Cursor:
        cursor: _Cursor = self.cursor()
        return cursor.executemany(sql, seq_of_parameters)

    @property
    def holds_writer_lock(self) -> bool:
        """Whether this connection holds the lock file now."""
        return self._holding

    def queue_before(self, sql: str) -> None:
        """Before a write, wait for the lock file, unless this connection (or, through another
        connection, this thread) holds it already."""
        path, lock_file = self._lock_path, self._lock_file
        if self._holding or path is None or lock_file is None or not _is_write(sql):
            return
        held = _held_paths()
        if path in held:
            return
        if not _wait_for(lock_file, QUEUE_WAIT_SECONDS):
            # Held for longer than any transaction of the service takes: go on to SQLite's
            # own lock and busy timeout, which say "database is locked" if it is.
            return
        self._holding = True
        held.add(path)
        self._holder_paths = held

    def release_outside_transaction(self) -> None:
        """After a statement: a write that ran outside a transaction (schema changes, a failed
        first write) is over, and so is the wait it queued for."""
        if self._holding and not self.in_transaction:
            self._release()

    def _release(self) -> None:
        if not self._holding or self._lock_file is None:
            return
        self._holding = False
        if self._holder_paths is not None and self._lock_path is not None:
            self._holder_paths.discard(self._lock_path)
        self._holder_paths = None
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.release_outside_transaction()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.release_outside_transaction()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release()
            if self._lock_file is not None:
                os.close(self._lock_file)
                self._lock_file = None
