"""The database: the session type rules take, SQLite's pragmas, the embedded default's schema,
and the mark a transaction leaves when it queued work for the dispatcher."""

from __future__ import annotations

import fcntl
import logging
from pathlib import Path
from typing import Any, cast

import flask_migrate
from flask import Flask
from sqlalchemy import CursorResult, Result, event
from sqlalchemy.orm import Session, scoped_session

from service.platform.extensions import db

# What rules take as their session: a plain Session in scripts, Flask-SQLAlchemy's scoped one
# in the app.
DbSession = Session | scoped_session[Any]

QUEUED_WORK = "resetdesk.queued_work"
UNCOMMITTED_WORK = "resetdesk.uncommitted_work"


def rows_changed(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed: what a conditional update's caller checks."""
    return cast(CursorResult[Any], result).rowcount


def without_waiting_for_disk(session: DbSession) -> None:
    """Let the current transaction's commit return before its log reaches the disk.

    PostgreSQL's `synchronous_commit = off` for this transaction only: once COMMIT returns the
    change is visible and survives a crash of this process, but a crash of the database server
    within a fraction of a second (3 x wal_writer_delay) may forget it. That is what every
    commit on SQLite already is (WAL with synchronous=NORMAL). For records whose loss only
    repeats work, never loses it; it saves a disk flush per commit.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.connection().exec_driver_sql("SET LOCAL synchronous_commit TO OFF")


def note_queued_work(session: DbSession) -> None:
    """Mark the session's transaction as having queued work (a request, a message) to dispatch;
    the mark counts once that transaction commits, and is forgotten if it rolls back."""
    session.info[UNCOMMITTED_WORK] = True


def take_queued_work(session: DbSession) -> bool:
    """Whether committed work was queued since the last look; clears the mark."""
    return bool(session.info.pop(QUEUED_WORK, False))


def _work_committed(session: Session) -> None:
    if session.info.pop(UNCOMMITTED_WORK, False):
        session.info[QUEUED_WORK] = True


def _work_rolled_back(session: Session, _previous: Any) -> None:
    session.info.pop(UNCOMMITTED_WORK, None)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers and one writer work at once; NORMAL syncs at checkpoints, not at every
    # commit, which keeps a reset request's insert cheap (and its timing flat).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def prepare_database(app: Flask) -> None:
    """Set SQLite up on every connection; give the embedded default its schema."""
    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    # Bookkeeping of the wake-up mark only: work queued by a refused (rolled back) request is
    # gone, and must not wake the dispatcher for nothing.
    if not event.contains(db.session, "after_commit", _work_committed):
        event.listen(db.session, "after_commit", _work_committed)
        event.listen(db.session, "after_soft_rollback", _work_rolled_back)
    if app.config["DATABASE_EMBEDDED"] and not app.config["TESTING"]:
        upgrade_schema(app)


def upgrade_schema(app: Flask) -> None:
    """Apply pending migrations, one process at a time (gunicorn starts several at once)."""
    lock_path = Path(app.instance_path) / "migrate.lock"
    alembic_log = logging.getLogger("alembic")
    level = alembic_log.level
    # Every command and every start runs this; a schema already current is nothing to report.
    app.extensions["resetdesk.quiet_migrations"] = True
    alembic_log.setLevel(logging.WARNING)
    try:
        with open(lock_path, "w") as lock, app.app_context():
            fcntl.flock(lock, fcntl.LOCK_EX)
            flask_migrate.upgrade(directory=app.extensions["migrate"].directory)
    finally:
        alembic_log.setLevel(level)
        app.extensions["resetdesk.quiet_migrations"] = False
