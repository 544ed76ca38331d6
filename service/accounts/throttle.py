"""Sign-in throttling: wrong passwords per username in a 15-minute moving window.

Counts are kept under a keyed hash of the normalised name, never the name typed.

The counters live in the rate-limit storage (Redis in production), so every process and host
sees the same count. If that storage fails, the throttle keeps counting in this process's
memory until it answers again: limits loosen to per-process, requests never fail.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from flask import current_app
from flask_babel import gettext as _
from limits import RateLimitItemPerMinute
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisClusterStorage, RedisStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from service.platform.clients import rate_limit_key_for_ip
from service.platform.counters import count
from service.platform.errors import RateLimited
from service.platform.sealing import username_hash

WINDOW_MINUTES = 15
RETRY_SHARED_STORAGE_AFTER = 30.0
# Far longer than the window, so a generation never lapses back to one whose failures still count.
GENERATION_SECONDS = 30 * 24 * 3600

# An attempt in progress holds its slot this long at most (a crashed process's slot lapses).
IN_FLIGHT_SECONDS = 300

T = TypeVar("T")


def _in_flight(key: str) -> str:
    return f"in-flight:{key}"

log = logging.getLogger(__name__)

# On Redis, each step of an attempt is one round trip: a script run where the data is, as Redis
# advises for a read-then-write. The lists and counters are the very ones `limits` keeps (its
# moving window: failure times newest first, at most the limit of them; its INCRBY counters
# with their expiry set on creation), so `is_locked`, `failures` and `unlock` read them as ever.
# Every attempt runs the same two scripts whatever the name, existing or not.
#
# Take a slot: count it among the attempts in progress, then keep it only while failures in
# the window plus attempts in progress stay within the limit. 1 when kept, 0 when refused.
_RESERVE_SCRIPT = b"""
local ttl, limit, since = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local in_progress = redis.call('incrby', KEYS[1], 1)
if in_progress == 1 then redis.call('expire', KEYS[1], ttl) end
local failures = 0
local low, high = 0, math.min(redis.call('llen', KEYS[2]), limit) - 1
while low <= high do
    local middle = math.floor((low + high) / 2)
    local at = tonumber(redis.call('lindex', KEYS[2], middle))
    if at and at >= since then
        failures = middle + 1
        low = middle + 1
    else
        high = middle - 1
    end
end
if math.max(1, in_progress) <= limit - failures then return 1 end
if redis.call('incrby', KEYS[1], -1) == -1 then redis.call('expire', KEYS[1], ttl) end
return 0
"""
# Give the slot back; for a wrong password, count it (as limits' acquire_moving_window does)
# and say whether the name is locked now. 1 when locked, else 0.
_FINISH_SCRIPT = b"""
local ttl, failed, limit, now, expiry = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('incrby', KEYS[1], -1) == -1 then redis.call('expire', KEYS[1], ttl) end
if failed ~= '1' then return 0 end
local oldest = redis.call('lindex', KEYS[2], limit - 1)
if not (oldest and tonumber(oldest) >= now - expiry) then
    redis.call('lpush', KEYS[2], now)
    redis.call('ltrim', KEYS[2], 0, limit - 1)
    redis.call('expire', KEYS[2], expiry)
