"""A pipeline (one design on a fresh database, queue, simulator and workers) and a measured run."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from bench import metrics, producers, services, simulator
from bench.cpu import CpuMeter
from bench.dbcount import StatementCounter, read_counts, read_counts_by_pid
from bench.profile import Profiler, top_own_time
from bench.rss import RssSampler
from bench.workers import WorkerGroup
from bench.workload import EVENT_NAMES, EVENT_SETS, LEAD_EVENT_SOURCE, MAPPINGS, STAGES, Workload
from models.workspaces import DEFAULT_WORKSPACE_ID

REPO = Path(__file__).resolve().parents[1]
# The naive design has no event-set table; its event ids use the position + 1, which is also
# what the product's fresh database gives the three sets.
NAIVE_SET_IDS = [index + 1 for index in range(len(EVENT_SETS))]


@dataclass
class Context:
    run_id: str
    workdir: Path
    pg_admin_url: str
    redis_url: str
    workers: int
    concurrency: int
    sim_kind: str
    stall_seconds: float
    counter: StatementCounter  # this (the producer) process's statements


class Pipeline:
    """Everything one design needs for one run; leaving it stops and deletes all of it."""

    def __init__(self, ctx: Context, design: str, label: str, count_only: bool = False) -> None:
        self.ctx = ctx
        self.design = design
        self.label = label
        self.count_only = count_only
        self.workdir = ctx.workdir / label
        self.queue = f"bench-{ctx.run_id}-{label}"
        self.db = services.Database(
            ctx.pg_admin_url, f"bench_{ctx.run_id}_{label}".replace("-", "_")
        )
        self.sim: simulator.Simulator | None = None
        self.workers: WorkerGroup | None = None
        self.set_ids: list[int] = list(NAIVE_SET_IDS)

    def __enter__(self) -> Pipeline:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db.create()
        self.sim = simulator.start(self.ctx.sim_kind, self.workdir, self.count_only)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["PYTHONPATH"] = str(REPO)
        env["LOG_LEVEL"] = "WARNING"
        if self.design == "ours":
            env.update(self._configure_ours(self.sim.url))
        else:
            env.update(self._configure_naive(self.sim.url))
        self.workers = WorkerGroup(
            self.design,
            f"{self.ctx.run_id}-{self.label}",
            count=self.ctx.workers,
            concurrency=self.ctx.concurrency,
            env=env,
            workdir=self.workdir,
            beat=self.design == "ours",
        )
        self.workers.start()

    def _configure_ours(self, sim_url: str) -> dict[str, str]:
        """Points this process's settings (and the workers' env) at the run's services."""
        from cryptography.fernet import Fernet

        from models.migrate import upgrade

        values = {
            "DATABASE_URL": self.db.url,
            "BROKER_URL": self.ctx.redis_url,
            "CELERY_QUEUE": self.queue,
            "TIKTOK_API_BASE_URL": sim_url,
            "POSTBACK_DATA_DIR": str(self.workdir / "data"),
            "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "LOG_LEVEL": "WARNING",
        }
        os.environ.update(values)
        _reload_product_settings()
        upgrade(self.db.url)
        self.set_ids = _create_event_sets()
        return values

    def _configure_naive(self, sim_url: str) -> dict[str, str]:
        from bench import naive

        naive.create_schema(self.db.url)
        naive.configure(self.ctx.redis_url, self.queue)
        postbacks = {
            spec.name: {
                "event_source_id": spec.source_id,
                "access_token": spec.token,
                "lead_event_source": LEAD_EVENT_SOURCE,
                "events": dict(zip(STAGES, EVENT_NAMES, strict=True)),
            }
            for spec in EVENT_SETS
        }
        return {
            "BENCH_NAIVE_DATABASE_URL": self.db.url,
            "BENCH_NAIVE_BROKER_URL": self.ctx.redis_url,
            "BENCH_NAIVE_QUEUE": self.queue,
            "BENCH_NAIVE_API_BASE_URL": sim_url,
            "BENCH_NAIVE_POSTBACKS": json.dumps(postbacks),
        }

    def sender(self, workload: Workload, ingest: str) -> producers.Send:
        if self.design == "naive":
            return producers.naive(workload, self.set_ids)
        return (
            producers.ours_batch(workload) if ingest == "batch" else producers.ours_single(workload)
        )

    def delivered(self) -> int:
        assert self.sim is not None
        return int(self.sim.stats()["events_unique"])

    def delivered_to(self, set_index: int) -> int:
        """Unique events the simulator received for EVENT_SETS[set_index]."""
        assert self.sim is not None
        by_source = self.sim.stats().get("events_unique_by_source", {})
        return int(by_source.get(EVENT_SETS[set_index].source_id, 0))

    def wait_delivered(self, expected: int) -> bool:
        """Until the simulator has `expected` unique events; False if progress stalls."""
        return self.wait_until(self.delivered, expected)

    def wait_until(self, counter: Callable[[], int], expected: int) -> bool:
        """Until `counter()` reaches `expected`; False if it stops moving for the stall time."""
        assert self.workers is not None
        last_count, last_change = -1, time.monotonic()
        while True:
            count = counter()
            if count >= expected:
                return True
            now = time.monotonic()
            if count != last_count:
                last_count, last_change = count, now
            elif now - last_change > self.ctx.stall_seconds:
                return False
            self.workers.check_alive()
            time.sleep(0.2)

    def worker_counts(self, settle_seconds: float = 10.0) -> dict[str, int]:
        """Worker statement counts once they stop changing (the last record step commits
        after the simulator answered)."""
        assert self.workers is not None
        deadline = time.monotonic() + settle_seconds
        previous = read_counts(self.workers.stats_dir)
        while time.monotonic() < deadline:
            time.sleep(1.5)  # longer than the workers' flush interval
            current = read_counts(self.workers.stats_dir)
            if current == previous:
                return current
            previous = current
        return previous

    def close(self) -> None:
        if self.workers is not None:
            self.workers.stop()
            self.workers = None
        if self.sim is not None:
            self.sim.stop()
            self.sim = None
        if self.design == "ours":
            from models.db import reset_engine

            reset_engine()  # let go of the run's database before it is dropped
        self.db.drop()
        services.delete_queue_keys(self.ctx.redis_url, self.queue)


