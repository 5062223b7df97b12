"""Turning what a run recorded into its figures."""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from typing import Any

from bench.workload import Workload


def percentile(ordered: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile of an already sorted sequence."""
    if not ordered:
        return None
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_figures(latencies: list[float]) -> dict[str, float | None]:
    ordered = sorted(latencies)

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 1)

    return {
        "latency_p50_ms": ms(percentile(ordered, 0.50)),
        "latency_p95_ms": ms(percentile(ordered, 0.95)),
        "latency_p99_ms": ms(percentile(ordered, 0.99)),
        "latency_max_ms": ms(ordered[-1] if ordered else None),
    }


def match_events(
    workload: Workload,
    set_ids: list[int],
    received: dict[str, float],
    accepted_at: array[float],
) -> dict[str, Any]:
    """Every trigger's expected event against what the simulator received."""
    latencies: list[float] = []
    missing = 0
    last = 0.0
    expected: set[str] = set()
    for ref in workload.all():
        event_id = workload.event_id(ref, set_ids)
        expected.add(event_id)
        at = received.get(event_id)
        if at is None:
            missing += 1
            continue
        last = max(last, at)
        if accepted_at[ref.index] > 0:
            latencies.append(at - accepted_at[ref.index])
    unexpected = sum(1 for event_id in received if event_id not in expected)
    return {
        "events_expected": len(expected),
        "events_received": len(expected) - missing,
        "events_missing": missing,
        "events_unexpected": unexpected,
        "last_received_at": last,
        "latencies": latencies,
    }


def ratio(ours: float | None, naive: float | None) -> float | None:
    if ours is None or naive is None or naive == 0:
        return None
    return round(ours / naive, 2)
