"""A 202 is a promise: the trigger is committed before the answer and delivered even when the
broker is down at that moment (the sweeper sends what the broker never got)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from crm_postback.http_client import PostbackClient
from crm_postback.simulator import SimulatorControl
from models import DEFAULT_WORKSPACE_ID, Postback, PostbackStatus, Trigger, TriggerStatus, utcnow
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import WorkerProcess, apply_env, free_port  # type: ignore[import-not-found]
from tests.crm_postback.web.conftest import (  # type: ignore[import-not-found]
    RAW_FORMS,
    submitted,
)

CLOSED_BROKER = "redis://127.0.0.1:1/0"


def test_202_with_the_broker_down_is_delivered_by_the_sweeper(
    sqlite_db: str,
    simulator: SimulatorControl,
    make_event_set: Callable[..., int],
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker.app import app as celery_app
    from worker.tasks import sweep_due_postbacks

    make_event_set()
    apply_env(monkeypatch, BROKER_URL=CLOSED_BROKER)
    assert celery_app.conf.task_always_eager is False  # the API really tries the broker

    started = time.monotonic()
    response = client.post("/v1/triggers", json=[submitted("L-1"), submitted("L-2")])
    assert response.status_code == 202, response.text
    assert time.monotonic() - started < 15  # a dead broker does not hang the caller
    ids = [item["trigger_id"] for item in response.json()["items"]]
    with session_scope(workspace=ALL_WORKSPACES) as session:
        stored = session.scalars(select(Trigger).where(Trigger.id.in_(ids))).all()
        assert {t.status for t in stored} == {TriggerStatus.RECEIVED}
        # Older than STALE_TRIGGER_SECONDS: the broker lost them, as far as the sweeper knows.
        session.execute(update(Trigger).values(received_at=utcnow() - timedelta(minutes=5)))
        session.commit()
    assert simulator.stats()["events_accepted"] == 0

    celery_app.conf.task_always_eager = True  # the beat task, run inline
    sweep_due_postbacks()

    assert sorted(e["payload"]["event_id"] for e in simulator.events()) == sorted(
        p.event_id for p in _postbacks()
    )
    assert [p.status for p in _postbacks()] == [PostbackStatus.DELIVERED] * 2


def _postbacks() -> list[Postback]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return list(session.scalars(select(Postback).order_by(Postback.id)))


# --- real Redis, PostgreSQL and worker; the web process cannot reach the broker ----------


@pytest.fixture
def web_process(
    start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    """`postback serve` in its own process, with a broker URL nothing listens on."""
    start_worker()  # real worker with beat, on the real Redis
    port = free_port()
    env = {**os.environ, "BROKER_URL": CLOSED_BROKER, "LOG_LEVEL": "DEBUG"}
    log_path = tmp_path / "web.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "crm_postback.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise AssertionError(f"postback serve did not start:\n{log_path.read_text()}")
        time.sleep(0.1)
    yield url, log_path
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    text = log_path.read_text(errors="replace")
    assert "Traceback" not in text, text
    for raw in RAW_FORMS:
        assert raw not in text, raw


@pytest.mark.integration
def test_202_from_a_web_process_without_broker_reaches_tiktok(
    web_process: tuple[str, Path],
    simulator: SimulatorControl,
    make_event_set: Callable[..., int],
    make_pg_key: Callable[[], str],
) -> None:
    url, log_path = web_process
    make_event_set()
    client = PostbackClient(url, make_pg_key(), retries=0)
    assert requests.get(f"{url}/readyz", timeout=10).json()["checks"]["broker"] != "ok"

    payload = submitted("L-9")
    answer = client.send_trigger(payload)
    assert answer.status == "accepted"
    assert "will be sent by the sweeper" in log_path.read_text()  # the enqueue really failed

    simulator.wait_for_events(1, timeout=40)  # the worker's beat sweeper found it
    deadline = time.monotonic() + 20
    while [p.status for p in _postbacks()] != [PostbackStatus.DELIVERED]:
        assert time.monotonic() < deadline, [p.status for p in _postbacks()]
        time.sleep(0.2)
    again = client.send_trigger(payload)
    assert (again.status, again.trigger_id) == ("duplicate", answer.trigger_id)
    assert simulator.stats()["events_unique"] == 1


@pytest.fixture
def make_pg_key(pg_db: str) -> Callable[[], str]:
    from crm_postback.configuration.api_keys import create_key

    def make() -> str:
        with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
            new = create_key(session, "integration-router")
            session.commit()
        return new.key

    return make
