"""`python -m bench.run pacing` runs end to end on a small workload: both runs complete and
report their figures (no comparison of them: those belong to a quiet machine and a bigger
run). Needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379; skips without them
(fails under CI=true)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.integration

FIGURES = ("throttled", "requests", "events_delivered", "seconds_to_deliver_all")


@pytest.mark.timeout(180)
def test_pacing_bench_reports_both_runs(run_bench: Callable[..., dict[str, Any]]) -> None:
    result = run_bench("pacing", "--triggers", "120", "--stall-seconds", "60", timeout=170)
    report = result["_report"]
    assert result["complete"], report
    assert set(result["runs"]) == {"unpaced", "paced"}
    for name, run in result["runs"].items():
        assert run["complete"] and run["events_delivered"] == 120, (name, report)
        for figure in FIGURES:
            assert isinstance(run[figure], int | float), (name, figure)
    assert result["runs"]["paced"]["env"]["TIKTOK_REQUEST_RATE"] == "5/second"
    assert "TIKTOK_REQUEST_RATE" not in result["runs"]["unpaced"]["env"]
    assert "with pacing" in result["_stdout"]
