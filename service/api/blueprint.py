"""The API blueprint that every API view module attaches its routes to."""

from flask import Blueprint

api = Blueprint("api", __name__, url_prefix="/api/v1")
