"""`python -m bench.run pacing` runs end to end on a small workload: both runs complete and
report their figures (no comparison of them: those belong to a quiet machine and a bigger
run). Needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379; skips without them
(fails under CI=true)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
# The product's settings the autouse fixture points at a temp dir; the bench sets its own.
PRODUCT_ENV = (
    "POSTBACK_DATA_DIR",
    "DATABASE_URL",
    "BROKER_URL",
    "TIKTOK_API_BASE_URL",
    "CELERY_QUEUE",
    "TOKEN_ENCRYPTION_KEY",
    "PYTHONPATH",
)


def require(name: str, reachable: Callable[[], object]) -> None:
    try:
        reachable()
    except Exception as error:
        message = f"{name} is not reachable ({type(error).__name__}: {error})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI=true requires it")
        pytest.skip(f"{message}; bench smoke test skipped")


def _postgres() -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, connect_timeout=5) as conn:
        conn.execute("SELECT 1")


def _redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        client.ping()
    finally:
        client.close()


pytestmark = pytest.mark.integration

FIGURES = ("throttled", "requests", "events_delivered", "seconds_to_deliver_all")


@pytest.mark.timeout(180)
def test_pacing_bench_reports_both_runs(tmp_path: Path) -> None:
    require(f"PostgreSQL at {PG_ADMIN_URL}", _postgres)
    require(f"Redis at {REDIS_URL}", _redis)
    out = tmp_path / "pacing.json"
    env = {k: v for k, v in os.environ.items() if k not in PRODUCT_ENV}
    env.update(BENCH_POSTGRES_URL=PG_ADMIN_URL, BENCH_REDIS_URL=REDIS_URL)
    command = [sys.executable, "-m", "bench.run", "pacing", "--triggers", "120"]
    completed = subprocess.run(
        [*command, "--stall-seconds", "60", "--json", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    report = f"stdout:\n{completed.stdout[-4000:]}\nstderr:\n{completed.stderr[-3000:]}"
    assert completed.returncode == 0, report
    result = json.loads(out.read_text())
    assert result["complete"], report
    assert set(result["runs"]) == {"unpaced", "paced"}
    for name, run in result["runs"].items():
        assert run["complete"] and run["events_delivered"] == 120, (name, report)
        for figure in FIGURES:
            assert isinstance(run[figure], int | float), (name, figure)
    assert result["runs"]["paced"]["env"]["TIKTOK_REQUEST_RATE"] == "5/second"
    assert "TIKTOK_REQUEST_RATE" not in result["runs"]["unpaced"]["env"]
    assert "with pacing" in completed.stdout
