"""The three things `python -m bench.run` can do: compare, steady, long."""

from __future__ import annotations

import csv
import dataclasses
import os
import threading
import time
from pathlib import Path
from typing import Any

from bench import producers, report
from bench.profile import render_top
from bench.rss import RssSampler, Sample, tree_pss_kib, tree_rss_kib
from bench.runs import Context, Pipeline, measure
from bench.workload import Workload

BATCH = 1_000  # triggers per enqueue_triggers call (the product's batch limit)


def compare(ctx: Context, workload: Workload, *, profile: Path | None, log: Any) -> dict[str, Any]:
    """(1) ours, batched ingest; (2) ours, one at a time; (3) naive, one at a time."""
    plans = [
        ("ours_batch", "ours", "batch", BATCH),
        ("ours_single", "ours", "single", 1),
        ("naive", "naive", "single", 1),
    ]
    runs: dict[str, dict[str, Any]] = {}
    for label, design, ingest, chunk in plans:
        log(f"run {label}: {workload.triggers:,} triggers, {workload.producers} producer(s) ...")
        profile_path = None
        if profile is not None and design == "ours":
            profile_path = profile.with_name(f"{profile.stem}.{label}{profile.suffix or '.txt'}")
        runs[label] = measure(
            ctx,
            workload,
            design=design,
            ingest=ingest,
            label=label.replace("_", "-"),
            plan=producers.ProducerPlan(chunk=chunk),
            profile=profile_path,
        )
        run = runs[label]
        log(
            f"  {run['triggers_per_s'] or 0:,.0f} triggers/s end to end, p99 "
            f"{run['latency_p99_ms'] or 0:,.0f} ms, {run['events_received']:,}/"
            f"{run['events_expected']:,} events"
        )
        if "profile" in run:
            profiled = run["profile"]
            log(render_top(profiled["top_own_time"], profiled["samples"], f"py-spy, {label}"))
    return {"runs": runs, "ratios": report.compare_ratios(runs)}


def nodes(ctx: Context, workload: Workload, *, log: Any) -> dict[str, Any]:
    """Ours with batched ingest on 1 worker node, then on 2 (same broker queue and database,
    distinct node names and processes), each on a fresh pipeline; no event may go out twice."""
    cores = os.cpu_count() or 1
    pool = 2 * ctx.concurrency
    setup = (
        f"each node 1 main + prefork concurrency {ctx.concurrency}; 2 nodes = {pool} pool "
        f"processes on {cores} core(s), shared with PostgreSQL, the simulator, beat and the "
        "producers"
    )
    if pool > cores:
        setup += (
            "; over-subscribed: on one machine the 2-node run shows what a second node costs "
            "(claims, leases, contention), not the capacity a second machine would add"
        )
    log(f"nodes: {setup}")
    runs: dict[str, dict[str, Any]] = {}
    for count in (1, 2):
        label = f"nodes_{count}"
        log(f"run {label}: {workload.triggers:,} triggers on {count} worker node(s) ...")
        runs[label] = measure(
            dataclasses.replace(ctx, workers=count),
            workload,
            design="ours",
            ingest="batch",
            label=label.replace("_", "-"),
            plan=producers.ProducerPlan(chunk=BATCH),
        )
        run = runs[label]
        log(
            f"  {run['triggers_per_s'] or 0:,.0f} triggers/s end to end, "
            f"{run['events_received']:,}/{run['events_expected']:,} events, "
            f"{run['events_duplicate']:,} duplicates; nodes "
            + ", ".join(
                f"{node['name']} ({node['statements']:,} statements, {node['cpu_seconds']} CPU s)"
                for node in run["nodes"]
            )
        )
    return {"setup": setup, "runs": runs, "summary": report.nodes_summary(runs)}


def steady(
    ctx: Context, workload: Workload, *, rate: float, design: str, ingest: str
) -> dict[str, Any]:
    chunk = BATCH if ingest == "batch" else 1
    run = measure(
        ctx,
        workload,
        design=design,
        ingest=ingest,
        label=f"steady-{design}",
        plan=producers.ProducerPlan(chunk=chunk, rate=rate),
    )
    return {"run": run}


class _Progress:
    """What the long run's gate and RSS rows need: enqueued and delivered counts."""

    def __init__(self) -> None:
        self.enqueued = 0
        self.delivered = 0
        self.lock = threading.Lock()


