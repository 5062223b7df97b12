"""The retry ladder: rungs, jitter, throttling and when it is spent."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from crm_postback.core.settings import DEFAULT_RETRY_SCHEDULE, Settings
from worker.retry import max_attempts, next_attempt_at

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SCHEDULE = (10, 60, 300, 1800)


def _settings(schedule: tuple[int, ...] = SCHEDULE, jitter: float = 0.0) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        retry_schedule_seconds=schedule,
        retry_jitter_ratio=jitter,
    )


def _delay(result: datetime | None) -> float:
    assert result is not None
    return (result - NOW).total_seconds()


def test_max_attempts_is_schedule_plus_first_try() -> None:
    assert max_attempts(_settings()) == len(SCHEDULE) + 1
    assert max_attempts(_settings(DEFAULT_RETRY_SCHEDULE)) == len(DEFAULT_RETRY_SCHEDULE) + 1
    assert max_attempts(_settings(())) == 1


def test_default_schedule_is_ascending() -> None:
    assert list(DEFAULT_RETRY_SCHEDULE) == sorted(DEFAULT_RETRY_SCHEDULE)
    assert DEFAULT_RETRY_SCHEDULE[0] == 10


@pytest.mark.parametrize(("attempts_made", "delay"), [(1, 10), (2, 60), (3, 300), (4, 1800)])
def test_zero_jitter_gives_exact_rungs_in_order(attempts_made: int, delay: int) -> None:
    result = next_attempt_at(attempts_made, _settings(), NOW)
    assert result == NOW + timedelta(seconds=delay)
    assert result is not None and result.tzinfo is not None


def test_default_schedule_rungs_in_order() -> None:
    settings = _settings(DEFAULT_RETRY_SCHEDULE)
    delays = [_delay(next_attempt_at(n, settings, NOW)) for n in range(1, 8)]
    assert delays == [float(d) for d in DEFAULT_RETRY_SCHEDULE]
    assert next_attempt_at(8, settings, NOW) is None


def test_attempts_made_zero_uses_first_rung() -> None:
    assert _delay(next_attempt_at(0, _settings(), NOW)) == 10


@pytest.mark.parametrize("attempts_made", [len(SCHEDULE) + 1, len(SCHEDULE) + 2, 100])
@pytest.mark.parametrize("throttled", [False, True])
def test_ladder_spent(attempts_made: int, throttled: bool) -> None:
    assert next_attempt_at(attempts_made, _settings(), NOW, throttled=throttled) is None


def test_last_rung_still_retries() -> None:
    assert _delay(next_attempt_at(len(SCHEDULE), _settings(), NOW)) == SCHEDULE[-1]


@pytest.mark.parametrize(("attempts_made", "delay"), [(1, 60), (2, 300), (3, 1800), (4, 1800)])
def test_throttled_skips_a_rung_capped_at_last(attempts_made: int, delay: int) -> None:
    result = next_attempt_at(attempts_made, _settings(), NOW, throttled=True)
    assert _delay(result) == delay


def test_throttled_is_never_sooner_than_normal() -> None:
    settings = _settings()
    for attempts_made in range(1, len(SCHEDULE) + 1):
        normal = _delay(next_attempt_at(attempts_made, settings, NOW))
        slow = _delay(next_attempt_at(attempts_made, settings, NOW, throttled=True))
        assert slow >= normal


def test_empty_schedule_never_retries() -> None:
    settings = _settings(())
    assert next_attempt_at(0, settings, NOW) is None
    assert next_attempt_at(1, settings, NOW) is None


@pytest.mark.parametrize("jitter", [0.2, 0.5, 1.0])
def test_jitter_bounds(jitter: float) -> None:
    settings = _settings(jitter=jitter)
    rng = random.Random(1234)
    for attempts_made, base in enumerate(SCHEDULE, start=1):
        delays = [
            _delay(next_attempt_at(attempts_made, settings, NOW, rng=rng)) for _ in range(200)
        ]
        assert min(delays) >= base * (1 - jitter)
        assert max(delays) <= base * (1 + jitter)
        assert len(set(delays)) > 100  # actually jittered
        assert min(delays) < base < max(delays)


def test_jitter_uses_given_rng_reproducibly() -> None:
    settings = _settings(jitter=0.2)
    first = [next_attempt_at(n, settings, NOW, rng=random.Random(7)) for n in range(1, 5)]
    second = [next_attempt_at(n, settings, NOW, rng=random.Random(7)) for n in range(1, 5)]
    assert first == second
    expected_rng = random.Random(7)
    result = next_attempt_at(2, settings, NOW, rng=random.Random(7))
    assert _delay(result) == pytest.approx(60 * expected_rng.uniform(0.8, 1.2))


def test_jitter_applies_to_throttled_rung() -> None:
    settings = _settings(jitter=0.2)
    rng = random.Random(99)
    delays = [
        _delay(next_attempt_at(1, settings, NOW, throttled=True, rng=rng)) for _ in range(100)
    ]
    assert all(48 <= d <= 72 for d in delays)


@pytest.mark.parametrize("jitter", [-0.1, 1.5])
def test_jitter_ratio_validated(jitter: float) -> None:
    with pytest.raises(ValidationError):
        _settings(jitter=jitter)
