"""The outbox's gauges: its depth by status and the age of its oldest waiting message."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Flask
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from service.models import OutboxStatus
from service.outbox.queue import outbox_status
from service.platform.clock import utcnow
from service.platform.extensions import db


class OutboxCollector(Collector):
    """Outbox depth and the age of its oldest waiting message, read from the database at scrape."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("resetdesk_outbox_depth", "Messages by status.", labels=["status"])
        oldest = GaugeMetricFamily("resetdesk_outbox_oldest_age_seconds", "Age of the oldest waiting message.")
        with self.app.app_context():
            try:
                status = outbox_status(db.session, failed_limit=0)
            except SQLAlchemyError:
                db.session.rollback()
                return
            finally:
                db.session.remove()
        for name in OutboxStatus:
            depth.add_metric([name], status.counts.get(name, 0))
        age = (utcnow() - status.oldest_pending_at).total_seconds() if status.oldest_pending_at else 0.0
        oldest.add_metric([], age)
        yield depth
        yield oldest
