"""The HTML pages customers see."""

from .pages import pages

__all__ = ["pages"]
