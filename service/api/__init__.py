"""The JSON API under /api/v1, a door: each view reads its body, calls the rules, commits once
and answers; importing the view modules attaches their routes."""

from service.api import accounts, admin, contact, reminders, resets, support
from service.api.blueprint import api

__all__ = ["accounts", "admin", "api", "contact", "reminders", "resets", "support"]
