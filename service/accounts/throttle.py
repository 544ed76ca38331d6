"""Sign-in throttling: wrong passwords per username in a 15-minute moving window.

The counters live in the rate-limit storage (Redis in production), so every process and host
sees the same count. If that storage fails, the throttle keeps counting in this process's
memory until it answers again: limits loosen to per-process, requests never fail.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import current_app
from flask_babel import gettext as _
from limits import RateLimitItemPerMinute
from limits.errors import StorageError
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from service.platform.counters import count
from service.platform.errors import RateLimited

WINDOW_MINUTES = 15
RETRY_SHARED_STORAGE_AFTER = 30.0

log = logging.getLogger(__name__)


class SignInThrottle:
    """Counts failures per key and says whether a key is locked."""

    def __init__(self, storage_uri: str, max_failures: int, storage_options: dict[str, Any] | None = None) -> None:
        self.item = RateLimitItemPerMinute(max_failures, WINDOW_MINUTES)
        shared = storage_from_string(storage_uri, wrap_exceptions=True, **(storage_options or {}))
        assert isinstance(shared, Storage), "the throttle needs a synchronous storage"
        self._shared: Storage = shared
        self._shared_limiter = MovingWindowRateLimiter(self._shared)
        self._local_limiter = MovingWindowRateLimiter(MemoryStorage())
        self._shared_down_since: float | None = None

    def _limiter(self) -> MovingWindowRateLimiter:
        if self._shared_down_since is None:
            return self._shared_limiter
        if time.monotonic() - self._shared_down_since > RETRY_SHARED_STORAGE_AFTER:
            self._shared_down_since = None
            return self._shared_limiter
        return self._local_limiter

    def _run(self, method: str, key: str) -> Any:
        limiter = self._limiter()
        try:
            return getattr(limiter, method)(self.item, key)
        except StorageError as error:
            if limiter is self._local_limiter:
                raise
            log.warning("throttle storage failed (%s); counting in memory for now", error)
            self._shared_down_since = time.monotonic()
            return getattr(self._local_limiter, method)(self.item, key)

    def is_locked(self, key: str) -> bool:
        """True while the key has used up its failures in the window."""
        return not self._run("test", key)

    def seconds_until_unlocked(self, key: str) -> int:
        """How long until the oldest failure leaves the window."""
        reset_at, _remaining = self._run("get_window_stats", key)
        return max(1, int(reset_at - time.time()) + 1)

    def failures(self, key: str) -> int:
        """How many wrong passwords the window holds for the key now."""
        _reset_at, remaining = self._run("get_window_stats", key)
        return max(0, int(self.item.amount) - int(remaining))

    def check(self, key: str) -> None:
        """Raise RateLimited while the key is locked."""
        if self.is_locked(key):
            count("throttled")
            raise RateLimited(
                _("Too many wrong passwords for this username. Try again later, or call customer service."),
                retry_after=self.seconds_until_unlocked(key),
            )

    def record_failure(self, key: str) -> None:
        """Count one wrong password."""
        self._run("hit", key)

    def unlock(self, key: str) -> None:
        """Forget the failures, as an agent's unlock does."""
        self._run("clear", key)


def sign_in_throttle() -> SignInThrottle:
    """The current app's throttle."""
    throttle: SignInThrottle = current_app.extensions["resetdesk.throttle"]
    return throttle


def account_throttle_key(username_key: str) -> str:
    """The throttle key of a customer username (existing or not)."""
    return f"sign-in:account:{username_key}"


def agent_throttle_key(username_key: str) -> str:
    """The throttle key of a support agent's username."""
    return f"sign-in:agent:{username_key}"