def long(
    ctx: Context,
    workload: Workload,
    *,
    rss_csv: Path,
    rss_interval: float,
    max_backlog: int,
    warm_share: float,
    log: Any,
) -> dict[str, Any]:
    progress = _Progress()
    rows: list[tuple[float, int, int, int, int, int]] = []
    with Pipeline(ctx, "ours", "long", count_only=True) as pipeline:
        assert pipeline.workers is not None
        stop = threading.Event()

        def monitor() -> None:
            while not stop.wait(0.5):
                try:
                    progress.delivered = pipeline.delivered()
                except Exception:  # a slow answer must not end the run; the next poll will do
                    continue

        def gate(size: int) -> None:
            while progress.enqueued - progress.delivered > max_backlog and not stop.is_set():
                time.sleep(0.02)
            with progress.lock:
                progress.enqueued += size

        started = time.time()
        csv_file = rss_csv.open("w", newline="")
        writer = csv.writer(csv_file)
        writer.writerow(
            [
                "elapsed_s",
                "rss_kib",
                "processes",
                "triggers_enqueued",
                "events_delivered",
                "pss_kib",
            ]
        )

        def on_sample(sample: Sample) -> None:
            row = (
                round(sample.at - started, 2),
                sample.rss_kib,
                sample.processes,
                progress.enqueued,
                progress.delivered,
                sample.pss_kib,
            )
            rows.append(row)
            writer.writerow(row)
            csv_file.flush()

        watcher = threading.Thread(target=monitor, name="bench-long-monitor", daemon=True)
        watcher.start()
        sampler = RssSampler(pipeline.workers.main_pids, rss_interval, on_sample).start()
        last_log = [0.0]

        def report_progress() -> None:
            while not stop.wait(10):
                if time.time() - last_log[0] >= 30:
                    last_log[0] = time.time()
                    log(
                        f"  {progress.enqueued:,} enqueued, {progress.delivered:,} delivered, "
                        f"worker RSS {rows[-1][1] / 1024 if rows else 0:,.0f} MiB"
                    )

        threading.Thread(target=report_progress, daemon=True).start()
        ctx.counter.reset()
        produced = producers.run(
            workload,
            pipeline.sender(workload, "batch"),
            producers.ProducerPlan(chunk=BATCH, record_times=False, gate=gate),
        )
        complete = not produced.errors and pipeline.wait_delivered(workload.triggers)
        stop.set()
        sampler.stop()
        roots = pipeline.workers.main_pids()
        final_kib, final_processes = tree_rss_kib(roots)
        on_sample(Sample(time.time(), final_kib, final_processes, tree_pss_kib(roots)))
        csv_file.close()
        stats = pipeline.sim.stats() if pipeline.sim is not None else {}
        db_size = pipeline.db.size_bytes()
    warm_index = next(
        (i for i, row in enumerate(rows) if row[4] >= warm_share * workload.triggers), None
    )
    warm = rows[warm_index][1] if warm_index is not None else None
    end = rows[-1][1] if rows else None
    warm_pss = rows[warm_index][5] if warm_index is not None else None
    end_pss = rows[-1][5] if rows else None
    after_warm = [row[1] for row in rows[warm_index:]] if warm_index is not None else []
    end_to_end = float(stats.get("last_received_at", 0.0)) - produced.started_at
    unique = int(stats.get("events_unique", 0))
    return {
        "triggers": workload.triggers,
        "max_backlog": max_backlog,
        "complete": complete and unique >= workload.triggers,
        "producer_errors": produced.errors,
        "rejected": produced.rejected,
        "events_unique": unique,
        "events_duplicate": int(stats.get("events_duplicate", 0)),
        "http_requests_per_event": round(stats["requests_total"] / unique, 4) if unique else None,
        "ingest_triggers_per_s": round(workload.triggers / produced.seconds, 1),
        "end_to_end_seconds": round(end_to_end, 1),
        "triggers_per_s": round(workload.triggers / end_to_end, 1) if end_to_end > 0 else None,
        "db_size_mib": round(db_size / 1024 / 1024, 1),
        "rss_csv": str(rss_csv),
        "rss": {
            "warm_at_share": warm_share,
            "warm_mib": round(warm / 1024, 1) if warm else None,
            "end_mib": round(end / 1024, 1) if end else None,
            "max_after_warm_mib": round(max(after_warm) / 1024, 1) if after_warm else None,
            "growth_pct": round((end - warm) / warm * 100, 1) if warm and end else None,
            "max_growth_pct": (
                round((max(after_warm) - warm) / warm * 100, 1) if warm and after_warm else None
            ),
            "warm_pss_mib": round(warm_pss / 1024, 1) if warm_pss else None,
            "end_pss_mib": round(end_pss / 1024, 1) if end_pss else None,
            "pss_growth_pct": (
                round((end_pss - warm_pss) / warm_pss * 100, 1) if warm_pss and end_pss else None
            ),
            "samples": len(rows),
        },
    }
