"""The fault schedule: every few seconds one fault, picked at random, while the load runs."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from chaos.config import PG_RESTART_DOWN_SECONDS, PGBOUNCER_DOWN_SECONDS
from chaos.processes import CeleryProcess
from chaos.services import ChaosDatabase, PrivateCluster, PrivatePgBouncer, PrivateRedis
from chaos.simulator import CountingState

log = logging.getLogger("chaos.faults")


class Fault(StrEnum):
    WORKER_CHILD_KILL = "worker child SIGKILL"
    WORKER_KILL = "worker SIGKILL (all processes) + restart"
    REDIS_RESTART = "redis SIGKILL + restart (queue lost)"
    PG_TERMINATE = "postgres: all backends terminated"
    PG_OUTAGE = "postgres: refuses connections 1-3 s"
    BEAT_KILL = "beat SIGKILL + restart"
    SIM_HANG = "simulator hangs past the read timeout 2-4 s"
    KILL_MID_REQUEST = "every pool child SIGKILLed mid-request"
    PG_CRASH = "postgres server SIGKILL + restart 1-3 s later (crash recovery)"
    PG_FAST_RESTART = "postgres server fast shutdown + restart 1-3 s later"
    PGBOUNCER_RESTART = "pgbouncer SIGKILL + restart 1-2 s later (same port)"


# Faults that restart the PostgreSQL server: only with the run's private cluster.
SERVER_FAULTS: frozenset[Fault] = frozenset({Fault.PG_CRASH, Fault.PG_FAST_RESTART})
# The broker restart: only with the run's private redis-server (a shared RabbitMQ is never
# restarted).
BROKER_FAULTS: frozenset[Fault] = frozenset({Fault.REDIS_RESTART})
# The pooler restart: only when the run has its private PgBouncer.
POOLER_FAULTS: frozenset[Fault] = frozenset({Fault.PGBOUNCER_RESTART})

# One round of the schedule, shuffled each time: every kind comes up at least once every
# ~35 s. A kind the round did not manage to inject (no pool child, no request to hold) is
# tried first in the next round, and the harness keeps the faults going until every kind was
# injected at least once (a check fails otherwise).
ROUND: tuple[Fault, ...] = (
    Fault.WORKER_CHILD_KILL,
    Fault.WORKER_CHILD_KILL,
    Fault.WORKER_KILL,
    Fault.REDIS_RESTART,
    Fault.PG_TERMINATE,
    Fault.PG_OUTAGE,
    Fault.BEAT_KILL,
    Fault.SIM_HANG,
    Fault.KILL_MID_REQUEST,
    Fault.PG_CRASH,
    Fault.PG_FAST_RESTART,
    Fault.PGBOUNCER_RESTART,
)
HELD_REQUEST_WAIT_SECONDS = 15.0


@dataclass
class FaultRecord:
    counts: Counter[str] = field(default_factory=Counter)
    pg_backends_terminated: int = 0
    errors: list[str] = field(default_factory=list)
    timeline: list[tuple[float, str, str]] = field(default_factory=list)
    last_fault_at: float = 0.0
    restarts_after_unexpected_exit: int = 0
    broker_messages_sampled: int = 0

    def note(self, fault: Fault, detail: str) -> None:
        now = time.monotonic()
        self.counts[fault.value] += 1
        self.timeline.append((now, fault.value, detail))
        self.last_fault_at = now
        log.info("fault: %s (%s)", fault.value, detail)


def decode_broker_message(raw: bytes) -> str:
    """A kombu Redis message is JSON with a base64 body: return the body as text as well."""
    text = raw.decode("utf-8", errors="replace")
    with contextlib.suppress(ValueError, TypeError, KeyError):
        message = json.loads(text)
        if isinstance(message, list):  # the unacked hash stores [message, exchange, key]
            message = message[0]
        body = message.get("body", "")
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body).decode("utf-8", errors="replace")
        return text + "\n" + str(body)
    return text


class FaultInjector(threading.Thread):
    def __init__(
        self,
        *,
        workers: list[CeleryProcess],
        beat: CeleryProcess,
        redis: PrivateRedis | None,
        database: ChaosDatabase,
        cluster: PrivateCluster | None,
        pgbouncer: PrivatePgBouncer | None = None,
        broker_note: str = "RabbitMQ: a shared server, never restarted",
        queue: str,
        rng: random.Random,
        gap_seconds: tuple[float, float],
        stop: threading.Event,
        inspect_broker_text: Callable[[str, str], object],
        simulator: CountingState,
        slow_rate: float,
    ) -> None:
        super().__init__(name="chaos-faults", daemon=True)
        self.workers = workers
        self.beat = beat
        self.redis = redis
        self.database = database
        self.cluster = cluster
        self.pgbouncer = pgbouncer
        # Kinds this topology cannot have, and why: an external PostgreSQL server and a shared
        # RabbitMQ are never restarted; without a PgBouncer there is none to restart.
        self.left_out: dict[str, str] = {}
        for fault in SERVER_FAULTS if cluster is None else ():
            self.left_out[fault.value] = "external PostgreSQL server: never restarted"
        for fault in BROKER_FAULTS if redis is None else ():
            self.left_out[fault.value] = broker_note
        for fault in POOLER_FAULTS if pgbouncer is None else ():
            self.left_out[fault.value] = "no PgBouncer in this run's topology"
        self.round = tuple(f for f in ROUND if f.value not in self.left_out)
        self.queue = queue
        self.rng = rng
        self.gap_seconds = gap_seconds
        self.stop_event = stop
        self.inspect_broker_text = inspect_broker_text
        self.simulator = simulator
        self.slow_rate = slow_rate
        self.record = FaultRecord()

    def run(self) -> None:
        schedule: list[Fault] = []
        while not self.stop_event.wait(self.rng.uniform(*self.gap_seconds)):
            self.sample_broker()
            self.ensure_running()
            if not schedule:
                schedule = list(self.round)
                self.rng.shuffle(schedule)
                missing = self.missing_kinds()
                if len(missing) < len(set(self.round)):  # not the first round
                    self.rng.shuffle(missing)
                    schedule.extend(missing)  # popped first
            fault = schedule.pop()
            try:
                self.inject(fault)
            except Exception as error:  # a fault that could not be injected is reported
                self.record.errors.append(f"{fault.value}: {type(error).__name__}: {error}")
                log.exception("fault %s failed", fault.value)
        self.ensure_running()

    def missing_kinds(self) -> list[Fault]:
        """Kinds of this run's round not injected yet, in the round's order."""
        return sorted(
            {f for f in self.round if self.record.counts[f.value] == 0}, key=self.round.index
        )

    def inject(self, fault: Fault) -> None:
        if fault is Fault.WORKER_CHILD_KILL:
            candidates = [w for w in self.workers if w.alive and w.children()]
            if not candidates:
                fault = Fault.WORKER_KILL  # every pool is restarting: kill a whole worker
            else:
                worker = self.rng.choice(candidates)
                victim = worker.kill_child(self.rng)
                if victim is not None:
                    self.record.note(fault, f"{worker.name} child pid {victim}")
                return
        if fault is Fault.WORKER_KILL:
            worker = self.rng.choice(self.workers)
            worker.kill()
            self.record.note(fault, f"{worker.name} pid {worker.pid}")
            time.sleep(self.rng.uniform(0.5, 2.0))
            worker.start()
        elif fault is Fault.BEAT_KILL:
            self.beat.kill()
            self.record.note(fault, f"beat pid {self.beat.pid}")
            time.sleep(self.rng.uniform(0.5, 2.0))
            self.beat.start()
        elif fault is Fault.REDIS_RESTART:
            assert self.redis is not None
            self.redis.kill()
            down = self.rng.uniform(0.5, 3.0)
            self.record.note(fault, f"down {down:.1f} s")
            time.sleep(down)
            self.redis.start()
        elif fault is Fault.PG_TERMINATE:
            killed = self.database.terminate_backends()
            self.record.pg_backends_terminated += killed
            self.record.note(fault, f"{killed} backends")
        elif fault is Fault.SIM_HANG:
            # Every request the simulator does not fail otherwise hangs past the read timeout,
            # for 2-4 s and until at least one did (there may be no traffic at the moment).
            seconds = self.rng.uniform(2.0, 4.0)
            started, held = time.monotonic(), self.simulator.held_requests
            self._set_slow_rate(1.0)
            try:
                self.simulator.wait_for_held_request(held, HELD_REQUEST_WAIT_SECONDS)
                time.sleep(max(0.0, started + seconds - time.monotonic()))
            finally:
                self._set_slow_rate(self.slow_rate)
            self.record.note(fault, f"{self.simulator.held_requests - held} requests held")
        elif fault is Fault.KILL_MID_REQUEST:
            # Celery's smoke tests kill a worker mid-task; here it is mid-HTTP: hold the next
            # request, then SIGKILL every pool child while the worker waits for the answer.
            held = self.simulator.held_requests
            self._set_slow_rate(1.0)
            try:
                if not self.simulator.wait_for_held_request(held, HELD_REQUEST_WAIT_SECONDS):
                    return
                time.sleep(0.3)
                victims = [
                    pid
                    for worker in self.workers
                    for pid in [worker.kill_child(self.rng, every=True)]
                    if pid is not None
                ]
            finally:
                self._set_slow_rate(self.slow_rate)
            self.record.note(fault, f"{len(victims)} pools")
        elif fault is Fault.PG_OUTAGE:
            seconds = self.rng.uniform(1.0, 3.0)
            self.record.note(fault, f"{seconds:.1f} s")
            killed = self.database.outage(seconds)
            self.record.pg_backends_terminated += killed
        elif fault is Fault.PG_CRASH:
            assert self.cluster is not None
            postmaster = self.cluster.pid
            children, gone_after = self.cluster.crash()
            down = self.rng.uniform(*PG_RESTART_DOWN_SECONDS)
            time.sleep(down)
            started = time.monotonic()
            how = self.cluster.start()
            self.record.note(
                fault,
                f"postmaster {postmaster}: {children} children gone by themselves after "
                f"{gone_after:.2f} s; down {down:.1f} s; {how} took "
                f"{time.monotonic() - started:.1f} s",
            )
        elif fault is Fault.PG_FAST_RESTART:
            assert self.cluster is not None
            self.cluster.fast_stop()
            self.cluster.record.fast_restarts += 1
            down = self.rng.uniform(*PG_RESTART_DOWN_SECONDS)
            time.sleep(down)
            how = self.cluster.start()
            self.record.note(fault, f"down {down:.1f} s; {how}")
        elif fault is Fault.PGBOUNCER_RESTART:
            assert self.pgbouncer is not None
            self.pgbouncer.kill()
            down = self.rng.uniform(*PGBOUNCER_DOWN_SECONDS)
            self.record.note(fault, f"down {down:.1f} s")
            time.sleep(down)
            self.pgbouncer.start()

    def _set_slow_rate(self, rate: float) -> None:
        self.simulator.update_faults({"slow_rate": rate})

    def ensure_running(self) -> None:
        """Restarts anything that died on its own (counted: that is worth knowing)."""
        if self.redis is not None and not self.redis.running:
            self.record.restarts_after_unexpected_exit += 1
            self.redis.start()
        if self.pgbouncer is not None and not self.pgbouncer.running:
            self.record.restarts_after_unexpected_exit += 1
            log.warning("the private PgBouncer exited on its own; restarting it")
            self.pgbouncer.start()
        if self.cluster is not None and not self.cluster.running:
            self.record.restarts_after_unexpected_exit += 1
            log.warning("the private PostgreSQL exited on its own; restarting it")
            self.cluster.start()
        for process in [*self.workers, self.beat]:
            if process.check():
                self.record.restarts_after_unexpected_exit += 1
                log.warning("%s exited on its own; restarting it", process.name)
                process.start()

    def sample_broker(self) -> None:
        """Looks at what is queued (and unacked) right now: ids only, never match keys.

        Redis only: on RabbitMQ a look means taking messages from the workers' queue (and
        every requeue counts against a quorum queue's delivery limit); the harness looks once
        at the end instead, after the workers stopped."""
        if self.redis is None:
            return
        with contextlib.suppress(Exception):
            client = self.redis.client()
            try:
                raw = list(client.lrange(self.queue, 0, 49))
                raw.extend(list(client.hvals("unacked"))[:50])
            finally:
                client.close()
            for message in raw:
                self.inspect_broker_text(decode_broker_message(message), "redis message")
            self.record.broker_messages_sampled += len(raw)
