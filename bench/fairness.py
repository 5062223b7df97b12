"""`bench.run fairness`: a quiet event set's latency, with and without a backlog.

Phase A (without backlog): on a fresh pipeline (ours), a quiet producer sends triggers for
one event set one at a time (`enqueue_trigger`) at --quiet-rate for --quiet-seconds.

Phase B (with backlog): on another fresh pipeline, --backlog triggers for a second event set
go in as fast as --producers threads can send them (`enqueue_triggers`, 1,000 per call).
Once --quiet-start of the backlog is stored, the same quiet producer starts; it stops when
the simulator has every backlog event. The with-backlog figures are those of the quiet
triggers accepted before the backlog's last event arrived (while some of it was pending);
triggers accepted after that are counted but not in them.

A trigger's latency runs from the return of the call that accepted it to the simulator's
receipt of its event.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from array import array
from bisect import bisect_right
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.producers import ProducerPlan, ProducerResult
    from bench.runs import Context
    from bench.workload import Workload

# run.py imports this module while parsing arguments, before it has checked the services;
# what imports the product (bench.runs, bench.workload, ...) is imported inside the functions.

HELP = "a quiet event set's latency with and without another set's backlog"

BACKLOG_SET = 0  # indexes into EVENT_SETS
QUIET_SET = 1
# Quiet leads are numbered far above any backlog's, so the two never share a lead id.
QUIET_FIRST_LEAD = 500_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # dest "triggers": run.py builds its workload and setup line from args.triggers.
    parser.add_argument(
        "--backlog",
        dest="triggers",
        metavar="N",
        type=int,
        default=100_000,
        help="triggers of the backlog event set (100000)",
    )
    parser.add_argument("--producers", type=int, default=2, help="backlog producer threads (2)")
    parser.add_argument(
        "--quiet-rate", type=float, default=10.0, help="quiet set's triggers/s (10)"
    )
    parser.add_argument(
        "--quiet-seconds",
        type=float,
        default=30.0,
        help="how long the quiet producer runs without a backlog (30)",
    )
    parser.add_argument(
        "--quiet-start",
        type=float,
        default=0.10,
        help="share of the backlog stored before the quiet producer starts (0.10)",
    )
    parser.add_argument(
        "--quiet-max-seconds",
        type=float,
        default=900.0,
        help="with the backlog, the quiet producer has triggers for this long; it stops when "
        "they run out even if the backlog is not drained (900)",
    )


def run(
    ctx: Context, args: argparse.Namespace, workload: Workload, result: dict[str, Any], *, log: Any
) -> tuple[str, bool]:
    """Adds its figures to `result`; returns the report text and whether every expected
    event arrived."""
    from bench import report
    from bench.modes import BATCH
    from bench.workload import EVENT_SETS

    if args.quiet_rate <= 0 or args.quiet_seconds <= 0 or not 0 <= args.quiet_start < 1:
        raise SystemExit("bench: --quiet-rate, --quiet-seconds > 0 and 0 <= --quiet-start < 1")
    quiet_name = EVENT_SETS[QUIET_SET].name
    backlog_name = EVENT_SETS[BACKLOG_SET].name
    result["config"].update(
        backlog=args.triggers,
        backlog_event_set=backlog_name,
        quiet_event_set=quiet_name,
        quiet_rate=args.quiet_rate,
        quiet_seconds=args.quiet_seconds,
        quiet_start=args.quiet_start,
        batch=BATCH,
    )
    log(
        f"fairness A, without backlog: {quiet_name} alone, one trigger at a time at "
        f"{args.quiet_rate:g}/s for {args.quiet_seconds:g} s ..."
    )
    alone = _without_backlog(ctx, args)
    log(
        f"  {alone['events_received']:,}/{alone['events_expected']:,} events, quiet p50 "
        f"{_ms(alone['latency_p50_ms'])}, p99 {_ms(alone['latency_p99_ms'])}"
    )
    log(
        f"fairness B, with backlog: {args.triggers:,} triggers for {backlog_name} in batches of "
        f"{BATCH:,} from {args.producers} producer(s); {quiet_name} at {args.quiet_rate:g}/s "
        f"from {args.quiet_start:.0%} stored until the backlog is drained ..."
    )
    backlogged, backlog, overlap = _with_backlog(ctx, args)
    log(
        f"  backlog drained in {backlog['drain_seconds'] or 0:,.1f} s "
        f"({backlog['triggers_per_s'] or 0:,.0f} triggers/s); quiet p50 "
        f"{_ms(backlogged['latency_p50_ms'])}, p99 {_ms(backlogged['latency_p99_ms'])} over "
        f"{overlap['quiet_during_backlog']:,} triggers during the backlog"
    )
    p99 = backlogged["latency_p99_ms"]
    result.update(
        runs={"without_backlog": alone, "with_backlog": backlogged},
        backlog=backlog,
        overlap=overlap,
        target_p99_ms=report.TARGETS["fairness_quiet_p99_ms"],
        target_met=p99 is not None and p99 <= report.TARGETS["fairness_quiet_p99_ms"],
    )
    complete = alone["complete"] and backlogged["complete"] and backlog["complete"]
    return report.render_fairness(result), complete


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def _quiet_workload(args: argparse.Namespace, seconds: float) -> Workload:
    from bench.workload import Workload

    return Workload(
        max(1, round(args.quiet_rate * seconds)),
        1,
        seed=args.seed,
        event_set=QUIET_SET,
        first_lead=QUIET_FIRST_LEAD,
    )


def _quiet_plan(args: argparse.Namespace, stop: threading.Event | None = None) -> ProducerPlan:
    from bench.producers import ProducerPlan

    return ProducerPlan(chunk=1, rate=args.quiet_rate, stop=stop)


def _without_backlog(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    from bench import producers
    from bench.runs import Pipeline

    quiet = _quiet_workload(args, args.quiet_seconds)
    with Pipeline(ctx, "ours", "fairness-alone") as pipeline:
        assert pipeline.sim is not None
        produced = producers.run(quiet, pipeline.sender(quiet, "single"), _quiet_plan(args))
        arrived = not produced.errors and pipeline.wait_until(
            lambda: pipeline.delivered_to(QUIET_SET), produced.sent - produced.rejected
        )
        dump = pipeline.sim.dump()
        set_ids = pipeline.set_ids
    sent = _sent(quiet, set_ids, produced.accepted_at, dump["received"])
    pairs = sent["pairs"]
    figures = _quiet_figures(produced, sent, pairs)
    unexpected = sum(1 for event_id in dump["received"] if event_id not in sent["expected"])
    duplicates = int(dump["stats"]["events_duplicate"])
    figures.update(
        events_unexpected=unexpected,
        events_duplicate=duplicates,
        complete=arrived and sent["missing"] == 0 and unexpected == 0 and duplicates == 0,
    )
    return figures


class _Stored:
    """Counts the backlog's stored triggers and says when the quiet producer may start."""

    def __init__(self, threshold: int) -> None:
        self.count = 0
        self.threshold = threshold
        self.count_when_reached: int | None = None
        self.reached = threading.Event()
        self.lock = threading.Lock()
        if threshold <= 0:
            self.count_when_reached = 0
            self.reached.set()

    def add(self, size: int) -> None:
        with self.lock:
            self.count += size
            if self.count >= self.threshold and not self.reached.is_set():
                self.count_when_reached = self.count
                self.reached.set()


