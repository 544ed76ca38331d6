"""Deleting what has outlived its retention, a small batch at a time, so no lock is held long."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import InstrumentedAttribute

from service.models import AuditEvent, OutboxMessage, OutboxStatus, RequestStatus, ResetRequest
from service.platform.database import DbSession, rows_changed

BATCH_SIZE = 500


@dataclass(frozen=True)
class RetentionPolicy:
    """How long each kind of row is kept once it is finished with."""

    reset_requests: timedelta
    outbox: timedelta
    audit_events: timedelta

    @classmethod
    def from_settings(cls, config: Mapping[str, Any]) -> RetentionPolicy:
        return cls(
            reset_requests=timedelta(days=config["RETAIN_RESET_REQUESTS_DAYS"]),
            outbox=timedelta(days=config["RETAIN_OUTBOX_DAYS"]),
            audit_events=timedelta(days=config["RETAIN_AUDIT_DAYS"]),
        )


@dataclass
class SweepReport:
    """How many rows each table lost."""

    deleted: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


def expired_rows(
    policy: RetentionPolicy, now: datetime
) -> list[tuple[str, type, InstrumentedAttribute[int], ColumnElement[bool]]]:
    """Per table: its name, model, id column, and what makes one of its rows old enough to delete."""
    return [
        (
            "reset_requests",
            ResetRequest,
            ResetRequest.id,
            (ResetRequest.status != RequestStatus.PENDING) & (ResetRequest.requested_at < now - policy.reset_requests),
        ),
        (
            "outbox",
            OutboxMessage,
            OutboxMessage.id,
            OutboxMessage.status.in_((OutboxStatus.SENT, OutboxStatus.FAILED))
            & (OutboxMessage.created_at < now - policy.outbox),
        ),
        ("audit_events", AuditEvent, AuditEvent.id, AuditEvent.at < now - policy.audit_events),
    ]


def delete_batch(
    session: DbSession, table: type, id_column: InstrumentedAttribute[int], old: ColumnElement[bool], *, limit: int
) -> int:
    """Delete up to `limit` old rows of one table; the caller commits. Returns how many went."""
    ids = list(session.scalars(select(id_column).where(old).order_by(id_column).limit(limit)))
    if not ids:
        return 0
    return rows_changed(session.execute(delete(table).where(id_column.in_(ids)).execution_options(synchronize_session=False)))


def table_sizes(session: DbSession) -> dict[str, int]:
    """Rows in each table retention looks after, for `outbox status`."""
    return {
        name: session.scalar(select(func.count()).select_from(model)) or 0
        for name, model in (("reset_requests", ResetRequest), ("outbox", OutboxMessage), ("audit_events", AuditEvent))
    }
