"""Housekeeping deletes what has outlived its retention, in small batches, and nothing else."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import func, select

from service.models import AuditEvent, OutboxMessage, OutboxStatus, RequestStatus, ResetRequest
from service.platform.clock import utcnow
from service.platform.config import ConfigError, load_config
from service.platform.extensions import db
from service.retention.sweep import RetentionPolicy
from service.worker.housekeeping import run_housekeeping

DAY = timedelta(days=1)


def add_rows(app: Flask, age: timedelta, count: int, *, finished: bool = True) -> None:
    """`count` rows of each kind, `age` old: finished ones (processed, sent) or still waiting."""
    at = utcnow() - age
    with app.app_context():
        for _ in range(count):
            db.session.add(
                ResetRequest(
                    username_sealed="", requested_at=at, attempts=0,
                    status=RequestStatus.PROCESSED if finished else RequestStatus.PENDING,
                )
            )
            db.session.add(
                OutboxMessage(
                    recipient="someone@example.com", subject="s", text_body="b", created_at=at, next_attempt_at=at,
                    status=OutboxStatus.SENT if finished else OutboxStatus.PENDING,
                )
            )
            db.session.add(AuditEvent(at=at, type="reset.requested", actor="self", details={}))
        db.session.commit()


def counts(app: Flask) -> dict[str, int]:
    with app.app_context():
        return {
            model.__tablename__: db.session.scalar(select(func.count()).select_from(model))
            for model in (ResetRequest, OutboxMessage, AuditEvent)
        }


def test_old_finished_rows_go_in_batches_and_recent_or_waiting_ones_stay(app: Flask) -> None:
    add_rows(app, 40 * DAY, 7)  # past the 30-day retention of requests and mail, within the audit year
    add_rows(app, 400 * DAY, 3)  # past every retention
    add_rows(app, 2 * DAY, 2)  # recent
    add_rows(app, 90 * DAY, 4, finished=False)  # still waiting: never deleted, however old
    policy = RetentionPolicy(reset_requests=30 * DAY, outbox=30 * DAY, audit_events=365 * DAY)
    with app.app_context():
        report = run_housekeeping(db.session, policy, now=utcnow(), batch_size=4)
    assert report.deleted == {"reset_requests": 10, "outbox": 10, "audit_events": 3}
    assert counts(app) == {"reset_requests": 6, "outbox": 6, "audit_events": 13}


def test_a_bounded_pass_stops_after_its_batches_and_the_next_goes_on(app: Flask) -> None:
    add_rows(app, 40 * DAY, 9)
    policy = RetentionPolicy(reset_requests=30 * DAY, outbox=30 * DAY, audit_events=365 * DAY)
    with app.app_context():
        first = run_housekeeping(db.session, policy, now=utcnow(), batch_size=4, max_batches=2)
        assert first.total == 8
        second = run_housekeeping(db.session, policy, now=utcnow(), batch_size=4)
    assert counts(app) == {"reset_requests": 0, "outbox": 0, "audit_events": 9}
    assert second.total == 10


def test_the_command_reports_what_it_deleted_and_outbox_status_shows_table_sizes(
    app: Flask, runner: FlaskCliRunner
) -> None:
    add_rows(app, 40 * DAY, 2)
    result = runner.invoke(args=["housekeeping", "run"])
    assert result.exit_code == 0, result.output
    assert "reset_requests\t2 deleted" in result.output and "outbox\t2 deleted" in result.output
    status = runner.invoke(args=["outbox", "status"])
    assert "table audit_events\t2 rows" in status.output


def test_the_audit_trail_may_not_be_kept_shorter_than_what_it_records() -> None:
    settings: dict[str, Any] = {"APP_ENV": "testing", "RETAIN_AUDIT_DAYS": 7, "RETAIN_OUTBOX_DAYS": 30}
    try:
        load_config({}, settings)
    except ConfigError as error:
        assert "RETAIN_AUDIT_DAYS" in str(error)
    else:
        raise AssertionError("a 7-day audit retention under a 30-day outbox one was accepted")


def test_the_dispatcher_housekeeps_now_and_then(app: Flask) -> None:
    from service.worker.dispatcher import Dispatcher

    add_rows(app, 40 * DAY, 3)
    dispatcher = Dispatcher(app)
    dispatcher.run_once()
    assert counts(app)["outbox"] == 3  # not yet due: the first sweep waits an interval
    dispatcher._next_housekeeping = 0.0
    dispatcher.run_once()
    assert counts(app) == {"reset_requests": 0, "outbox": 0, "audit_events": 3}
