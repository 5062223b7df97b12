"""`bench.run pacing`: throttled requests without and with pacing toward a limited simulator.

The simulator is told a request limit per access token (--limit, e.g. 5/second, moving
window). The same workload runs twice, each on a fresh pipeline (database, queue, simulator,
workers): once without pacing, once with TIKTOK_REQUEST_RATE (--pacing-rate, by default the
limit itself), counted in the run's Redis so every worker process shares each token's
budget.

To make requests rather than events the scarce thing, the triggers go in one at a time
(`enqueue_trigger`) at --rate triggers/s over the three event sets (one token each), and the
workers do not linger (BATCH_LINGER_MS=0): nearly every trigger is a request of its own. Both
runs use a short retry ladder and throttle pause (see RUN_ENV), so the run without pacing
finishes in minutes; the figures are printed with them.

Reported for each run: TikTok's throttle answers (40100) the simulator gave, the requests it
received, the events delivered, and the time from the first trigger to the last event.
Complete: every expected event arrived, in both runs.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.runs import Context, Pipeline
    from bench.workload import Workload

# run.py imports this module while parsing arguments, before it has checked the services;
# what imports the product (bench.runs, bench.workload, ...) is imported inside the functions.

HELP = "throttled requests without and with pacing toward a limited simulator"

# Both runs: a throttled request comes back within seconds, not after the product's
# default minutes-long rungs, so the unpaced run ends in a bench-sized time.
RUN_ENV = {
    "BATCH_LINGER_MS": "0",
    "RETRY_SCHEDULE_SECONDS": "[2,5,10,20,40,80,160,320]",
    "THROTTLE_PAUSE_SECONDS": "2",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--triggers", type=int, default=600, help="triggers in each run (600)")
    parser.add_argument("--producers", type=int, default=1, help="producer threads (1)")
    parser.add_argument(
        "--rate", type=float, default=45.0, help="triggers/s over all producers (45)"
    )
    parser.add_argument(
        "--limit",
        default="5/second",
        help="the simulator's request limit per access token, limits notation (5/second)",
    )
    parser.add_argument(
        "--strategy",
        choices=("moving", "fixed"),
        default="moving",
        help="the simulator's window (moving)",
    )
    parser.add_argument(
        "--pacing-rate", help="TIKTOK_REQUEST_RATE of the paced run (default: --limit)"
    )


def _paced_pipeline(ctx: Context, label: str, extra_env: dict[str, str]) -> Pipeline:
    from bench.runs import Pipeline

    class PacedPipeline(Pipeline):
        """A pipeline of ours whose workers get `extra_env` on top of the run's settings."""

        def _configure_ours(self, sim_url: str) -> dict[str, str]:
            import os

            values = super()._configure_ours(sim_url)
            os.environ.update(extra_env)
            for name in ("TIKTOK_REQUEST_RATE", "TIKTOK_PACING_STORAGE_URL"):
                if name not in extra_env:
                    os.environ.pop(name, None)
            return {**values, **extra_env}

    return PacedPipeline(ctx, "ours", label)


