"""Liveness and readiness probes for the load balancer and the orchestrator."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from service.platform.extensions import db

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz() -> dict[str, Any]:
    """200 while the process can answer at all."""
    return {"status": "ok"}


@health.get("/readyz")
def readyz() -> tuple[dict[str, Any], int]:
    """200 only while the database answers; 503 tells the balancer to send traffic elsewhere."""
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        db.session.rollback()
        return {"status": "unavailable", "database": "down"}, 503
    return {"status": "ok", "database": "up"}, 200
