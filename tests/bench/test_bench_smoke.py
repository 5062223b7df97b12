"""The benchmark runs end to end: `python -m bench.run compare --triggers 300 --json ...`.

300 triggers through the product (batched and one-at-a-time ingest) and the naive baseline,
each on its own PostgreSQL database, Redis queue, simulator and celery worker. Checks that
every figure is there for all three runs and that every expected event arrived; no timing
assertions (the figures belong to a quiet machine). `nodes --triggers 300` runs ours on 1
then 2 worker nodes and checks nothing was sent twice. Needs PostgreSQL on 127.0.0.1:5432 and
Redis on 127.0.0.1:6379; without them it skips (fails under CI=true).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.integration

RUN_TIMEOUT_SECONDS = 300
RUNS = ("ours_batch", "ours_single", "naive")
METRICS = (
    "triggers_per_s",
    "latency_p50_ms",
    "latency_p99_ms",
    "http_requests_per_event",
    "db_statements_per_trigger",
    "db_wal_bytes_per_trigger",
    "worker_rss_peak_mib",
)


@pytest.fixture(scope="module")
def compare_run(run_bench: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return run_bench("compare", "--triggers", "300", timeout=RUN_TIMEOUT_SECONDS)


@pytest.fixture(scope="module")
def nodes_run(run_bench: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return run_bench("nodes", "--triggers", "300", timeout=RUN_TIMEOUT_SECONDS)


@pytest.mark.timeout(RUN_TIMEOUT_SECONDS + 60)
def test_every_metric_is_reported_for_all_three_runs(compare_run: dict[str, Any]) -> None:
    for name in ("cores", "ram_gib", "cpu", "python", "postgres", "redis"):
        assert compare_run["machine"][name], name
    for run in RUNS:
        figures = compare_run["runs"][run]
        for metric in METRICS:
            assert isinstance(figures[metric], int | float), (run, metric, figures[metric])
            assert figures[metric] >= 0, (run, metric)
        assert figures["worker_rss_peak_mib"] > 0, run
        assert figures["worker_processes_counted"] >= 1, run
    for metric in METRICS:
        assert set(compare_run["ratios"][metric]) == {"ours_batch/naive", "ours_single/naive"}
        assert all(v is not None for v in compare_run["ratios"][metric].values()), metric
    assert "/ naive" in compare_run["_report"]  # the ratio columns are printed


@pytest.mark.timeout(60)
def test_every_expected_event_arrived_in_every_run(compare_run: dict[str, Any]) -> None:
    assert compare_run["complete"], compare_run["_report"]
    for run in RUNS:
        figures = compare_run["runs"][run]
        assert figures["complete"], (run, compare_run["_report"])
        assert figures["triggers"] == 300
        assert figures["events_expected"] == figures["events_received"] == 300, run
        assert figures["events_missing"] == figures["events_unexpected"] == 0, run
        assert figures["rejected"] == 0 and not figures["producer_errors"], run


@pytest.mark.timeout(60)
def test_the_designs_differ_the_way_they_are_built(compare_run: dict[str, Any]) -> None:
    """Not timings: the counts that follow from each design (one request per event for naive)."""
    runs = compare_run["runs"]
    assert runs["naive"]["http_requests_per_event"] == 1.0
    assert runs["naive"]["worker_tasks"] == 300
    assert runs["naive"]["db_statements_producer"] == 0
    assert runs["ours_batch"]["http_requests_per_event"] < 1.0
    assert runs["ours_single"]["db_statements_producer"] > 0
    # Ours stores every trigger, its outbox rows and attempts; naive only reads a mapping.
    assert (
        runs["ours_batch"]["db_wal_bytes_per_trigger"] > runs["naive"]["db_wal_bytes_per_trigger"]
    )


@pytest.mark.timeout(60)
def test_cpu_per_component_is_reported_for_all_three_runs(compare_run: dict[str, Any]) -> None:
    for run in RUNS:
        figures = compare_run["runs"][run]["cpu"]
        per_trigger = figures["us_per_trigger"]
        for component in ("postgres_backends", "workers", "producers", "simulator"):
            assert isinstance(per_trigger[component], int | float), (run, component)
            assert per_trigger[component] >= 0, (run, component)
        assert figures["total_us_per_trigger"] > 0, run
        assert figures["postgres_backends_seen"] >= 1, run  # the workers' connections at least
        assert set(figures["shared_us_per_trigger"]) == {"postgres_server_total", "redis_server"}
    assert compare_run["runs"]["naive"]["cpu"]["us_per_trigger"]["beat"] is None  # no beat
    assert "CPU µs per trigger" in compare_run["_report"]
    assert "measured: CPU = utime+stime" in compare_run["_report"]


@pytest.mark.timeout(RUN_TIMEOUT_SECONDS + 60)
def test_nodes_runs_one_then_two_nodes_without_sending_anything_twice(
    nodes_run: dict[str, Any],
) -> None:
    assert nodes_run["complete"], nodes_run["_report"]
    runs = nodes_run["runs"]
    assert set(runs) == {"nodes_1", "nodes_2"}
    for label, count in (("nodes_1", 1), ("nodes_2", 2)):
        run = runs[label]
        assert run["complete"] and run["events_received"] == 300, (label, nodes_run["_report"])
        assert run["events_duplicate"] == 0, label
        nodes = run["nodes"]
        assert len(nodes) == count, label
        assert len({node["name"] for node in nodes}) == count  # distinct node names
        assert len({node["pid"] for node in nodes}) == count  # distinct main processes
        assert all(len(node["pool_pids"]) == 2 for node in nodes), label  # concurrency 2
        deliveries = run["deliveries"]
        assert deliveries["postbacks"] == deliveries["delivered"] == 300, label
        assert deliveries["attempt_rows"] == 300, label
        assert deliveries["postbacks_with_more_attempt_rows_than_claims"] == 0, label
        assert deliveries["postbacks_with_more_than_one_claim"] == 0, label
        assert deliveries["leases_still_held"] == 0, label
        assert run["cpu"]["total_us_per_trigger"] > 0, label
    assert nodes_run["summary"]["no_double_sends"] is True
    assert nodes_run["summary"]["ratio_2_over_1"] is not None
    assert "2 nodes / 1 node throughput" in nodes_run["_report"]
