"""Each account's hourly cap on self-service reset mails, in a table of its own.

The dispatcher takes one mail from the account's hour before issuing a reset. The check and
the count are one conditional UPDATE of the account's row, so however many requests name the
account, and however many dispatchers resolve them at once, the cap holds. It is not a rate
limit of the web layer: it holds with RATELIMIT_ENABLED=false too.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import case, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from service.models import ResetMailQuota
from service.platform.database import DbSession, rows_changed

MAIL_WINDOW = timedelta(hours=1)


def take_reset_mail(session: DbSession, account_id: int, *, per_hour: int, now: datetime) -> bool:
    """Count one reset mail against the account's hour; False when the hour's mails are used up.

    A window starts with the first mail after the last window ended; the caller commits.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        insert(ResetMailQuota)
        .values(account_id=account_id, window_started_at=now, used=0)
        .on_conflict_do_nothing(index_elements=["account_id"])
    )
    window_over = ResetMailQuota.window_started_at <= now - MAIL_WINDOW
    taken = session.execute(
        update(ResetMailQuota)
        .where(ResetMailQuota.account_id == account_id, or_(window_over, ResetMailQuota.used < per_hour))
        .values(
            used=case((window_over, 1), else_=ResetMailQuota.used + 1),
            window_started_at=case((window_over, now), else_=ResetMailQuota.window_started_at),
        )
        .execution_options(synchronize_session=False)
    )
    return rows_changed(taken) == 1


def seconds_until_next_mail(session: DbSession, account_id: int, *, now: datetime) -> int:
    """How long until the account's hour of reset mails starts afresh."""
    started = session.scalar(select(ResetMailQuota.window_started_at).where(ResetMailQuota.account_id == account_id))
    if started is None:
        return 1
    return max(1, int((started + MAIL_WINDOW - now).total_seconds()) + 1)
