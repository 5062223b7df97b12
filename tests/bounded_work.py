"""Helpers for the property-based fuzz tests: inputs up to the body limit, and bounded work.

"Bounded work" compares the CPU time (time.process_time, so other processes on a shared
machine do not count) of one call on an input with that on an input `FACTOR` times larger:
linear work grows about FACTOR times, quadratic about FACTOR² (64) times. No absolute time is
asserted anywhere. The small input is repeated until a measurement is well above the clock's
noise, the large one is run as often, and each side takes the best of three runs.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from hypothesis import strategies as st

from crm_postback.core.settings import Settings

# The default MAX_REQUEST_BYTES: the largest body (so the largest value) that reaches a validator.
BODY_LIMIT: int = Settings.model_fields["max_request_bytes"].default
FACTOR = 8
# Linear is ~8x, quadratic ~64x; 24 leaves room for caches and a noisy neighbour.
BOUND = 24
SMALL_SIZE = 2_000
_MEASURED_AT_LEAST = 0.001  # seconds of CPU per measurement, to be well above the noise

Input = TypeVar("Input")

# Characters that mean something to one validator or another, then anything at all.
SPECIAL = list("@.+-_ \t\n\r\x00\\\"'[]{}(),:;=!<>#&*|%$0123456789aZé日\u200b\ufeff")
CHARACTERS = st.sampled_from(SPECIAL) | st.characters(codec="utf-8")


@dataclass(frozen=True)
class Scaled:
    """`prefix + fragment * count + suffix`: a small generated shape, grown to any size."""

    prefix: str
    fragment: str
    suffix: str

    def at(self, count: int) -> str:
        return self.prefix + self.fragment * count + self.suffix

    def count_for(self, size: int) -> int:
        """How many fragments fit in `size` bytes of UTF-8 (at least one)."""
        fixed = len((self.prefix + self.suffix).encode("utf-8", "surrogatepass"))
        each = len(self.fragment.encode("utf-8", "surrogatepass"))
        return max(1, (size - fixed) // each)

    def small(self) -> str:
        return self.at(self.count_for(SMALL_SIZE))

    def large(self) -> str:
        return self.at(self.count_for(SMALL_SIZE) * FACTOR)

    def full(self, size: int = BODY_LIMIT) -> str:
        return self.at(self.count_for(size))


def scaled(
    characters: st.SearchStrategy[str] = CHARACTERS, tokens: list[str] | None = None
) -> st.SearchStrategy[Scaled]:
    """Shapes made of characters, or (given `tokens`) of a few tokens and characters each."""
    if tokens is None:
        piece = st.text(characters, max_size=12)
        fragment = st.text(characters, min_size=1, max_size=8)
    else:
        token = st.sampled_from(tokens) | characters
        piece = st.lists(token, max_size=5).map("".join)
        fragment = st.lists(token, min_size=1, max_size=4).map("".join)
    return st.builds(Scaled, piece, fragment, piece)


def _cpu_time(call: Callable[[], object], repeats: int) -> float:
    gc.disable()
    try:
        start = time.process_time()
        for _ in range(repeats):
            call()
        return time.process_time() - start
    finally:
        gc.enable()


def work_ratio(call: Callable[[Input], object], small: Input, large: Input) -> float:
    """CPU time of call(large) over that of call(small), each the best of three (the large
    side stops early once a run is within BOUND: later runs could only be faster)."""
    gc.collect()
    repeats = 1
    while _cpu_time(lambda: call(small), repeats) < _MEASURED_AT_LEAST and repeats < 1 << 20:
        repeats *= 4
    small_time = max(min(_cpu_time(lambda: call(small), repeats) for _ in range(3)), 1e-9)
    large_time = math.inf
    for _ in range(3):
        large_time = min(large_time, _cpu_time(lambda: call(large), repeats))
        if large_time <= BOUND * small_time:
            break
    return large_time / small_time


def assert_bounded_work(
    call: Callable[[Input], object], small: Input, large: Input, what: str = ""
) -> None:
    ratio = work_ratio(call, small, large)
    assert ratio <= BOUND, (
        f"{what}: {ratio:.0f}x the work for {FACTOR}x the input (linear is ~{FACTOR}x)"
    )


def returns_or_refuses(
    call: Callable[[Input], Any], allowed: tuple[type[BaseException], ...]
) -> Callable[[Input], str]:
    """call, answering "returned" or "refused" (one of `allowed`); anything else propagates."""

    def checked(argument: Input) -> str:
        try:
            call(argument)
        except allowed:
            return "refused"
        return "returned"

    return checked
