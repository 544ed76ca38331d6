"""The HTML pages customers see, a door: Reset Your Password, the new-password form reached
from a link, and the login-help page."""

from service.web.pages import pages

__all__ = ["pages"]
