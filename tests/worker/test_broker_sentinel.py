"""A real worker, its embedded beat and the publishing (web) side follow a Sentinel failover.

On loopback: a primary, a replica and three sentinels (quorum 2), all private redis-server
processes of this test. The worker (prefork, 2 processes, beat embedded) and this process (the
web side: `enqueue_trigger`, the app's publish path and the wake-up flag) use
BROKER_URL=sentinel://…;sentinel://…;sentinel://… with BROKER_SENTINEL_MASTER. Triggers flow
from a thread while the primary is SIGKILLed; the sentinels promote the replica. Then the old
primary comes back (the sentinels make it a replica of the new one) and a switch-over
(`SENTINEL FAILOVER`) demotes the live primary under the clients' feet: their connections now
reach a replica, whose answer to a write is READONLY.

Every accepted trigger's event reaches the simulator (what a failover drops, the sweeper sends
again), the same worker process delivers throughout, and after each switch this process
publishes to, and keeps its wake-up flag on, the new primary.

To see it fail: with BROKER_URL pointing at the first primary (redis://127.0.0.1:<A>/0) no
client follows the promotion; the worker never reconnects, and `wait_for` times out on the
deliveries after the failover.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from crm_postback.api import enqueue_trigger
from crm_postback.core.settings import get_settings
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

MASTER = "crm"
StartWorker = Callable[..., WorkerProcess]


def _answers(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.5).ping())
    except redis.ConnectionError:
        return False


class SentinelCluster:
    """A primary, a replica and three sentinels on 127.0.0.1, each on a port of its own."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.primary, self.replica = free_port(), free_port()
        self.sentinels = [free_port() for _ in range(3)]
        self.servers: dict[int, subprocess.Popen[bytes]] = {}
        self.url = ";".join(f"sentinel://127.0.0.1:{port}" for port in self.sentinels)

    def _spawn(self, port: int, args: list[str]) -> None:
        log = (self.folder / f"{port}-{time.monotonic_ns()}.log").open("wb")
        self.servers[port] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: _answers(port), what=f"redis-server on port {port}", timeout=10)

    def start_server(self, port: int, *extra: str) -> None:
        data = self.folder / f"data-{port}"
        data.mkdir(exist_ok=True)
        self._spawn(
            port,
            [
                *("redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--dir", str(data), *extra),
            ],
        )

    def start(self) -> None:
        self.start_server(self.primary)
        self.start_server(self.replica, "--replicaof", "127.0.0.1", str(self.primary))
        for port in self.sentinels:
            conf = self.folder / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.folder}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {self.primary} 2\n"
                f"sentinel down-after-milliseconds {MASTER} 1000\n"
                f"sentinel failover-timeout {MASTER} 2000\n"
                f"sentinel parallel-syncs {MASTER} 1\n"
            )
            self._spawn(port, ["redis-server", str(conf), "--sentinel"])

        def ready() -> bool:
            for port in self.sentinels:
                state = self.sentinel(port).sentinel_master(MASTER)
                if state["num-slaves"] < 1 or state["num-other-sentinels"] < 2:
                    return False
            return self.replica_of(self.replica) == self.primary

        wait_for(ready, what="three sentinels that know each other and the replica", timeout=30)

    def sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2, decode_responses=True)

    def master_port(self) -> int:
        _, port = self.sentinel(self.sentinels[0]).sentinel_get_master_addr_by_name(MASTER)
        return int(port)

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2, decode_responses=True)

    def replica_of(self, port: int) -> int | None:
        """The port of the primary `port` replicates from with its link up, else None."""
        info = self.node(port).info("replication")
        if info["role"] != "slave" or info.get("master_link_status") != "up":
            return None
        return int(info["master_port"])

    def kill(self, port: int) -> None:
        """SIGKILL: no goodbye to the clients, nothing saved."""
        process = self.servers.pop(port)
        process.kill()
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for port in list(self.servers):
            self.kill(port)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    require_service(
        "redis-server",
        lambda: shutil.which("redis-server") or (_ for _ in ()).throw(FileNotFoundError()),
    )
    folder = tmp_path / "sentinel"
    folder.mkdir()
    servers = SentinelCluster(folder)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop_all()


@pytest.fixture
def redis_url(cluster: SentinelCluster) -> str:
    """start_worker's broker before the test names the sentinels, and where its teardown
    purges the queue: the server that is the primary when the test ends (the first primary,
    back as a replica and promoted again by the switch-over)."""
    return f"redis://127.0.0.1:{cluster.primary}/0"


def postback_statuses() -> list[str]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return list(session.scalars(select(Postback.status)))


