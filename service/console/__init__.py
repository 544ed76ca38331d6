"""The support console, a door: agents sign in, find a customer, see the account and its
trail, and act on it; each page commits what it records."""

from service.console.views import console

__all__ = ["console"]
