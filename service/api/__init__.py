"""The JSON API under /api/v1, a door: each view reads its body, calls the rules, commits once
and answers; importing the view modules attaches their routes."""

from service.api import accounts, admin, contact, docs, reminders, resets, support
from service.api.blueprint import api

__all__ = ["accounts", "admin", "api", "contact", "docs", "reminders", "resets", "support"]
