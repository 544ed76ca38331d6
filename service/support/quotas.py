"""Each agent's hourly quota of resets, in a table of its own.

The check and the count are one conditional UPDATE of the actor's row, so simultaneous
requests cannot both take the last reset of the hour, on SQLite as on PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask_babel import gettext as _
from sqlalchemy import case, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from service.models import AgentResetQuota
from service.platform.database import DbSession, rows_changed
from service.platform.errors import RateLimited

QUOTA_WINDOW = timedelta(hours=1)


def _ensure_row(session: DbSession, actor: str, now: datetime) -> None:
    """The actor's quota row, made if missing; a simultaneous maker is no error."""
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        insert(AgentResetQuota)
        .values(actor=actor, window_started_at=now, used=0)
        .on_conflict_do_nothing(index_elements=["actor"])
    )


def take_reset_from_quota(session: DbSession, actor: str, *, quota: int, now: datetime) -> None:
    """Count one reset against the actor's hour, or raise RateLimited when none is left.

    A window starts with the first reset after the last window ended; the caller's commit
    keeps the count, and its rollback (a refused reset) gives the reset back.
    """
    _ensure_row(session, actor, now)
    window_over = AgentResetQuota.window_started_at <= now - QUOTA_WINDOW
    taken = session.execute(
        update(AgentResetQuota)
        .where(AgentResetQuota.actor == actor, or_(window_over, AgentResetQuota.used < quota))
        .values(
            used=case((window_over, 1), else_=AgentResetQuota.used + 1),
            window_started_at=case((window_over, now), else_=AgentResetQuota.window_started_at),
        )
        .execution_options(synchronize_session=False)
    )
    if rows_changed(taken) == 1:
        return
    started = session.scalar(select(AgentResetQuota.window_started_at).where(AgentResetQuota.actor == actor))
    retry_after = (started + QUOTA_WINDOW - now).total_seconds() if started else QUOTA_WINDOW.total_seconds()
    raise RateLimited(
        _("You have sent %(quota)d resets in the past hour, the most allowed. Ask a supervisor.", quota=quota),
        retry_after=int(retry_after) + 1,
    )
