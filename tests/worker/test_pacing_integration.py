"""Pacing with real worker processes on real Redis and PostgreSQL, against the simulator told a
request limit: two workers (four pool processes) sharing one access token stay within it, and
a Redis outage does not stop delivery.

The workers pace at 4/s and the simulator refuses above 5/s: a slot is counted when the
request leaves, and a request on a new connection arrives tens of ms later than one on a
warm one, so pacing at exactly the limit can still see a rare 40100 (docs/tiktok-contract.md).
Four processes each counting on their own would send up to 16/s."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import select

from crm_postback.api import enqueue_trigger
from crm_postback.core.pacing import RequestPacer
from crm_postback.simulator import SimulatorControl
from models import Postback
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import TOKEN, WorkerProcess, wait_for  # type: ignore[import-not-found]

pytestmark = pytest.mark.integration

StartWorker = Callable[..., WorkerProcess]
RATE = 4
LIMIT = 5
SET_IDS = ("7300000000000000011", "7300000000000000012", "7300000000000000013")


def trigger(lead: str, event_set: str) -> dict[str, Any]:
    return {
        "type": "lead.submitted",
        "lead_id": lead,
        "event_set": event_set,
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        "match_keys": {"email": f"{lead.lower()}@example.com"},
    }


def outbox() -> list[tuple[str, int]]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return [
            (row.status, row.attempts)
            for row in session.execute(select(Postback.status, Postback.attempts)).all()
        ]


@pytest.fixture
def shared_token_sets(simulator: SimulatorControl, make_event_set: Callable[..., int]) -> list[str]:
    """Three event sets on one access token; test events go one per request, so every event
    is a request."""
    names = []
    for number, source_id in enumerate(SET_IDS):
        simulator.register_event_set(source_id, TOKEN, kind="crm")
        name = f"shared-{number}"
        make_event_set(
            name=name,
            source_id=source_id,
            token=TOKEN,
            test_event_code="TEST4242",
            mappings=({"trigger_type": "lead.submitted", "event_name": "Lead"},),
        )
        names.append(name)
    return names


def test_two_workers_sharing_a_token_stay_within_the_limit(
    start_worker: StartWorker,
    simulator: SimulatorControl,
    shared_token_sets: list[str],
    redis_url: str,
) -> None:
    simulator.set_rate_limit(f"{LIMIT}/second")
    env = {"TIKTOK_REQUEST_RATE": f"{RATE}/second", "TIKTOK_PACING_STORAGE_URL": redis_url}
    workers = [start_worker(**env), start_worker(beat=False, **env)]
    count = 30
    started = time.monotonic()
    for n in range(count):
        enqueue_trigger(trigger(f"L-{n}", shared_token_sets[n % 3]))

    client = redis.Redis.from_url(redis_url)
    seen_keys: set[str] = set()

    def delivered() -> bool:
        seen_keys.update(key.decode() for key in client.scan_iter(match="LIMITS:*", count=10_000))
        return simulator.count_events() >= count

    wait_for(delivered, what=f"{count} events through the paced workers", timeout=90)
    took = time.monotonic() - started
    client.close()

    stats = simulator.stats()
    assert stats["rate_limited"] == 0, stats
    assert stats["events_duplicate"] == 0
    arrivals = sorted(entry["at"] for entry in simulator.requests())
    assert len(arrivals) == count
    for index, at in enumerate(arrivals):
        assert len([t for t in arrivals[index:] if t - at < 1.0]) <= LIMIT
    assert took >= (count - RATE) / RATE - 1
    wait_for(lambda: {s for s, _ in outbox()} == {"delivered"}, what="outbox to record delivery")
    # A paced row's attempt was given back: each event was sent once, on its first attempt.
    assert {attempts for _, attempts in outbox()} == {1}
    assert [key for key in seen_keys if RequestPacer.key(TOKEN) in key]
    assert not [key for key in seen_keys if TOKEN in key]
    for worker in workers:
        log = worker.log()
        assert TOKEN not in log
        assert "Traceback" not in log


def test_redis_unreachable_pacing_falls_back_and_delivery_continues(
    start_worker: StartWorker, simulator: SimulatorControl, shared_token_sets: list[str]
) -> None:
    worker = start_worker(
        TIKTOK_REQUEST_RATE="50/second", TIKTOK_PACING_STORAGE_URL="redis://127.0.0.1:1/0"
    )
    for n in range(6):
        enqueue_trigger(trigger(f"L-{n}", shared_token_sets[n % 3]))

    simulator.wait_for_events(6, timeout=40)
    wait_for(lambda: {s for s, _ in outbox()} == {"delivered"}, what="outbox to record delivery")
    wait_for(
        lambda: "TikTok pacing: shared storage unavailable" in worker.log(),
        what="the fallback warning",
        timeout=10,
    )
    assert TOKEN not in worker.log()