end
oldest = redis.call('lindex', KEYS[2], limit - 1)
if oldest and tonumber(oldest) >= now - expiry then return 1 end
return 0
"""


class _RedisSteps:
    """The two steps of an attempt as scripts on the throttle's own Redis connection."""

    def __init__(self, storage: RedisStorage, item: RateLimitItemPerMinute) -> None:
        self._storage, self._item = storage, item
        connection = storage.get_connection()
        self._reserve = connection.register_script(_RESERVE_SCRIPT)
        self._finish = connection.register_script(_FINISH_SCRIPT)

    def _keys(self, key: str) -> list[str]:
        return [self._storage.prefixed_key(_in_flight(key)), self._storage.prefixed_key(self._item.key_for(key))]

    def _call(self, script: Any, key: str, args: list[Any]) -> int:
        try:
            return int(script(keys=self._keys(key), args=args))
        except self._storage.base_exceptions as error:
            # As limits' own calls do with wrap_exceptions: the throttle then counts in memory.
            raise StorageError(error) from error

    def reserve(self, key: str) -> bool:
        expiry = self._item.get_expiry()
        return self._call(self._reserve, key, [IN_FLIGHT_SECONDS, self._item.amount, time.time() - expiry]) == 1

    def finish(self, key: str, *, failed: bool) -> bool:
        args = [IN_FLIGHT_SECONDS, "1" if failed else "0", self._item.amount, time.time(), self._item.get_expiry()]
        return self._call(self._finish, key, args) == 1


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
        # A plain Redis (or Sentinel) keeps both keys of a name on one server; a cluster may
        # not, so it goes through limits' calls one by one.
        self._redis_steps = (
            _RedisSteps(shared, self.item)
            if isinstance(shared, RedisStorage) and not isinstance(shared, RedisClusterStorage)
            else None
        )

    def _limiter(self) -> MovingWindowRateLimiter:
        if self._shared_down_since is None:
            return self._shared_limiter
        if time.monotonic() - self._shared_down_since > RETRY_SHARED_STORAGE_AFTER:
            self._shared_down_since = None
            return self._shared_limiter
        return self._local_limiter

    def _run(self, call: Callable[[MovingWindowRateLimiter], T]) -> T:
        limiter = self._limiter()
        try:
            return call(limiter)
        except StorageError as error:
            if limiter is self._local_limiter:
                raise
            log.warning("throttle storage failed (%s); counting in memory for now", error)
            self._shared_down_since = time.monotonic()
            return call(self._local_limiter)

    def is_locked(self, key: str) -> bool:
        """True while the key has used up its failures in the window."""
        return not self._run(lambda limiter: limiter.test(self.item, key))

    def seconds_until_unlocked(self, key: str) -> int:
        """How long until the oldest failure leaves the window."""
        reset_at, _remaining = self._run(lambda limiter: limiter.get_window_stats(self.item, key))
        return max(1, int(reset_at - time.time()) + 1)

    def _refuse(self, key: str) -> RateLimited:
        count("throttled")
        return RateLimited(
            _("Too many wrong passwords for this username."),
            retry_after=self.seconds_until_unlocked(key),
        )

    def failures(self, key: str) -> int:
        """How many wrong passwords the window holds for the key now."""
        _reset_at, remaining = self._run(lambda limiter: limiter.get_window_stats(self.item, key))
        return max(0, int(self.item.amount) - int(remaining))

    def check(self, key: str) -> None:
        """Raise RateLimited while the key is locked (a look only; `attempt` is what counts)."""
        if self.is_locked(key):
            raise self._refuse(key)

    @contextmanager
    def attempt(self, key: str) -> Iterator[Attempt]:
        """Hold one of the key's allowed attempts while its password is checked, or raise RateLimited.

        Deciding and counting are one step: an attempt takes a slot in an atomic counter of
        attempts in progress, and goes ahead only while failures plus attempts in progress stay
        within the limit. So simultaneous guesses cannot all pass one look taken before any of
        them was counted. The slot is given back when the attempt ends; `Attempt.failed` gives
        it back and counts the wrong password in the same step, so a right one costs nothing.
        """
        if not self._run(lambda limiter: self._reserve(limiter, key)):
            raise self._refuse(key)
        attempt = Attempt(self, key)
        try:
            yield attempt
        finally:
            if not attempt.finished:
                self._finish(key, failed=False)

    def _reserve(self, limiter: MovingWindowRateLimiter, key: str) -> bool:
        if limiter is self._shared_limiter and self._redis_steps is not None:
            return self._redis_steps.reserve(key)
        # incr is atomic in every storage: each attempt sees every other one still in progress.
        # A count lost to expiry can go below zero; never let that widen the allowance.
        in_progress = max(1, limiter.storage.incr(_in_flight(key), IN_FLIGHT_SECONDS))
        _reset_at, remaining = limiter.get_window_stats(self.item, key)
        if in_progress <= remaining:
            return True
        limiter.storage.incr(_in_flight(key), IN_FLIGHT_SECONDS, -1)
        return False

    def _finish(self, key: str, *, failed: bool) -> bool:
        """Give an attempt's slot back, counting its wrong password if it `failed`; True when
        the key is locked now."""

        def finish(limiter: MovingWindowRateLimiter) -> bool:
            if limiter is self._shared_limiter and self._redis_steps is not None:
                return self._redis_steps.finish(key, failed=failed)
            limiter.storage.incr(_in_flight(key), IN_FLIGHT_SECONDS, -1)
            if not failed:
                return False
            limiter.hit(self.item, key)
            return not limiter.test(self.item, key)

        return self._run(finish)

    def record_failure(self, key: str) -> None:
        """Count one wrong password."""
        self._run(lambda limiter: limiter.hit(self.item, key))

    def unlock(self, key: str) -> None:
        """Forget the failures, as an agent's unlock does."""
        self._run(lambda limiter: limiter.clear(self.item, key))

    def first_notice(self, key: str) -> bool:
        """True once per throttle window of the key: whether to tell the account's owner now.

        Several attempts can see the lock start at once; the atomic counter lets one of them tell.
        """
        return int(self._run(lambda limiter: limiter.storage.incr(f"notice:{key}", WINDOW_MINUTES * 60))) == 1

    def generation(self, name: str) -> int:
        """A counter that `new_generation` moves on; keys that embed it are all dropped at once."""
        return int(self._run(lambda limiter: limiter.storage.get(f"throttle-generation:{name}")))

    def new_generation(self, name: str) -> None:
        """Move a generation on, so every key made with the old one is forgotten together."""
        self._run(lambda limiter: limiter.storage.incr(f"throttle-generation:{name}", GENERATION_SECONDS))


