"""The fairness mode end to end: `python -m bench.run fairness --backlog 2000 ...`.

A 3-second quiet phase alone, then a 2,000-trigger backlog on another event set with the
quiet producer running over its drain, each on its own database, queue, simulator and
worker. Checks the report's shape and that every expected event of both phases arrived once;
no timing assertions (the figures belong to a quiet machine). Needs PostgreSQL on
127.0.0.1:5432 and Redis on 127.0.0.1:6379; without them it skips (fails under CI=true).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.integration

RUN_TIMEOUT_SECONDS = 150
BACKLOG = 2_000
QUIET_RATE = 20
QUIET_SECONDS = 3
LATENCIES = ("latency_p50_ms", "latency_p99_ms", "latency_max_ms")


@pytest.fixture(scope="module")
def fairness_run(run_bench: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return run_bench(
        "fairness",
        *("--backlog", str(BACKLOG), "--quiet-rate", str(QUIET_RATE)),
        *("--quiet-seconds", str(QUIET_SECONDS), "--stall-seconds", "60"),
        timeout=RUN_TIMEOUT_SECONDS,
    )


@pytest.mark.timeout(RUN_TIMEOUT_SECONDS + 30)
def test_every_expected_event_of_both_phases_arrived_once(fairness_run: dict[str, Any]) -> None:
    report = fairness_run["_report"]
    assert fairness_run["complete"] is True, report
    alone = fairness_run["runs"]["without_backlog"]
    busy = fairness_run["runs"]["with_backlog"]
    backlog = fairness_run["backlog"]
    assert alone["event_set"] == busy["event_set"] != backlog["event_set"]
    for phase in (alone, busy):
        assert phase["complete"], report
        assert phase["sent"] >= 1 and phase["rejected"] == 0 and not phase["producer_errors"]
        assert phase["events_expected"] == phase["events_received"] == phase["sent"], report
        assert phase["events_missing"] == phase["events_unexpected"] == 0, report
        assert phase["events_duplicate"] == 0, report
    # Paced for QUIET_SECONDS: the producer sends what is due, never more.
    assert alone["sent"] == alone["latency_measured"] == QUIET_RATE * QUIET_SECONDS
    assert backlog["complete"], report
    assert backlog["triggers"] == BACKLOG and backlog["rejected"] == 0
    assert backlog["events_expected"] == backlog["events_received"] == BACKLOG, report
    assert backlog["enqueue_calls"] >= BACKLOG // 1_000


@pytest.mark.timeout(60)
def test_the_figures_and_the_overlap_are_reported(fairness_run: dict[str, Any]) -> None:
    for name in ("cores", "ram_gib", "cpu", "python", "postgres", "redis"):
        assert fairness_run["machine"][name], name
    alone = fairness_run["runs"]["without_backlog"]
    busy = fairness_run["runs"]["with_backlog"]
    for key in LATENCIES:
        assert isinstance(alone[key], int | float) and alone[key] >= 0, key
        if busy["latency_measured"]:
            assert isinstance(busy[key], int | float) and busy[key] >= 0, key
    backlog = fairness_run["backlog"]
    assert backlog["drain_seconds"] > 0 and backlog["triggers_per_s"] > 0
    overlap = fairness_run["overlap"]
    assert overlap["quiet_start_threshold"] == BACKLOG // 10
    assert overlap["quiet_started_at_stored"] >= overlap["quiet_start_threshold"]
    # Every quiet trigger of the second phase is either measured during the backlog or after.
    assert overlap["quiet_during_backlog"] == busy["latency_measured"]
    assert overlap["quiet_during_backlog"] + overlap["quiet_after_drain"] == busy["sent"]
    if overlap["quiet_during_backlog"]:
        assert overlap["backlog_pending_at_quiet_accept_min"] >= 1
    assert isinstance(fairness_run["target_met"], bool)
    assert fairness_run["config"]["backlog"] == BACKLOG
    stdout = fairness_run["_stdout"]
    assert stdout.startswith("machine: ")
    for text in (
        "no backlog",
        "latency p99 (ms)",
        "events received / expected",
        "drained in",
        "quiet triggers accepted while the backlog was pending",
        "target: quiet p99 <= 1,000 ms with the backlog",
    ):
        assert text in stdout, text