def _with_backlog(
    ctx: Context, args: argparse.Namespace
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    from bench import metrics, producers
    from bench.modes import BATCH
    from bench.runs import Pipeline
    from bench.workload import EVENT_SETS, Workload

    backlog = Workload(args.triggers, args.producers, seed=args.seed, event_set=BACKLOG_SET)
    quiet = _quiet_workload(args, args.quiet_max_seconds)
    stored = _Stored(round(args.quiet_start * backlog.triggers))
    stop_quiet = threading.Event()
    quiet_results: list[producers.ProducerResult] = []
    quiet_errors: list[str] = []
    with Pipeline(ctx, "ours", "fairness-backlog") as pipeline:
        assert pipeline.sim is not None
        quiet_send = pipeline.sender(quiet, "single")

        def quiet_producer() -> None:
            stored.reached.wait()
            if stop_quiet.is_set():
                return
            try:
                plan = _quiet_plan(args, stop_quiet)
                quiet_results.append(producers.run(quiet, quiet_send, plan))
            except Exception as error:  # reported as a producer error, the run goes on
                quiet_errors.append(f"quiet producer: {type(error).__name__}: {error}")

        thread = threading.Thread(target=quiet_producer, name="bench-fairness-quiet", daemon=True)
        thread.start()
        try:
            produced = producers.run(
                backlog,
                pipeline.sender(backlog, "batch"),
                producers.ProducerPlan(chunk=BATCH, on_sent=stored.add),
            )
            stored.reached.set()  # also when the backlog could not be stored in full
            drained = not produced.errors and pipeline.wait_until(
                lambda: pipeline.delivered_to(BACKLOG_SET), produced.sent - produced.rejected
            )
            drain_seen_at = time.time()
        finally:
            stop_quiet.set()
            stored.reached.set()
            thread.join()
        never_sent = array("d", bytes(8 * quiet.triggers))
        quiet_produced = quiet_results[0] if quiet_results else producers.ProducerResult(never_sent)
        quiet_produced.errors.extend(quiet_errors)
        quiet_arrived = not quiet_produced.errors and pipeline.wait_until(
            lambda: pipeline.delivered_to(QUIET_SET), quiet_produced.sent - quiet_produced.rejected
        )
        dump = pipeline.sim.dump()
        set_ids = pipeline.set_ids
    received = dump["received"]
    backlog_sent = _sent(backlog, set_ids, produced.accepted_at, received)
    quiet_sent = _sent(quiet, set_ids, quiet_produced.accepted_at, received)
    stored_at = sorted(a for a, _ in backlog_sent["pairs"])
    acknowledged_at = sorted(r for _, r in backlog_sent["pairs"])
    drained_at = acknowledged_at[-1] if acknowledged_at else drain_seen_at
    during = [(a, r) for a, r in quiet_sent["pairs"] if a < drained_at]
    pending = [bisect_right(stored_at, a) - bisect_right(acknowledged_at, a) for a, _ in during]
    unexpected = sum(
        1
        for event_id in received
        if event_id not in backlog_sent["expected"] and event_id not in quiet_sent["expected"]
    )
    duplicates = int(dump["stats"]["events_duplicate"])
    quiet_figures = _quiet_figures(quiet_produced, quiet_sent, during)
    quiet_figures.update(
        events_unexpected=unexpected,
        events_duplicate=duplicates,
        complete=quiet_arrived
        and quiet_sent["missing"] == 0
        and unexpected == 0
        and duplicates == 0,
    )
    drain = drained_at - produced.started_at if acknowledged_at else None
    backlog_figures = {
        "event_set": EVENT_SETS[BACKLOG_SET].name,
        "triggers": backlog.triggers,
        "producers": backlog.producers,
        "enqueue_calls": produced.calls,
        "rejected": produced.rejected,
        "producer_errors": produced.errors,
        "ingest_seconds": round(produced.seconds, 3),
        "ingest_triggers_per_s": round(produced.sent / produced.seconds, 1),
        "drain_seconds": round(drain, 3) if drain is not None else None,
        "triggers_per_s": round(backlog.triggers / drain, 1) if drain else None,
        "events_expected": len(backlog_sent["expected"]),
        "events_received": len(backlog_sent["pairs"]),
        "events_missing": backlog_sent["missing"],
        **metrics.latency_figures([r - a for a, r in backlog_sent["pairs"]]),
        "complete": drained
        and produced.sent == backlog.triggers
        and produced.rejected == 0
        and backlog_sent["missing"] == 0,
    }
    first_quiet = min((a for a, _ in quiet_sent["pairs"]), default=None)
    overlap = {
        "quiet_start_threshold": stored.threshold,
        "quiet_started_at_stored": stored.count_when_reached,
        "quiet_started_after_seconds": (
            round(first_quiet - produced.started_at, 3) if first_quiet is not None else None
        ),
        "overlap_seconds": (
            round(max(0.0, drained_at - first_quiet), 3) if first_quiet is not None else None
        ),
        "quiet_during_backlog": len(during),
        "quiet_after_drain": len(quiet_sent["pairs"]) - len(during),
        "backlog_pending_at_quiet_accept_min": min(pending, default=None),
        "backlog_pending_at_quiet_accept_median": (
            round(statistics.median(pending)) if pending else None
        ),
        "backlog_pending_at_quiet_accept_max": max(pending, default=None),
    }
    return quiet_figures, backlog_figures, overlap


def _sent(
    workload: Workload, set_ids: list[int], accepted_at: array[float], received: dict[str, float]
) -> dict[str, Any]:
    """The triggers a producer sent (accepted_at > 0): their expected event ids, (accepted,
    acknowledged) for those whose event arrived, and how many did not."""
    expected: set[str] = set()
    pairs: list[tuple[float, float]] = []
    missing = 0
    for ref in workload.all():
        accepted = accepted_at[ref.index]
        if accepted <= 0:
            continue
        event_id = workload.event_id(ref, set_ids)
        expected.add(event_id)
        at = received.get(event_id)
        if at is None:
            missing += 1
        else:
            pairs.append((accepted, at))
    return {"expected": expected, "pairs": pairs, "missing": missing}


def _quiet_figures(
    produced: ProducerResult, sent: dict[str, Any], measured: list[tuple[float, float]]
) -> dict[str, Any]:
    from bench import metrics
    from bench.workload import EVENT_SETS

    return {
        "event_set": EVENT_SETS[QUIET_SET].name,
        "sent": produced.sent,
        "rejected": produced.rejected,
        "producer_errors": produced.errors,
        "achieved_rate": round(produced.sent / produced.seconds, 2) if produced.sent else None,
        "events_expected": len(sent["expected"]),
        "events_received": len(sent["pairs"]),
        "events_missing": sent["missing"],
        "latency_measured": len(measured),
        **metrics.latency_figures([r - a for a, r in measured]),
    }