class Publisher(threading.Thread):
    """The web side under load: a trigger every 50 ms through `enqueue_trigger` (commit, then
    the wake-up flag and the publish). Counts what was accepted (committed), from `accepted`
    (the triggers of earlier phases)."""

    def __init__(self, accepted: int) -> None:
        super().__init__(daemon=True)
        self.accepted = accepted
        self.stopping = threading.Event()
        self.errors: list[BaseException] = []

    def run(self) -> None:
        while not self.stopping.is_set():
            lead = f"L-{self.accepted}"
            try:
                enqueue_trigger(
                    trigger_body("lead.submitted", lead, match_keys={"email": f"{lead}@x.org"})
                )
            except BaseException as error:  # nothing may escape: the broker is the sweeper's
                self.errors.append(error)
                return
            self.accepted += 1
            time.sleep(0.05)

    def stop(self) -> int:
        self.stopping.set()
        self.join(timeout=30)
        assert not self.is_alive(), "a trigger hung"
        assert not self.errors, f"enqueue_trigger raised {self.errors!r}"
        return self.accepted


def _publishes_to(cluster: SentinelCluster, port: int) -> None:
    """This process's publish path and wake-up flag write to the primary on `port`."""
    from worker import wakeups
    from worker.app import app

    settings = get_settings()
    probe = f"sentinel-probe-{uuid.uuid4().hex[:8]}"  # a queue no worker reads
    app.send_task("postback.process_triggers", args=[[]], queue=probe)
    assert cluster.node(port).llen(probe) == 1, "the publish did not reach the new primary"
    cluster.node(port).delete(probe)
    # No trigger is flowing and everything is delivered: no wake-up may be pending.
    wakeups.release_wakeup(settings)
    assert wakeups.claim_wakeup(settings)
    assert cluster.node(port).pttl(f"postback:wakeup:{settings.celery_queue}") > 0
    wakeups.release_wakeup(settings)


@pytest.mark.timeout(300)
def test_workers_beat_and_publishers_follow_a_sentinel_failover(
    start_worker: StartWorker,
    cluster: SentinelCluster,
    simulator: SimulatorControl,
    make_event_set: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_event_set()
    broker_url = os.environ.get("SENTINEL_TEST_BROKER_URL", cluster.url)  # see the docstring
    apply_env(
        monkeypatch,
        BROKER_URL=broker_url.replace("<A>", str(cluster.primary)),
        BROKER_SENTINEL_MASTER=MASTER,
        DISPATCH_LEASE_SECONDS="3",
    )
    worker = start_worker()
    pid = worker.process.pid
    settled = 0  # triggers accepted before the current phase, all delivered

    def alive() -> bool:
        assert worker.process.poll() is None, f"worker {pid} exited:\n{worker.log()[-3000:]}"
        return True

    def delivered(count: int) -> bool:
        return (
            alive()
            and postback_statuses().count("delivered") >= count
            and simulator.stats()["events_unique"] >= count
        )

    def all_delivered(count: int) -> Callable[[], bool]:
        return lambda: alive() and postback_statuses() == ["delivered"] * count and delivered(count)

    def switch_under_load(switch: Callable[[], None], new_primary: int, what: str) -> None:
        nonlocal settled
        publisher = Publisher(settled)
        publisher.start()
        wait_for(lambda: delivered(settled + 10), what=f"deliveries before the {what}")
        connections = worker.log().count("Connected to")
        switch()
        wait_for(
            lambda: cluster.master_port() == new_primary,
            what=f"the sentinels to name {new_primary} after the {what}",
            # A split vote among the sentinels is retried after twice the failover timeout.
            timeout=60,
        )
        wait_for(
            lambda: alive() and worker.log().count("Connected to") > connections,
            what=f"the worker to reconnect after the {what}",
            timeout=30,
        )
        after_switch = publisher.accepted
        wait_for(
            lambda: delivered(after_switch + 10),
            what=f"deliveries of triggers accepted after the {what}",
            timeout=30,
        )
        settled = publisher.stop()
        # Nothing accepted is lost: what the switch dropped, the sweeper sends again.
        wait_for(all_delivered(settled), what=f"every accepted trigger after the {what}")
        _publishes_to(cluster, new_primary)

    # 1. The primary dies: the replica is promoted.
    switch_under_load(lambda: cluster.kill(cluster.primary), cluster.replica, "primary's SIGKILL")

    # 2. The old primary comes back empty; the sentinels turn it into a replica of the new one.
    cluster.start_server(cluster.primary)
    wait_for(
        lambda: cluster.replica_of(cluster.primary) == cluster.replica,
        what="the old primary to become a replica",
        timeout=30,
    )

    def switch_over() -> None:
        """`SENTINEL FAILOVER`: the live primary is demoted with every client still connected."""

        def accepted() -> bool:
            try:
                return bool(cluster.sentinel(cluster.sentinels[0]).sentinel_failover(MASTER))
            except redis.ResponseError:  # NOGOODSLAVE until the sentinel saw the link up
                return False

        wait_for(accepted, what="the sentinels to take the switch-over", timeout=20)

    switch_under_load(switch_over, cluster.primary, "switch-over")

    log = worker.log()
    assert worker.process.poll() is None and worker.process.pid == pid
    assert "Unrecoverable error" not in log
    assert "raised unexpected" not in log, "a task failed on the switch"
    assert simulator.stats()["events_unique"] == settled
