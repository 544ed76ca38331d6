"""Each account's hourly cap on self-service reset mails, in a table of its own.

The dispatcher takes one mail from the account's hour before issuing a reset. The check and
the count are one conditional UPDATE of the account's row, so however many requests name the
account, and however many dispatchers resolve them at once, the cap holds. It is not a rate
limit of the web layer: it holds with RATELIMIT_ENABLED=false too.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from service.models import ResetMailQuota
from service.platform.database import DbSession, rows_changed

MAIL_WINDOW = timedelta(hours=1)

_QUOTA = cast(Table, ResetMailQuota.__table__)
_STARTED = _QUOTA.c.window_started_at
# Built once, values bound per call: the dispatcher runs both for every reset it issues.
_WINDOW_START = bindparam("window_start", type_=_STARTED.type)
_WINDOW_OVER = _STARTED <= _WINDOW_START
TAKE_RESET_MAIL = (
    update(_QUOTA)
    .where(_QUOTA.c.account_id == bindparam("quota_account"), or_(_WINDOW_OVER, _QUOTA.c.used < bindparam("per_hour")))
    .values(
        used=case((_WINDOW_OVER, 1), else_=_QUOTA.c.used + 1),
        window_started_at=case((_WINDOW_OVER, bindparam("now", type_=_STARTED.type)), else_=_STARTED),
    )
)


@cache
def _open_quota_row(dialect: str) -> Any:
    """The account's quota row, made if missing (the statement, for this database)."""
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(_QUOTA)
        .values(account_id=bindparam("quota_account"), window_started_at=bindparam("now", type_=_STARTED.type), used=0)
        .on_conflict_do_nothing(index_elements=["account_id"])
    )


def take_reset_mail(session: DbSession, account_id: int, *, per_hour: int, now: datetime) -> bool:
    """Count one reset mail against the account's hour; False when the hour's mails are used up.

    A window starts with the first mail after the last window ended; the caller commits.
    """
    session.execute(_open_quota_row(session.get_bind().dialect.name), {"quota_account": account_id, "now": now})
    taken = session.execute(
        TAKE_RESET_MAIL,
        {"quota_account": account_id, "per_hour": per_hour, "now": now, "window_start": now - MAIL_WINDOW},
    )
    return rows_changed(taken) == 1


def seconds_until_next_mail(session: DbSession, account_id: int, *, now: datetime) -> int:
    """How long until the account's hour of reset mails starts afresh."""
    started = session.scalar(select(ResetMailQuota.window_started_at).where(ResetMailQuota.account_id == account_id))
    if started is None:
        return 1
    return max(1, int((started + MAIL_WINDOW - now).total_seconds()) + 1)
