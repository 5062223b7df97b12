"""A request limit per access token, as TikTok may enforce one: above it, code 40100.

TikTok publishes no figure for `event/track`; this lets a test or a bench pick one ("5/second",
"100 per minute"; `limits` notation) and a window strategy (`moving`: never more than N in any
window of that length; `fixed`: N per calendar window, so up to 2N across a boundary). A
refused request is not counted against the window. Off unless told.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter, RateLimiter

STRATEGIES = ("moving", "fixed")


def token_label(access_token: str | None) -> str:
    """How the simulator names a token in what it reports: a short fingerprint."""
    return hashlib.sha256((access_token or "").encode()).hexdigest()[:12]


@dataclass(frozen=True)
class TokenRateLimit:
    rate: str
    strategy: str = "moving"
    _item: RateLimitItem = field(init=False, repr=False, compare=False)
    _limiter: RateLimiter = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.rate, str) or not self.rate.strip():
            raise ValueError("rate must be a string in limits notation, e.g. '5/second'")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}")
        item = parse(self.rate)  # ValueError on a bad rate
        storage = MemoryStorage()
        limiter: RateLimiter = (
            MovingWindowRateLimiter(storage)
            if self.strategy == "moving"
            else FixedWindowRateLimiter(storage)
        )
        object.__setattr__(self, "_item", item)
        object.__setattr__(self, "_limiter", limiter)

    def admit(self, access_token: str | None) -> bool:
        """Counts one request of `access_token`; False when its window is already full."""
        return self._limiter.hit(self._item, token_label(access_token))

    def to_json(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "strategy": self.strategy,
            "requests": self._item.amount,
            "per_seconds": self._item.get_expiry(),
        }