class Attempt:
    """One sign-in attempt holding its slot; `failed` counts its wrong password."""

    def __init__(self, throttle: SignInThrottle, key: str) -> None:
        self._throttle, self._key = throttle, key
        self.finished = False

    def failed(self) -> bool:
        """Count the wrong password and give the slot back; True when the key is locked now."""
        self.finished = True
        return self._throttle._finish(self._key, failed=True)


def sign_in_throttle() -> SignInThrottle:
    """The current app's throttle."""
    throttle: SignInThrottle = current_app.extensions["resetdesk.throttle"]
    return throttle


def account_throttle_key(username_key: str) -> str:
    """The throttle key of a customer username (existing or not).

    A keyed hash of the normalised name, not the name: the storage (Redis) keeps its keys in
    clear, and people type passwords and email addresses into the username box. One name has
    one key however spelt; a new SECRET_KEY starts every count afresh.
    """
    return f"sign-in:account:{username_hash(username_key)}"


def agent_throttle_key(username_key: str, ip: str | None) -> str:
    """The throttle key of a support agent's username from one client address.

    Per address, so strangers guessing cannot lock an agent out from everywhere; with the
    agent's generation, so `agents unlock` lifts every address's count at once. The name is
    kept as a keyed hash, as for customers: a mistyped name may be anything.
    """
    name = username_hash(username_key)
    generation = sign_in_throttle().generation(f"agent:{name}")
    # By /64 for IPv6, as every per-address limit: one customer's network is one address.
    return f"sign-in:agent:{name}:{generation}:{rate_limit_key_for_ip(ip or 'unknown')}"


def unlock_agent(username_key: str) -> None:
    """Lift an agent's sign-in throttle from every address."""
    sign_in_throttle().new_generation(f"agent:{username_hash(username_key)}")
