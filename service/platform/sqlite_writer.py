"""SQLite connections that wait for the database's one write lock on a lock file of their
own, trying again within a millisecond, not in SQLite's busy handler.

SQLite lets one connection write at a time. A connection that finds the write lock taken
waits in its busy handler, which sleeps 1, 2, 5, 10, 15, 20, 25... ms between tries. With
several writers at once (gunicorn workers, their dispatcher threads, `outbox run`), they sleep
through the moments the lock is free: cores idle while requests wait. These connections take
an exclusive `flock` on a file beside the database before their first write, and give it up
when the transaction ends; a writer that finds it taken tries again after 0.1 ms, then every
millisecond at most, so it starts within a millisecond of the lock coming free. Waiters are
not served in order: under a long burst one may lose a few times in a row.

flock's own blocking wait would wake a writer at once, but can wait for ever. This wait ends
after LOCK_WAIT_SECONDS: the writer then goes on without the file, for the rest of its
transaction, to SQLite's own lock and busy timeout, and the process's other writers leave the
file aside for SET_ASIDE_SECONDS. So a lock file held by something else costs one slow write
a minute per process, and does not stop the others.

SQLite's own lock and busy timeout stay as they were, for what does not take the file: another
program (the sqlite3 shell), an in-memory database, a write this module does not recognise as
one, and a thread that already holds the file through another connection (which would
otherwise wait for itself; SQLite's busy timeout ends that wait with an error, as before).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import sqlite3
import stat
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Self

# Statements that take SQLite's write lock: what Python's sqlite3 opens a transaction before
# (INSERT, UPDATE, DELETE, REPLACE), schema changes, and a WITH clause around a write.
_WRITE = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER)\b", re.IGNORECASE)
_WITH_WRITE = re.compile(r"\s*WITH\b.*\b(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE | re.DOTALL)

log = logging.getLogger(__name__)

# How long a writer waits for the lock file before it goes on to SQLite's own lock, as the
# service's busy timeout (10 s) would have it wait there.
LOCK_WAIT_SECONDS = 10.0
FIRST_PAUSE_SECONDS = 0.0001
LONGEST_PAUSE_SECONDS = 0.001
# After a wait that timed out, how long this process leaves the lock file aside.
SET_ASIDE_SECONDS = 60.0
_unopenable: set[str] = set()
_set_aside: dict[str, float] = {}

# The lock files each thread holds now (by path), so that a thread never waits for itself.
_held = threading.local()


def writer_lock_path(database: str) -> str | None:
    """The lock file of a database file: the file's path with `-writer.lock`; None for an
    in-memory database."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return f"{database}-writer.lock"


def _is_write(sql: str) -> bool:
    return bool(_WRITE.match(sql) or _WITH_WRITE.match(sql))


def _held_paths() -> set[str]:
    paths: set[str] | None = getattr(_held, "paths", None)
    if paths is None:
        paths = _held.paths = set()
    return paths


def _open_lock_file(path: str) -> int | None:
    """The lock file, opened for reading (all flock needs) and made if missing; None when it
    cannot be used (made by another user, a read-only directory, something other than a plain
    file at its path): that connection's writes then wait in SQLite's busy handler, as they
    did before, rather than fail or hang."""
    try:
        # Not through a link (the service would make or lock a file elsewhere), and never
        # blocking on open (a FIFO at the path would hang every new connection).
        descriptor = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
    except OSError as error:
        _say_unusable(path, error.strerror or type(error).__name__)
        return None
    found = os.fstat(descriptor)
    if not stat.S_ISREG(found.st_mode):
        os.close(descriptor)
        _say_unusable(path, "not a plain file")
        return None
    if found.st_mode & 0o077 and found.st_uid == os.geteuid():
        # The owner's alone, even if an older file was made readable by others: whoever can
        # open it can hold its lock and slow the service's writers down.
        os.fchmod(descriptor, 0o600)
    return descriptor


def _say_unusable(path: str, why: str) -> None:
    if path not in _unopenable:
        _unopenable.add(path)
        log.warning("SQLite writers will not wait on a lock file: cannot use %s (%s)", path, why)


def _set_aside_until(path: str) -> float:
    """Until when (time.monotonic) this process's writers skip the lock file: 0 if they don't."""
    return _set_aside.get(path, 0.0)


def _set_aside_for_a_while(path: str) -> None:
    """Something held the lock file longer than any transaction of the service takes (a stuck
    or hostile process): for SET_ASIDE_SECONDS this process's writers go straight to SQLite's
    lock, rather than each wait LOCK_WAIT_SECONDS first."""
    if _set_aside_until(path) <= time.monotonic():
        log.warning(
            "SQLite writer lock file %s held for over %.0f s: writers go without it for %.0f s",
            path, LOCK_WAIT_SECONDS, SET_ASIDE_SECONDS,
        )
    _set_aside[path] = time.monotonic() + SET_ASIDE_SECONDS