def _reload_product_settings() -> None:
    from crm_postback.core.settings import get_settings, reset_settings_cache
    from models.db import reset_engine
    from worker.app import app, apply_settings

    reset_settings_cache()
    reset_engine()
    apply_settings(app, get_settings())


def _create_event_sets() -> list[int]:
    from crm_postback.configuration.audit import SYSTEM_ACTOR
    from crm_postback.configuration.event_set_service import create_event_set
    from crm_postback.configuration.mapping_service import add_mapping
    from crm_postback.core.settings import get_settings
    from models.db import session_scope

    ids = []
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        for spec in EVENT_SETS:
            event_set = create_event_set(
                session,
                get_settings(),
                name=spec.name,
                source_id=spec.source_id,
                access_token=spec.token,
                lead_event_source=LEAD_EVENT_SOURCE,
                default_currency="USD",
                actor=SYSTEM_ACTOR,
            )
            for mapping in MAPPINGS:
                add_mapping(session, event_set, **mapping, actor=SYSTEM_ACTOR)
            ids.append(event_set.id)
        session.commit()
    return ids


def measure(
    ctx: Context,
    workload: Workload,
    *,
    design: str,
    ingest: str,
    label: str,
    plan: producers.ProducerPlan,
    profile: Path | None = None,
) -> dict[str, Any]:
    """Pushes the workload through one fresh pipeline and returns the run's figures."""
    with Pipeline(ctx, design, label) as pipeline:
        assert pipeline.workers is not None and pipeline.sim is not None
        sampler = RssSampler(pipeline.workers.main_pids, interval=0.5).start()
        profiler = None
        if profile is not None:
            profiler = Profiler(
                pipeline.workers.main_pids(), profile, pipeline.workdir / "py-spy.log"
            )
            time.sleep(1.0)  # py-spy needs a moment to attach to every process
        # What the workers did while starting (beat's first sweep) is not the workload's.
        before = read_counts(pipeline.workers.stats_dir)
        before_by_pid = read_counts_by_pid(pipeline.workers.stats_dir)
        nodes = pipeline.workers.describe()
        cpu_meter = CpuMeter(
            worker_pids=pipeline.workers.main_pids(),
            beat_pids=pipeline.workers.beat_pids(),
            simulator_pid=pipeline.sim.pid,
            pg_admin_url=pipeline.db.admin_url,
            database=pipeline.db.name,
            redis_url=ctx.redis_url,
        ).start()
        ctx.counter.reset()
        wal_at_start = pipeline.db.wal_position()
        produced = producers.run(workload, pipeline.sender(workload, ingest), plan)
        producer_counts = ctx.counter.snapshot()
        complete = not produced.errors and pipeline.wait_delivered(workload.triggers)
        waited_at = time.time()
        wal_bytes = pipeline.db.wal_position() - wal_at_start
        cpu = cpu_meter.stop(workload.triggers)
        profile_top = None
        if profiler is not None:
            samples, top = top_own_time(profiler.stop())
            profile_top = {"path": str(profile), "samples": samples, "top_own_time": top}
        after = pipeline.worker_counts()
        worker_counts = {key: after[key] - before.get(key, 0) for key in after}
        worker_counts["processes"] = after["processes"]
        sampler.stop()
        nodes = _node_work(
            nodes, pipeline.workers.describe(), pipeline.workers.stats_dir, cpu, before_by_pid
        )
        dump = pipeline.sim.dump()
        deliveries = delivery_check(pipeline.db.libpq_url) if design == "ours" else None
        shutdown_seconds = pipeline.workers.stop()
    matched = metrics.match_events(
        workload, pipeline.set_ids, dump["received"], produced.accepted_at
    )
    stats = dump["stats"]
    n = workload.triggers
    end_to_end = matched["last_received_at"] - produced.started_at
    statements = producer_counts["statements"] + worker_counts["statements"]
    transactions = producer_counts["transactions"] + worker_counts["transactions"]
    cursor_calls = producer_counts["cursor_calls"] + worker_counts["cursor_calls"]
    events = matched["events_received"]
    result: dict[str, Any] = {
        "label": label,
        "design": design,
        "ingest": ingest,
        "complete": complete and matched["events_missing"] == 0,
        "triggers": n,
        "producers": workload.producers,
        "enqueue_calls": produced.calls,
        "rejected": produced.rejected,
        "producer_errors": produced.errors,
        "events_expected": matched["events_expected"],
        "events_received": events,
        "events_missing": matched["events_missing"],
        "events_unexpected": matched["events_unexpected"],
        "events_duplicate": stats["events_duplicate"],
        "events_accepted": stats.get("events_accepted"),
        "ingest_seconds": round(produced.seconds, 3),
        "ingest_triggers_per_s": round(n / produced.seconds, 1),
        "end_to_end_seconds": round(end_to_end, 3) if events else None,
        "triggers_per_s": round(n / end_to_end, 1) if events and end_to_end > 0 else None,
        **metrics.latency_figures(matched["latencies"]),
        "http_requests": stats["requests_total"],
        "http_requests_per_event": round(stats["requests_total"] / events, 4) if events else None,
        "http_requests_by_code": stats.get("requests_by_code", {}),
        "db_statements_producer": producer_counts["statements"],
        "db_statements_workers": worker_counts["statements"],
        "db_statements_per_trigger": round(statements / n, 3),
        "db_cursor_calls_per_trigger": round(cursor_calls / n, 3),
        "db_transactions_per_trigger": round(transactions / n, 3),
        "db_wal_bytes_per_trigger": round(wal_bytes / n),
        "worker_tasks": worker_counts["tasks"],
        "worker_tasks_per_trigger": round(worker_counts["tasks"] / n, 4),
        "worker_processes_counted": worker_counts["processes"],
        "worker_rss_peak_mib": round(sampler.peak_kib / 1024, 1),
        "worker_pss_peak_mib": round(sampler.peak_pss_kib / 1024, 1),
        "worker_rss_samples": len(sampler.samples),
        "worker_shutdown_seconds": round(shutdown_seconds, 1),
        "waited_after_ingest_seconds": round(waited_at - produced.finished_at, 3),
    }
    result["cpu"] = cpu
    result["nodes"] = nodes
    if deliveries is not None:
        result["deliveries"] = deliveries
    if profile_top is not None:
        result["profile"] = profile_top
    return result


