"""Housekeeping, a door: deletes what has outlived its retention, committing after each small
batch so that no table is locked for long. Run by `flask housekeeping run` and, at a low rate,
by the dispatcher."""

from __future__ import annotations

from datetime import datetime

from flask import current_app

from service.platform.database import DbSession
from service.retention.sweep import BATCH_SIZE, RetentionPolicy, SweepReport, delete_batch, expired_rows


def retention_policy() -> RetentionPolicy:
    """The current app's retention policy, built once in create_app."""
    policy: RetentionPolicy = current_app.extensions["resetdesk.retention"]
    return policy


def run_housekeeping(
    session: DbSession,
    policy: RetentionPolicy,
    *,
    now: datetime,
    batch_size: int = BATCH_SIZE,
    max_batches: int | None = None,
) -> SweepReport:
    """Delete old rows table by table, one committed batch at a time; `max_batches` bounds a
    pass (the dispatcher's), None runs until nothing old is left."""
    report = SweepReport()
    batches = 0
    for name, table, id_column, old in expired_rows(policy, now):
        deleted = 0
        while max_batches is None or batches < max_batches:
            gone = delete_batch(session, table, id_column, old, limit=batch_size)
            session.commit()
            batches += 1
            deleted += gone
            if gone < batch_size:
                break
        report.deleted[name] = deleted
    return report
