"""The support doors: the agent API under /api/v1/support and the console at /support."""

from . import api
from .console import console

__all__ = ["api", "console"]