class _WriterLock:
    """One connection's hold on the lock file, apart from the connection so that a connection
    dropped without `close` still gives it up (a finalizer closes the file)."""

    def __init__(self, path: str, descriptor: int) -> None:
        self.path, self.descriptor = path, descriptor
        self.holding = False
        # This transaction gave up waiting: its later writes go straight to SQLite's lock
        # rather than wait LOCK_WAIT_SECONDS each.
        self.gave_up = False
        # The set of the thread that took the lock: the one to strike it from on release,
        # whichever thread ends the transaction (the pool may, when the connection returns).
        self.holder_paths: set[str] | None = None

    def take(self) -> None:
        """Wait for the lock file, unless this connection (or, through another connection, this
        thread) holds it already, or this transaction gave up on it."""
        if self.holding or self.gave_up:
            return
        held = _held_paths()
        if self.path in held or _set_aside_until(self.path) > time.monotonic():
            return
        if not self._wait(LOCK_WAIT_SECONDS):
            # Held for longer than any transaction of the service takes: go on to SQLite's own
            # lock and busy timeout, which say "database is locked" if it is.
            self.gave_up = True
            _set_aside_for_a_while(self.path)
            return
        self.holding = True
        held.add(self.path)
        self.holder_paths = held

    def _wait(self, seconds: float) -> bool:
        pause = FIRST_PAUSE_SECONDS
        deadline = 0.0
        while True:
            try:
                fcntl.flock(self.descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                pass
            now = time.monotonic()
            deadline = deadline or now + seconds
            if now >= deadline:
                return False
            time.sleep(pause)
            pause = min(2 * pause, LONGEST_PAUSE_SECONDS)

    def release(self) -> None:
        """The transaction is over: give the lock file up (if held) and wait for it next time."""
        self.gave_up = False
        if not self.holding:
            return
        self.holding = False
        if self.holder_paths is not None:
            self.holder_paths.discard(self.path)
            self.holder_paths = None
        fcntl.flock(self.descriptor, fcntl.LOCK_UN)

    def close(self) -> None:
        if self.descriptor < 0:
            return
        try:
            self.release()
        finally:
            os.close(self.descriptor)
            self.descriptor = -1


class _Cursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> Self:
        return self._after_lock(super().execute, sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Self:
        return self._after_lock(super().executemany, sql, seq_of_parameters)

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        # A script may write, and sqlite3 commits before running it.
        connection: WriterLockConnection = self.connection  # type: ignore[assignment]
        connection.take_writer_lock()
        try:
            return super().executescript(sql_script)
        finally:
            connection.release_outside_transaction()

    def _after_lock(self, run: Callable[[str, Any], Self], sql: str, parameters: Any) -> Self:
        """Run a statement, having waited for the lock file first if it writes."""
        connection: WriterLockConnection = self.connection  # type: ignore[assignment]
        if _is_write(sql):
            connection.take_writer_lock()
        try:
            return run(sql, parameters)
        finally:
            connection.release_outside_transaction()


class WriterLockConnection(sqlite3.Connection):
    """A sqlite3 connection (`sqlite3.connect(..., factory=WriterLockConnection)`) that holds
    the database's writer lock file from its first write to the end of its transaction."""

    def __init__(self, database: str | os.PathLike[str], *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        path = writer_lock_path(os.fspath(database))
        # An open file of its own: flock belongs to an open file, so two connections of one
        # process wait for each other as two processes do.
        descriptor = _open_lock_file(path) if path is not None else None
        self._lock = _WriterLock(path, descriptor) if path is not None and descriptor is not None else None
        if self._lock is not None:
            weakref.finalize(self, self._lock.close)

    def cursor(self, factory: Any = _Cursor) -> Any:
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        cursor: _Cursor = self.cursor()
        return cursor.execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> sqlite3.Cursor:
        cursor: _Cursor = self.cursor()
        return cursor.executemany(sql, seq_of_parameters)

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        cursor: _Cursor = self.cursor()
        return cursor.executescript(sql_script)

    @property
    def holds_writer_lock(self) -> bool:
        """Whether this connection holds the lock file now."""
        return self._lock is not None and self._lock.holding

    def take_writer_lock(self) -> None:
        """Before a write: wait for the lock file (see `_WriterLock.take`)."""
        if self._lock is not None:
            self._lock.take()

    def release_outside_transaction(self) -> None:
        """After a statement or a commit: once no transaction is open (a commit, a rollback, a
        write that ran on its own, a failed first write), give the lock file up."""
        if self._lock is not None and not self.in_transaction:
            self._lock.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            # A failed COMMIT leaves the transaction open, and SQLite's lock with it.
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
            if self._lock is not None:
                self._lock.close()
