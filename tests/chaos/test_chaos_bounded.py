"""The chaos suite's bounded mode, run as CI runs it: `python -m chaos.run --mode bounded`.

Once per broker. On Redis: ~2,500 triggers through 2 celery workers + beat + a private
redis-server + a private PostgreSQL cluster behind a private PgBouncer (transaction mode) to
the simulator while workers are SIGKILLed, Redis restarted, PostgreSQL connections killed, the
PostgreSQL server SIGKILLed and fast-restarted, PgBouncer SIGKILLed and the simulator fails; a
few minutes on 2 cores. On RabbitMQ (CHAOS_RABBITMQ_URL, else TEST_RABBITMQ_URL, default the
local server as guest): the same with 60 % of the triggers (CI time) and a quorum queue of the
run's own; the shared server is not restarted, so the broker-restart fault is left out.

Needs the PostgreSQL server binaries (initdb, pg_ctl, postgres), `redis-server` (Redis run),
a reachable RabbitMQ (RabbitMQ run); without them it skips (fails under CI=true). PgBouncer is
used when installed; under CI=true it must be (.ci/run installs it). CHAOS_POSTGRES_URL makes
it use that external server instead (the server faults and PgBouncer are then left out).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

REPO = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("CHAOS_POSTGRES_URL")  # None: the run's own private cluster
RABBITMQ_URL = os.environ.get(
    "CHAOS_RABBITMQ_URL",
    os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//"),
)
RUN_TIMEOUT_SECONDS = 480
# The RabbitMQ run pushes 60 % of the bounded mode's triggers: the same faults, less CI time.
RABBITMQ_TRIGGERS = 1_500
MIN_TRIGGERS = {"redis": 2_000, "rabbitmq": RABBITMQ_TRIGGERS}


def require(name: str, available: bool, reason: str) -> None:
    """Skip, or under CI=true fail, like tests/conftest.py's require_service."""
    if available:
        return
    message = f"{name} is not available ({reason})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI=true requires it")
    pytest.skip(f"{message}; chaos test skipped")


def postgres_available() -> tuple[bool, str]:
    if PG_ADMIN_URL is None:
        from chaos.services import ServiceUnavailable, postgres_bindir

        try:
            postgres_bindir()
        except ServiceUnavailable as error:
            return False, str(error)
        return True, ""
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except Exception as error:
        return False, f"{type(error).__name__}: {error}"
    return True, ""


def rabbitmq_available() -> tuple[bool, str]:
    from kombu import Connection

    try:
        with Connection(RABBITMQ_URL, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as error:
        return False, f"{type(error).__name__}: {error}"
    return True, ""


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def bounded_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    broker: str = request.param
    ok, why = postgres_available()
    require(f"PostgreSQL ({PG_ADMIN_URL or 'server binaries'})", ok, why)
    if broker == "rabbitmq":
        ok, why = rabbitmq_available()
        require("RabbitMQ", ok, why)
        extra = ["--broker-url", RABBITMQ_URL, "--triggers", str(RABBITMQ_TRIGGERS)]
    else:
        require("redis-server", shutil.which("redis-server") is not None, "not on PATH")
        extra = []
    if PG_ADMIN_URL is None and os.environ.get("CI") == "true":
        extra.append("--pgbouncer")  # CI installs it: the run must not quietly go without
    out = tmp_path_factory.mktemp("chaos") / f"bounded-{broker}.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "chaos.run",
            "--mode",
            "bounded",
            "--json",
            str(out),
            *(["--pg-admin-url", PG_ADMIN_URL] if PG_ADMIN_URL else []),
            *extra,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )
    report = f"stdout:\n{completed.stdout[-8000:]}\nstderr:\n{completed.stderr[-8000:]}"
    assert completed.returncode == 0, f"chaos run failed ({completed.returncode})\n{report}"
    result: dict[str, Any] = json.loads(out.read_text())
    result["_report"] = report
    result["_broker"] = broker
    return result


@pytest.mark.timeout(RUN_TIMEOUT_SECONDS + 60)
def test_every_expected_event_arrives_once_per_event_id(bounded_run: dict[str, Any]) -> None:
    f = bounded_run["figures"]
    assert bounded_run["passed"], bounded_run["_report"]
    assert f["triggers"] >= MIN_TRIGGERS[bounded_run["_broker"]]
    assert f["triggers_stored"] == f["triggers"]
    assert f["events_at_receiver_unique"] == f["events_expected"] == f["delivered"]
    assert f["missing_at_receiver"] == f["unexpected_at_receiver"] == 0
    assert f["delivered_not_received"] == 0
    assert f["duplicates_changed_payload"] == 0


@pytest.mark.timeout(60)
def test_nothing_lost_dead_or_leaked(bounded_run: dict[str, Any]) -> None:
    f = bounded_run["figures"]
    assert f["lost"] == 0
    assert f["dead"] == f["failed"] == f["expired"] == f["not_final"] == 0
    assert f["unmapped"] == f["unmapped_expected"]
    assert f["delivered"] + f["failed"] + f["dead"] + f["expired"] == f["events_expected"]
    assert f["pii_leaks"] == 0
    assert f["payload_mismatches"] == 0


@pytest.mark.timeout(60)
def test_the_faults_really_happened_and_it_drained_in_time(bounded_run: dict[str, Any]) -> None:
    faults = bounded_run["faults"]["counts"]
    left_out = bounded_run["faults"]["left_out"]
    from chaos.faults import BROKER_FAULTS, POOLER_FAULTS, ROUND, SERVER_FAULTS

    private = bounded_run["postgres_server"]["kind"] == "private cluster"
    on_rabbitmq = bounded_run["_broker"] == "rabbitmq"
    assert (bounded_run["broker"]["kind"] == "rabbitmq") is on_rabbitmq
    with_pgbouncer = bounded_run["pgbouncer"]["used"]
    for fault in ROUND:  # the bounded mode injects every kind this topology has
        cannot = (
            (fault in SERVER_FAULTS and not private)
            or (fault in BROKER_FAULTS and on_rabbitmq)
            or (fault in POOLER_FAULTS and not with_pgbouncer)
        )
        if cannot:
            assert fault.value in left_out and fault.value not in faults, (fault, faults)
        else:
            assert faults.get(fault.value, 0) >= 1, (fault.value, faults)
    if with_pgbouncer:
        assert bounded_run["pgbouncer"]["kills"] >= 1, bounded_run["pgbouncer"]
        assert bounded_run["config"]["product_settings"]["database_pooler"] == "transaction"
    if on_rabbitmq:
        assert bounded_run["broker"]["left_in_queue_at_the_end"] is not None
    if private:
        server = bounded_run["postgres_server"]
        assert server["crashes"] >= 1 and server["fast_restarts"] >= 1, server
        assert server["crash_recoveries"] == server["crashes"], server
        assert server["children_killed_by_us"] == 0, server
        assert any("redo starts at" in line for line in server["recovery_lines"]), server
    codes = bounded_run["simulator"]["requests_by_code"]
    statuses = bounded_run["simulator"]["requests_by_http_status"]
    assert codes.get("40100", 0) > 0, codes
    assert any(status.startswith("5") for status in statuses), statuses
    assert bounded_run["simulator"]["requests_held_past_timeout"] > 0
    assert bounded_run["drain_seconds"] is not None
    assert bounded_run["wall_seconds"] < 300
