"""Counting events for the metrics, from anywhere, without importing the metrics module."""

from __future__ import annotations

from flask import current_app, has_app_context


def count(metric: str, *labels: str, by: int = 1) -> None:
    """Add one (or `by`) to a counter of the current app's metrics, if metrics are on."""
    if not has_app_context():
        return
    metrics = current_app.extensions.get("resetdesk.metrics")
    if metrics is not None:
        metrics.child(metric, labels).inc(by)
