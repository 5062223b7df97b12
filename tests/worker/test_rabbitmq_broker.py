"""What is particular to RabbitMQ as the broker (worker/app.py, docs/operations.md "RabbitMQ").

A real worker on the shared RabbitMQ (TEST_RABBITMQ_URL) with this run's own queue name
(CELERY_QUEUE), which `start_worker` deletes at the end: the queue is a durable quorum queue,
the worker sees it and disables global QoS, publishes are confirmed, and a message whose worker
is SIGKILLed mid-request goes back to the queue and is delivered to the next worker, while
the event reaches TikTok (the simulator) once, under one event_id.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from amqp.exceptions import PreconditionFailed
from kombu import Connection
from sqlalchemy import select

from crm_postback.api import enqueue_trigger
from crm_postback.core.settings import get_settings
from crm_postback.simulator import SimulatorControl
from models import Postback
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import (  # type: ignore[import-not-found]
    WorkerProcess,
    through_pgbouncer,
    trigger_body,
    wait_for,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("broker_url", ["rabbitmq"], indirect=True),
]

StartWorker = Callable[..., WorkerProcess]
RECEIVED = re.compile(r"Task postback\.process_triggers\[([0-9a-f-]{36})\] received")


@contextmanager
def channel(url: str) -> Iterator[Any]:
    """A channel of its own: a refused declare closes the channel it was made on."""
    with Connection(url, connect_timeout=3) as connection:
        yield connection.channel()


def declare(url: str, queue: str, **options: Any) -> Any:
    with channel(url) as ch:
        return ch.queue_declare(queue, **options)


def statuses() -> list[str]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return list(session.scalars(select(Postback.status).order_by(Postback.id)))


def test_the_worker_consumes_a_durable_quorum_queue_with_confirmed_publishes(
    start_worker: StartWorker, broker_url: str
) -> None:
    from worker.app import app

    worker = start_worker(beat=False)
    queue = get_settings().celery_queue

    # It exists (a passive declare fails on a missing queue) and is what the worker reads.
    found = declare(broker_url, queue, passive=True)
    assert found.queue == queue and found.consumer_count >= 1
    quorum = {"x-queue-type": "quorum"}
    # Declaring a queue again succeeds only with the arguments it was made with.
    assert declare(broker_url, queue, durable=True, auto_delete=False, arguments=quorum)
    for refused in (
        {"durable": True, "auto_delete": False, "arguments": {"x-queue-type": "classic"}},
        {"durable": False, "auto_delete": False, "arguments": quorum},
        {"durable": True, "auto_delete": True, "arguments": quorum},
    ):
        with pytest.raises(PreconditionFailed):
            declare(broker_url, queue, **refused)

    # Celery saw the quorum queue: no global QoS (quorum queues refuse it).
    assert "Global QoS is disabled" in worker.log()

    # Publisher confirms: the app's connections put their channels in confirm mode.
    assert app.conf.broker_transport_options == {"confirm_publish": True}
    assert app.conf.task_default_queue_type == "quorum"
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1)
        assert connection.connection.confirm_publish is True


@through_pgbouncer
def test_a_task_in_flight_when_the_worker_is_sigkilled_is_redelivered_and_sent_once(
    start_worker: StartWorker,
    simulator: SimulatorControl,
    make_event_set: Callable[..., int],
) -> None:
    make_event_set()
    # Leases short enough for the sweeper to send again within the test.
    lease = {"DISPATCH_LEASE_SECONDS": "5"}
    # The answer takes 5 s; the simulator records the events when it answers, whether or not
    # the client is still there.
    simulator.set_faults(slow_rate=1.0, slow_seconds=5)
    first = start_worker(beat=False, **lease)
    enqueue_trigger(trigger_body("lead.submitted", "L-kill", match_keys={"email": "k@example.com"}))
    wait_for(lambda: statuses() == ["sending"], what="the request to be in flight")
    time.sleep(1.5)  # the request leaves right after that commit; its answer is 5 s away
    [task_id] = RECEIVED.findall(first.log())

    # The main process and its pool at once, as the kernel's OOM killer or `docker kill`
    # would: nothing acks, nothing records the answer.
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait(timeout=10)
    simulator.set_faults(slow_rate=0.0)

    second = start_worker(**lease)  # with beat: its sweeper re-sends after the lease
    # The same message (a task id is new for every publish) went back to the quorum queue.
    wait_for(lambda: task_id in RECEIVED.findall(second.log()), what="the redelivery")
    wait_for(lambda: statuses() == ["delivered"], timeout=40, what="the delivery")

    with session_scope(workspace=ALL_WORKSPACES) as session:
        [event_id] = session.scalars(select(Postback.event_id)).all()
    # Sent twice (the killed request reached the simulator, the sweeper sent it again after
    # the lease) under one event_id: TikTok keeps one.
    simulator.wait_for_events(2, include_duplicates=True)
    sent = simulator.events(include_duplicates=True)
    assert len(sent) == 2 and {event["event_id"] for event in sent} == {event_id}
    stats = simulator.stats()
    assert (stats["events_unique"], stats["events_duplicate"]) == (1, 1)
    assert "Traceback" not in second.log()
