"""Injected failures: how often the simulator misbehaves, and which way."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class FaultKind(StrEnum):
    NONE = "none"
    SERVER_ERROR = "server_error"
    THROTTLE = "throttle"
    AUTH_ERROR = "auth_error"
    SLOW = "slow"


_RATE_FIELDS = ("http_5xx_rate", "throttle_rate", "auth_error_rate", "slow_rate")


@dataclass(frozen=True, slots=True)
class Faults:
    """Per-request fault probabilities (0..1).

    One roll per request picks at most one fault. The rates are stacked in the order
    5xx, throttle, auth error, slow, so they are exact while they sum to at most 1; past
    that, the later ones get whatever probability is left.
    """

    http_5xx_rate: float = 0.0
    throttle_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 2.0
    auth_error_rate: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in _RATE_FIELDS:
            rate = getattr(self, name)
            if not _is_real(rate) or not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be a number between 0 and 1, not {rate!r}")
        if not _is_real(self.slow_seconds) or self.slow_seconds < 0:
            raise ValueError(f"slow_seconds must be a number >= 0, not {self.slow_seconds!r}")
        if self.seed is not None and type(self.seed) is not int:
            raise ValueError(f"seed must be an integer or null, not {self.seed!r}")

    def updated(self, changes: Mapping[str, Any]) -> Faults:
        """A copy with `changes` applied; unknown names and bad values raise ValueError."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    @property
    def active(self) -> bool:
        return any(getattr(self, name) > 0 for name in _RATE_FIELDS)

    def pick(self, roll: float) -> FaultKind:
        """The fault for a request, given a uniform roll in [0, 1)."""
        threshold = 0.0
        for kind, rate in (
            (FaultKind.SERVER_ERROR, self.http_5xx_rate),
            (FaultKind.THROTTLE, self.throttle_rate),
            (FaultKind.AUTH_ERROR, self.auth_error_rate),
            (FaultKind.SLOW, self.slow_rate),
        ):
            threshold += rate
            if roll < threshold:
                return kind
        return FaultKind.NONE

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _is_real(value: object) -> bool:
    # bool is an int subclass; JSON true must not pass as a rate of 1.
    return type(value) is int or (type(value) is float and math.isfinite(value))
