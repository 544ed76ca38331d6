"""The JSON API under /api/v1."""

from flask import Blueprint

api = Blueprint("api", __name__, url_prefix="/api/v1")

from . import accounts  # noqa: E402,F401  (registers the views on the blueprint)
