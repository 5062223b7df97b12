"""Pacing toward TikTok: at most TIKTOK_REQUEST_RATE requests per access token, all workers.

Each request takes a slot in a moving window (the `limits` library: never more than N in any
window of that length, which also keeps within a fixed window of N) before it is sent. The
window is counted in Redis when a storage URL is configured, so every worker process and host
shares one budget per token; event sets sharing a token share it. The key is a SHA-256 of the
token: the storage never holds a token.

If Redis cannot be reached, each process counts in its own memory (logged at most once a
minute; Redis is tried again after a few seconds), so an outage never stops delivery, at the
cost of each process then having the whole rate.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable

from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from crm_postback.core.rate_limits import FALLBACK_WARNING_INTERVAL_SECONDS, shared_storage

log = logging.getLogger(__name__)

# After a failed check, Redis is left alone this long: a Redis that does not answer would
# otherwise cost every request its socket timeout.
SHARED_RETRY_SECONDS = 5.0
# A wait ends this long after the slot frees: a request is counted here a few ms before it
# reaches TikTok, and one sent the instant its window frees could arrive inside it there.
SLOT_MARGIN_SECONDS = 0.05
KEY_NAMESPACE = "tiktok-pacing"


class RequestPacer:
    """At most `rate` (limits notation: "10/second", "600 per minute") requests per token."""

    def __init__(self, rate: str, storage_url: str = "") -> None:
        self.rate = rate
        self.storage_url = storage_url
        self._item: RateLimitItem = parse(rate)
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shared = MovingWindowRateLimiter(shared_storage(storage_url)) if storage_url else None
        self._shared_down_until = -math.inf
        self._warned_at = -math.inf
        self._lock = threading.Lock()

    @staticmethod
    def key(access_token: str) -> str:
        material = f"{KEY_NAMESPACE}\x1f{access_token}".encode("utf-8", "surrogatepass")
        return hashlib.sha256(material).hexdigest()

    @property
    def shared(self) -> bool:
        """Whether the count is currently the shared one (False: this process's own)."""
        return self._shared is not None and time.monotonic() >= self._shared_down_until

    def try_acquire(self, access_token: str) -> float:
        """Takes a slot for one request: 0.0 when taken, else the seconds until one frees."""
        digest = self.key(access_token)
        if self._shared is not None and time.monotonic() >= self._shared_down_until:
            try:
                return self._try(self._shared, digest)
            except StorageError as error:
                self._fall_back(error)
        return self._try(self._local, digest)

    def acquire(
        self,
        access_token: str,
        max_wait: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> float:
        """Takes a slot, waiting for one at most `max_wait` seconds in all: 0.0 when taken,
        else the seconds (from now) until one may be free."""
        waited = 0.0
        while True:
            wait = self.try_acquire(access_token)
            if wait == 0.0 or waited + wait > max_wait:
                return wait
            sleep(wait)
            waited += wait

    def _try(self, limiter: MovingWindowRateLimiter, digest: str) -> float:
        if limiter.hit(self._item, digest):
            return 0.0
        stats = limiter.get_window_stats(self._item, digest)
        return max(0.0, stats.reset_time - time.time()) + SLOT_MARGIN_SECONDS

    def clear(self, access_token: str) -> None:
        """Forgets the token's window (tests)."""
        digest = self.key(access_token)
        for limiter in (self._shared, self._local):
            if limiter is not None:
                limiter.clear(self._item, digest)

    def _fall_back(self, error: StorageError) -> None:
        now = time.monotonic()
        with self._lock:
            self._shared_down_until = now + SHARED_RETRY_SECONDS
            if now - self._warned_at < FALLBACK_WARNING_INTERVAL_SECONDS:
                return
            self._warned_at = now
        log.warning(
            "TikTok pacing: shared storage unavailable (%s); counting in this process",
            type(error.storage_error).__name__,
        )


_pacers: dict[tuple[str, str], RequestPacer] = {}
_pacers_lock = threading.Lock()


def request_pacer(rate: str, storage_url: str) -> RequestPacer | None:
    """The process's pacer for this rate and storage; None when `rate` is empty (no pacing)."""
    if not rate:
        return None
    with _pacers_lock:
        pacer = _pacers.get((rate, storage_url))
        if pacer is None:
            pacer = _pacers[(rate, storage_url)] = RequestPacer(rate, storage_url)
        return pacer


def reset_pacers() -> None:
    """Forget the process's pacers and their in-process windows (tests)."""
    with _pacers_lock:
        _pacers.clear()
