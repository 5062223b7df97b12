"""Modes, timings and the settings the worker processes run with."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

# The retry ladder the workers use during the run: many short rungs.
#
# Why 20 rungs (21 attempts) and not the production ladder: every expected event must reach
# the simulator, so a `dead` row fails the run. During the fault window one attempt fails with
# probability about 0.20 (5xx) + 0.10 (40100) + 0.03 (slow past the read timeout) = 0.33, plus
# what the process/broker/database faults take: an attempt in flight when its child is
# SIGKILLed, its worker killed, Redis restarted (running tasks are cancelled on connection
# loss) or its PostgreSQL backend terminated still counts. A batch is in flight for a few
# milliseconds to 1.5 s and a fault comes every 2-4 s, so say p <= 0.45 in all.
# P(21 failures in a row) <= 0.45**21 ~= 5e-8; with ~100,000 events in full mode the expected
# number of dead events is ~0.005 per run (with 15 attempts it would be ~0.6: too flaky).
# The whole ladder is 1+2+3+5+8+15*10 = 169 s (+-20 % jitter): every rung stays far below the
# 900 s Redis visibility timeout and the run below TikTok's 48 h dedup window.
RETRY_LADDER_SECONDS: tuple[int, ...] = (1, 2, 3, 5, 8) + (10,) * 15

HTTP_READ_TIMEOUT_SECONDS = 1.5
SLOW_SECONDS = 3.0  # > the read timeout: the worker gives up, the simulator still accepts
SIM_5XX_RATE = 0.20
SIM_THROTTLE_RATE = 0.10  # answered with code 40100
SIM_SLOW_RATE = 0.03
SWEEP_INTERVAL_SECONDS = 1
DISPATCH_LEASE_SECONDS = 10
STALE_TRIGGER_SECONDS = 5

# Without --pg-admin-url the run starts a PostgreSQL cluster of its own (chaos/services.py,
# PrivateCluster), which it may SIGKILL and restart; with it, the chaos database is created on
# that external server, which is never restarted (the crash faults are then left out).
EXTERNAL_PG_EXAMPLE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# The private cluster is down this long in a crash or fast-restart fault (uniform).
PG_RESTART_DOWN_SECONDS = (1.0, 3.0)
# The private PgBouncer is down this long after its SIGKILL (restarted on the same port).
PGBOUNCER_DOWN_SECONDS = (1.0, 2.0)
# --broker-url amqp://...: the run's own quorum queue on that (shared) RabbitMQ server.
RABBITMQ_EXAMPLE_URL = "amqp://guest:guest@127.0.0.1:5672//"


@dataclass(frozen=True)
class ModeDefaults:
    triggers: int
    push_seconds: float  # the load is spread over this long, so faults hit it throughout
    fault_tail_seconds: float  # faults go on this long after the last batch was pushed
    fault_gap_seconds: tuple[float, float]  # pause between two faults (uniform)
    drain_timeout_seconds: float
    batch_size: tuple[int, int]  # triggers per enqueue_triggers call (uniform)


MODES: dict[str, ModeDefaults] = {
    # ~2,500 triggers: sized so that CI can run it (docs/performance.md has its run time).
    "bounded": ModeDefaults(
        triggers=2_500,
        push_seconds=70,
        fault_tail_seconds=20,
        fault_gap_seconds=(2.0, 4.0),
        drain_timeout_seconds=120,
        batch_size=(100, 250),
    ),
    "full": ModeDefaults(
        triggers=100_000,
        push_seconds=900,
        fault_tail_seconds=30,
        fault_gap_seconds=(2.0, 4.0),
        drain_timeout_seconds=900,
        batch_size=(100, 250),
    ),
}
MIN_FULL_TRIGGERS = 20_000


@dataclass(frozen=True)
class RunConfig:
    mode: str
    triggers: int
    seed: int
    push_seconds: float
    fault_tail_seconds: float
    fault_gap_seconds: tuple[float, float]
    drain_timeout_seconds: float
    batch_size: tuple[int, int]
    workers: int = 2
    concurrency: int = 2
    pg_admin_url: str | None = None  # None: a private cluster
    broker_url: str | None = None  # None or redis://: a private redis-server; amqp://: RabbitMQ
    pgbouncer: bool | None = None  # None: with the private cluster when pgbouncer is installed
    json_path: Path | None = None
    keep_tmp: bool = False
    repo_root: Path = field(default_factory=lambda: Path(__file__).resolve().parents[1])

    @classmethod
    def for_mode(
        cls,
        mode: str,
        *,
        triggers: int | None = None,
        seed: int = 1,
        pg_admin_url: str | None = None,
        broker_url: str | None = None,
        pgbouncer: bool | None = None,
        json_path: Path | None = None,
        keep_tmp: bool = False,
    ) -> RunConfig:
        defaults = MODES[mode]
        count = triggers if triggers is not None else defaults.triggers
        # Keep the fault window proportionate when --triggers changes the load.
        scale = min(max(count / defaults.triggers, 0.25), 4.0)
        return cls(
            mode=mode,
            triggers=count,
            seed=seed,
            push_seconds=defaults.push_seconds * scale,
            fault_tail_seconds=defaults.fault_tail_seconds,
            fault_gap_seconds=defaults.fault_gap_seconds,
            drain_timeout_seconds=defaults.drain_timeout_seconds * max(1.0, scale),
            batch_size=defaults.batch_size,
            pg_admin_url=pg_admin_url,
            broker_url=broker_url,
            pgbouncer=pgbouncer,
            json_path=json_path,
            keep_tmp=keep_tmp,
        )


def worker_settings(
    *,
    database_url: str,
    broker_url: str,
    simulator_url: str,
    data_dir: Path,
    queue: str,
    token_key: str,
    pooler: str = "none",
) -> dict[str, str]:
    """Every setting the harness, the workers and beat share (as environment variables)."""
    return {
        "DATABASE_URL": database_url,
        "DATABASE_POOLER": pooler,
        "BROKER_URL": broker_url,
        "TIKTOK_API_BASE_URL": simulator_url,
        "POSTBACK_DATA_DIR": str(data_dir),
        "CELERY_QUEUE": queue,
        "TOKEN_ENCRYPTION_KEY": token_key,
        "RETRY_SCHEDULE_SECONDS": json.dumps(list(RETRY_LADDER_SECONDS)),
        "SWEEP_INTERVAL_SECONDS": str(SWEEP_INTERVAL_SECONDS),
        "DISPATCH_LEASE_SECONDS": str(DISPATCH_LEASE_SECONDS),
        "STALE_TRIGGER_SECONDS": str(STALE_TRIGGER_SECONDS),
        "HTTP_READ_TIMEOUT_SECONDS": str(HTTP_READ_TIMEOUT_SECONDS),
        "HTTP_CONNECT_TIMEOUT_SECONDS": "2",
        "LEAD_WAIT_SECONDS": "3600",
        "DEFAULT_PHONE_REGION": "US",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "text",
    }


def setting_env_names() -> set[str]:
    """Names of every environment variable crm_postback reads, so none leaks in from outside."""
    from crm_postback.core.settings import Settings

    return {name.upper() for name in Settings.model_fields}


def clean_environment(overrides: dict[str, str]) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if k.upper() not in setting_env_names()}
    return {**inherited, **overrides, "PYTHONUNBUFFERED": "1"}