def _one_run(
    ctx: Context,
    workload: Workload,
    args: argparse.Namespace,
    label: str,
    extra_env: dict[str, str],
    *,
    log: Any,
) -> dict[str, Any]:
    from bench import producers
    from bench.runs import delivery_check
    from crm_postback.simulator import SimulatorControl

    with _paced_pipeline(ctx, label, extra_env) as pipeline:
        assert pipeline.sim is not None
        control = SimulatorControl(pipeline.sim.url)
        control.set_rate_limit(args.limit, strategy=args.strategy)
        control.close()
        plan = producers.ProducerPlan(chunk=1, rate=args.rate)
        produced = producers.run(workload, pipeline.sender(workload, "single"), plan)
        complete = not produced.errors and pipeline.wait_delivered(workload.triggers)
        waited_at = time.time()
        stats = pipeline.sim.stats()
        deliveries = delivery_check(pipeline.db.libpq_url)
    by_code = stats.get("requests_by_code", {})
    last = float(stats.get("last_received_at") or 0.0)
    result = {
        "label": label,
        "env": extra_env,
        "complete": complete and int(stats["events_unique"]) >= workload.triggers,
        "triggers": workload.triggers,
        "producer_errors": produced.errors,
        "ingest_seconds": round(produced.seconds, 1),
        "throttled": int(by_code.get("40100", 0)),
        "rate_limited": int(stats.get("rate_limited", 0)),
        "requests": int(stats["requests_total"]),
        "events_delivered": int(stats["events_unique"]),
        "events_duplicate": int(stats["events_duplicate"]),
        "seconds_to_deliver_all": round(last - produced.started_at, 1) if last else None,
        "waited_after_ingest_seconds": round(waited_at - produced.finished_at, 1),
        "deliveries": deliveries,
    }
    log(
        f"  {result['throttled']:,} throttled of {result['requests']:,} requests, "
        f"{result['events_delivered']:,}/{workload.triggers:,} events in "
        f"{result['seconds_to_deliver_all']} s"
    )
    return result


def run(
    ctx: Context, args: argparse.Namespace, workload: Workload, result: dict[str, Any], *, log: Any
) -> tuple[str, bool]:
    """Adds its figures to `result`; returns the report text and whether every expected
    event arrived."""
    pacing_rate = args.pacing_rate or args.limit
    config = result.setdefault("config", {})
    config.update(
        limit=args.limit,
        strategy=args.strategy,
        pacing_rate=pacing_rate,
        rate=args.rate,
        run_env=RUN_ENV,
    )
    runs: dict[str, dict[str, Any]] = {}
    plans = [
        ("unpaced", {**RUN_ENV}),
        (
            "paced",
            {
                **RUN_ENV,
                "TIKTOK_REQUEST_RATE": pacing_rate,
                "TIKTOK_PACING_STORAGE_URL": ctx.redis_url,
            },
        ),
    ]
    for label, env in plans:
        log(
            f"run {label}: {workload.triggers:,} triggers at {args.rate:g}/s, simulator limit "
            f"{args.limit} per token ({args.strategy})"
            + (f", TIKTOK_REQUEST_RATE={pacing_rate}" if "TIKTOK_REQUEST_RATE" in env else "")
            + " ..."
        )
        runs[label] = _one_run(ctx, workload, args, f"pacing-{label}", env, log=log)
    result["runs"] = runs
    complete = all(run["complete"] for run in runs.values())
    return render(result), complete


def render(result: dict[str, Any]) -> str:
    config = result["config"]
    runs = result["runs"]
    rows = [
        ("throttled answers (40100)", "throttled", "{:,}"),
        ("requests received", "requests", "{:,}"),
        ("events delivered", "events_delivered", "{:,}"),
        ("duplicates (same event_id again)", "events_duplicate", "{:,}"),
        ("seconds from first trigger to last event", "seconds_to_deliver_all", "{}"),
    ]
    width = max(len(label) for label, _key, _fmt in rows)
    lines = [
        f"pacing: {config['triggers']:,} triggers one at a time at {config['rate']:g}/s over "
        f"{config['event_sets']} event sets (one access token each); simulator limit "
        f"{config['limit']} per token ({config['strategy']} window); paced run "
        f"TIKTOK_REQUEST_RATE={config['pacing_rate']} shared through Redis",
        "both runs: " + ", ".join(f"{k}={v}" for k, v in config["run_env"].items()),
        "",
        f"{'':{width}}  {'without pacing':>16}  {'with pacing':>16}",
    ]
    for label, key, fmt in rows:
        cells = [runs[name][key] for name in ("unpaced", "paced")]
        text = [fmt.format(cell) if cell is not None else "-" for cell in cells]
        lines.append(f"{label:{width}}  {text[0]:>16}  {text[1]:>16}")
    missing = [name for name, run in runs.items() if not run["complete"]]
    lines.append("")
    lines.append(
        "complete: every expected event arrived in both runs"
        if not missing
        else f"INCOMPLETE: events missing in {', '.join(missing)}"
    )
    return "\n".join(lines)