def _node_work(
    at_start: list[dict[str, Any]],
    at_end: list[dict[str, Any]],
    stats_dir: Path,
    cpu: dict[str, Any],
    before: dict[int, dict[str, int]],
) -> list[dict[str, Any]]:
    """Each worker node with what its pool processes did during the run: Celery tasks and DB
    statements (pids seen at the start or end of the run; a pool child that came and went
    between the two is not attributed) and the CPU seconds of its process tree over the
    measured window."""
    after = read_counts_by_pid(stats_dir)

    def done(pid: int, key: str) -> int:
        return after.get(pid, {}).get(key, 0) - before.get(pid, {}).get(key, 0)

    ending = {node["pid"]: node for node in at_end}
    by_main = cpu.get("worker_seconds_by_main_pid", {})
    nodes = []
    for node in at_start:
        pool = sorted({*node["pool_pids"], *ending.get(node["pid"], {}).get("pool_pids", [])})
        nodes.append(
            {
                **node,
                "pool_pids": pool,
                "tasks": sum(done(pid, "tasks") for pid in pool),
                "statements": sum(done(pid, "statements") for pid in pool),
                "cpu_seconds": by_main.get(str(node["pid"])),
            }
        )
    return nodes


def delivery_check(libpq_url: str) -> dict[str, Any]:
    """The product's outbox at the end of a run: a claim (lease) increments `attempts` and
    each send writes one delivery_attempts row, so a postback with more attempt rows than
    claims was sent twice under one lease; with no faults every delivered one has exactly
    one claim and one row. (A throttled answer gives its claim back, attempts - 1, and keeps
    its row: under throttling rows > attempts is legitimate; the bench's simulator does not
    throttle.)"""
    import psycopg

    with psycopg.connect(libpq_url, connect_timeout=5) as conn:
        row = conn.execute(
            """
            SELECT count(*),
                   count(*) FILTER (WHERE status = 'delivered'),
                   coalesce(max(attempts), 0),
                   count(*) FILTER (WHERE attempts > 1),
                   count(*) FILTER (WHERE lease_until IS NOT NULL),
                   count(*) FILTER (WHERE status = 'sending')
            FROM postbacks
            """
        ).fetchone()
        per = conn.execute(
            """
            SELECT coalesce(sum(rows), 0),
                   coalesce(max(rows), 0),
                   count(*) FILTER (WHERE rows > greatest(attempts, 1)),
                   count(*) FILTER (WHERE status = 'delivered' AND rows <> 1)
            FROM (
                SELECT p.id, p.status, p.attempts, count(a.id) AS rows
                FROM postbacks p LEFT JOIN delivery_attempts a ON a.postback_id = p.id
                GROUP BY p.id, p.status, p.attempts
            ) AS per_postback
            """
        ).fetchone()
    assert row is not None and per is not None
    return {
        "postbacks": int(row[0]),
        "delivered": int(row[1]),
        "max_attempts": int(row[2]),
        "postbacks_with_more_than_one_claim": int(row[3]),
        "leases_still_held": int(row[4]),
        "still_sending": int(row[5]),
        "attempt_rows": int(per[0]),
        "max_attempt_rows_per_postback": int(per[1]),
        "postbacks_with_more_attempt_rows_than_claims": int(per[2]),
        "delivered_without_exactly_one_attempt_row": int(per[3]),
    }
