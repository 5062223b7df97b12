"""How much work a caller may cause: a rate per key, and a bound on costly work at once.

`RateLimit` counts hits per key in a moving window with the `limits` library: in this
process, or shared through Redis when RATE_LIMIT_STORAGE_URL is set (several web processes
or hosts then share one count). If Redis cannot be reached, the count falls back to this
process (logged), so a Redis outage neither opens the door nor locks everyone out. Keys are
stored as SHA-256, so the storage never holds an address or a key as sent.

`WorkGate` lets a few callers do costly work at once (argon2 with 64 MiB per check), lets a
few more wait, and refuses the rest at once with `Busy`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

log = logging.getLogger(__name__)

# A key's own rate limit or INGEST_KEY_RATE_LIMIT: one of these turns the limit off.
NO_RATE_LIMIT = frozenset({"0", "none", "off"})
# A limit check must not wait long on a Redis that does not answer.
REDIS_TIMEOUT_SECONDS = 0.5
FALLBACK_WARNING_INTERVAL_SECONDS = 60.0


def rate_limit_disabled(rate: str) -> bool:
    return rate.strip().lower() in NO_RATE_LIMIT


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_seconds: int  # 0 when allowed; otherwise whole seconds, at least 1


_shared_storages: dict[str, Storage] = {}
_shared_lock = threading.Lock()


def shared_storage(url: str) -> Storage:
    """One storage (one connection pool) per URL in this process."""
    with _shared_lock:
        if url not in _shared_storages:
            storage = storage_from_string(
                url,
                wrap_exceptions=True,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            )
            if not isinstance(storage, Storage):
                raise ValueError("rate limit storage: an asynchronous storage scheme")
            _shared_storages[url] = storage
        return _shared_storages[url]


class RateLimit:
    """At most `rate` (limits notation: "10/minute", "100 per hour") hits per key."""

    def __init__(self, name: str, rate: str, storage_url: str = "") -> None:
        self.name = name
        self.rate = rate
        self.storage_url = storage_url
        self._item: RateLimitItem = parse(rate)
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shared = MovingWindowRateLimiter(shared_storage(storage_url)) if storage_url else None
        self._warned_at = -math.inf

    def _key(self, key: tuple[str, ...]) -> str:
        material = "\x1f".join((self.name, *key)).encode("utf-8", "surrogatepass")
        return hashlib.sha256(material).hexdigest()

    def hit(self, *key: str) -> Verdict:
        """Counts one hit for `key`; refused when the window is already full."""
        digest = self._key(key)
        if self._shared is not None:
            try:
                return self._hit(self._shared, digest)
            except StorageError as error:
                self._warn(error)
        return self._hit(self._local, digest)

    def _hit(self, limiter: MovingWindowRateLimiter, digest: str) -> Verdict:
        if limiter.hit(self._item, digest):
            return Verdict(True, 0)
        stats = limiter.get_window_stats(self._item, digest)
        return Verdict(False, max(1, math.ceil(stats.reset_time - time.time())))

    def clear(self, *key: str) -> None:
        """Forgets the hits of `key` (an operator's reset; tests)."""
        digest = self._key(key)
        for limiter in (self._shared, self._local):
            if limiter is not None:
                limiter.clear(self._item, digest)

    def _warn(self, error: StorageError) -> None:
        now = time.monotonic()
        if now - self._warned_at >= FALLBACK_WARNING_INTERVAL_SECONDS:
            self._warned_at = now
            log.warning(
                "rate limit %s: shared storage unavailable (%s); counting in this process",
                self.name,
                type(error.storage_error).__name__,
            )


class Busy(Exception):
    """Refused without waiting: the work is at its bound and its queue is full."""

    def __init__(self, retry_after_seconds: int = 1) -> None:
        super().__init__("busy; try again shortly")
        self.retry_after_seconds = retry_after_seconds


class WorkGate:
    """At most `slots` callers inside at once and `queue` more waiting (each at most
    `wait_seconds`); any other caller gets `Busy` at once. Not re-entrant."""

    def __init__(self, slots: int, queue: int, wait_seconds: float = 10.0) -> None:
        self.slots = slots
        self.queue = queue
        self.wait_seconds = wait_seconds
        self._semaphore = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._admitted = 0  # inside or waiting

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._lock:
            if self._admitted >= self.slots + self.queue:
                raise Busy()
            self._admitted += 1
        try:
            if not self._semaphore.acquire(timeout=self.wait_seconds):
                raise Busy()
            try:
                yield
            finally:
                self._semaphore.release()
        finally:
            with self._lock:
                self._admitted -= 1
