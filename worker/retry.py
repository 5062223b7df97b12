"""The retry ladder: delays live in the database (next_attempt_at), never in the broker."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from crm_postback.core.settings import Settings


def max_attempts(settings: Settings) -> int:
    return len(settings.retry_schedule_seconds) + 1


def next_attempt_at(
    attempts_made: int,
    settings: Settings,
    now: datetime,
    *,
    throttled: bool = False,
    rng: random.Random | None = None,
) -> datetime | None:
    """When to try again after `attempts_made` failed tries; None once the ladder is spent."""
    schedule = settings.retry_schedule_seconds
    if attempts_made >= max_attempts(settings) or not schedule:
        return None
    # A throttled request skips one rung: TikTok asked us to slow down.
    index = min(attempts_made - 1 + (1 if throttled else 0), len(schedule) - 1)
    base = schedule[max(index, 0)]
    jitter = settings.retry_jitter_ratio
    factor = (rng or random).uniform(1 - jitter, 1 + jitter)
    return now + timedelta(seconds=base * factor)
