"""A real worker survives Redis restarts while a postback is in flight (worker/broker_transport.py).

The worker (prefork, 2 processes, prefetch 1) holds one unacked delivery (a slow TikTok answer)
and has a BRPOP outstanding for its free slot when its private redis-server is SIGKILLed; the
server comes back on the same port (empty: no persistence) a moment later. Three times. With
kombu's own redis Channel the worker's main process exits on the second close of its channel
(`Unrecoverable error: AttributeError`); here the same process goes on delivering, and the
sweeper dispatches again what the empty broker forgot.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from crm_postback.api import enqueue_trigger
from crm_postback.simulator import SimulatorControl
from models import Postback
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import (  # type: ignore[import-not-found]
    WorkerProcess,
    apply_env,
    free_port,
    require_service,
    trigger_body,
    wait_for,
)

pytestmark = pytest.mark.integration

RESTARTS = 3
DOWN_SECONDS = 1.5
StartWorker = Callable[..., WorkerProcess]


class PrivateRedis:
    """A redis-server of this test's own, on a fixed port, that the test may kill and restart."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        import redis

        self.starts += 1
        log = (self.folder / f"redis-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_for(answers, what=f"redis-server on port {self.port}", timeout=10)

    def kill(self) -> None:
        """SIGKILL, as the chaos suite does: no goodbye to the clients."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    require_service(
        "redis-server",
        lambda: shutil.which("redis-server") or (_ for _ in ()).throw(FileNotFoundError()),
    )
    folder = tmp_path / "redis"
    folder.mkdir()
    server = PrivateRedis(folder)
    server.start()
    yield server
    if server.process is not None:
        server.kill()


@pytest.fixture
def redis_url(private_redis: PrivateRedis) -> str:
    """start_worker's broker: the private server, not the shared one."""
    return private_redis.url


def postback_statuses() -> list[str]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return list(session.scalars(select(Postback.status)))


def accept(lead: str) -> None:
    enqueue_trigger(trigger_body("lead.submitted", lead, match_keys={"email": f"{lead}@x.org"}))


@pytest.mark.timeout(120)
def test_the_worker_process_survives_redis_restarts_with_a_postback_in_flight(
    start_worker: StartWorker,
    private_redis: PrivateRedis,
    simulator: SimulatorControl,
    make_event_set: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_event_set()
    # A short lease: the sweeper soon sends again what the emptied broker or a request
    # cancelled by the connection loss left behind.
    apply_env(monkeypatch, DISPATCH_LEASE_SECONDS="3")
    simulator.set_faults(slow_rate=1.0, slow_seconds=2)  # a request stays in flight for 2 s
    worker = start_worker()
    pid = worker.process.pid
    accepted = 0

    def alive() -> bool:
        assert worker.process.poll() is None, f"worker {pid} exited:\n{worker.log()[-3000:]}"
        return True

    def all_delivered() -> bool:
        return (
            alive()
            and postback_statuses() == ["delivered"] * accepted
            and simulator.stats()["events_unique"] >= accepted
        )

    for restart in range(1, RESTARTS + 1):
        accept(f"before-{restart}")
        accepted += 1
        # Exactly one delivery in flight: its message unacked, a BRPOP out for the free slot.
        wait_for(lambda: alive() and "sending" in postback_statuses(), what="a request in flight")
        connections = worker.log().count("Connected to")
        private_redis.kill()
        during = threading.Thread(target=accept, args=(f"during-{restart}",))
        during.start()  # accepted while the broker is down: left to the sweeper
        time.sleep(DOWN_SECONDS)
        private_redis.start()
        during.join(timeout=20)
        assert not during.is_alive(), "a trigger accepted while Redis was down hung"
        accepted += 1

        def reconnected(before: int = connections) -> bool:
            return alive() and worker.log().count("Connected to") > before

        wait_for(reconnected, what=f"the worker to reconnect after restart {restart}")
        # Nothing accepted is lost, and the next round again starts with nothing in flight.
        wait_for(all_delivered, what=f"every accepted trigger's event after restart {restart}")

    simulator.set_faults(slow_rate=0.0)
    for lead in ("after-1", "after-2"):
        accept(lead)
        accepted += 1
    wait_for(all_delivered, what="the events of the triggers after the last restart", timeout=20)
    assert simulator.stats()["events_unique"] == accepted
    assert worker.process.poll() is None and worker.process.pid == pid
    assert "Unrecoverable error" not in worker.log()
