"""The database: the session type rules take, SQLite's pragmas, the embedded default's schema,
and the mark a transaction leaves when it queued work for the dispatcher."""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import flask_migrate
from flask import Flask
from sqlalchemy import CTE, ColumnElement, Connection, CursorResult, Engine, Result, Subquery, event, select
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


def note_queued_work(session: DbSession | Connection) -> None:
    """Mark the session's (or `core_transaction`'s) transaction as having queued work (a request,
    a message) to dispatch; the mark counts once that transaction commits, and is forgotten if
    it rolls back."""
    session.info[UNCOMMITTED_WORK] = True


@contextmanager
def core_transaction(session: DbSession) -> Iterator[Connection]:
    """A Core connection in a transaction of its own, committed when the block ends (rolled back
    if it raises): for a door whose whole write is one statement, without the ORM session's
    unit of work. Work noted on it (`note_queued_work`) counts as the session's once committed,
    so the dispatcher is woken as for any other commit."""
    engine = session.get_bind()
    assert isinstance(engine, Engine), "a session bound to an engine, as the app's is"
    with engine.connect() as connection:
        connection.info.pop(UNCOMMITTED_WORK, None)
        try:
            with connection.begin():
                yield connection
            if connection.info.pop(UNCOMMITTED_WORK, False):
                session.info[QUEUED_WORK] = True
        finally:
            # The info dict belongs to the pooled DBAPI connection: leave no mark behind in it.
            connection.info.pop(UNCOMMITTED_WORK, None)


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


def inserted_id(result: Result[Any]) -> int:
    """The key a single-row INSERT just wrote (SQLite's last row id, PostgreSQL's RETURNING)."""
    key = cast(CursorResult[Any], result).inserted_primary_key
    assert key is not None, "a single-row INSERT reports its key"
    return int(key[0])


def due_ids_to_take(
    id_column: Any, due: ColumnElement[bool], *, limit: int, name: str, dialect: str = "postgresql"
) -> CTE | Subquery:
    """The ids of up to `limit` due rows, oldest first, locked for this transaction and skipping
    rows another worker holds: what an `UPDATE ... WHERE id IN (SELECT id FROM <this>)` takes.

    On PostgreSQL a MATERIALIZED CTE: as a plain sub-select PostgreSQL may re-run it for every
    outer row, and each re-run skips the rows this UPDATE already took, so the LIMIT would not
    hold. On SQLite a plain sub-select, so that the statement starts with UPDATE: Python's
    sqlite3 opens its transaction only before a statement that starts with INSERT, UPDATE,
    DELETE or REPLACE, and a `WITH ... UPDATE` would run and commit on its own, the rows taken
    before the work on them began.
    """
    ids = select(id_column).where(due).order_by(id_column).limit(limit).with_for_update(skip_locked=True)
    if dialect != "postgresql":
        return ids.subquery(name)
    return ids.cte(name).prefix_with("MATERIALIZED", dialect="postgresql")
