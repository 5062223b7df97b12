"""Running `python -m bench.run MODE ...` as a subprocess for the bench smoke tests.

Each test's bench gets the services the bench itself would use (PostgreSQL on 127.0.0.1:5432,
Redis on 127.0.0.1:6379, or BENCH_POSTGRES_URL / BENCH_REDIS_URL); without them the test
skips, and under CI=true it fails. The product's own settings, which tests/conftest.py points
at a temp dir, are taken out of the environment: the bench sets its own per run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_service  # type: ignore[import-not-found]

REPO = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PRODUCT_ENV = (
    "POSTBACK_DATA_DIR",
    "DATABASE_URL",
    "BROKER_URL",
    "TIKTOK_API_BASE_URL",
    "CELERY_QUEUE",
    "TOKEN_ENCRYPTION_KEY",
    "PYTHONPATH",
)

RunBench = Callable[..., dict[str, Any]]


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


@pytest.fixture(scope="session")
def run_bench(tmp_path_factory: pytest.TempPathFactory) -> RunBench:
    """`run_bench(mode, *options, timeout=seconds)`: the run's JSON figures, with its output
    under "_stdout" and the tail of stdout and stderr under "_report" for assertion messages.
    Asserts the bench exited 0."""

    def run(mode: str, *options: str, timeout: float) -> dict[str, Any]:
        require_service(f"PostgreSQL at {PG_ADMIN_URL}", _postgres)
        require_service(f"Redis at {REDIS_URL}", _redis)
        out = tmp_path_factory.mktemp("bench") / f"{mode}.json"
        env = {k: v for k, v in os.environ.items() if k not in PRODUCT_ENV}
        env.update(BENCH_POSTGRES_URL=PG_ADMIN_URL, BENCH_REDIS_URL=REDIS_URL)
        completed = subprocess.run(
            [sys.executable, "-m", "bench.run", mode, *options, "--json", str(out)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        report = f"stdout:\n{completed.stdout[-6000:]}\nstderr:\n{completed.stderr[-4000:]}"
        assert completed.returncode == 0, f"bench exited {completed.returncode}\n{report}"
        result: dict[str, Any] = json.loads(out.read_text())
        result["_stdout"] = completed.stdout
        result["_report"] = report
        return result

    return run
