"""The JSON API under /api/v1: importing the view modules attaches their routes."""

from . import accounts, admin, contact, resets
from .blueprint import api

__all__ = ["api", "accounts", "admin", "contact", "resets"]
