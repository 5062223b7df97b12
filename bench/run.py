"""`python -m bench.run MODE [options]`: crm-postback against the naive baseline, by mode.

  compare  the same N triggers through (1) ours with batched ingest, (2) ours with one-at-a-time
           enqueue and (3) the naive one-postback-per-trigger design, each on a fresh database,
           queue, simulator and workers; a side-by-side table with ours/naive ratios
  steady   a paced producer at --rate triggers/s for --seconds; latency percentiles
  long     --triggers (1,000,000) in batches; worker RSS over time to a CSV, growth after warm-up
  nodes    ours batched on 1 worker node, then on 2 (distinct names and processes, same broker
           and database): throughput ratio, no event sent twice, CPU per component of both
  fairness a quiet event set's latency (accepted -> acknowledged) with and without a backlog
           on another event set (bench/fairness.py)
  pacing   the simulator told a request limit per access token: throttled requests without
           and with the product's pacing (bench/pacing.py)

Needs PostgreSQL (BENCH_POSTGRES_URL, default postgres@127.0.0.1:5432) and Redis
(BENCH_REDIS_URL, default 127.0.0.1:6379/0); uses a unique database and queue per run and
deletes both. Exit status: 0 every expected event arrived, 1 some did not, 2 cannot run.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import FrameType
from typing import Any

from bench import machine, report, services
from bench.dbcount import StatementCounter

EXIT_INCOMPLETE = 1
EXIT_CANNOT_RUN = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workers", type=int, default=1, help="worker main processes (1)")
    common.add_argument("--concurrency", type=int, default=2, help="pool size of each (2)")
    common.add_argument("--seed", type=int, default=1, help="workload seed (1)")
    common.add_argument("--json", type=Path, help="also write the figures to this file")
    common.add_argument(
        "--sim",
        choices=("process", "thread"),
        default="process",
        help="run the simulator in its own process (default) or a thread of the harness",
    )
    common.add_argument("--pg-admin-url", default=services.DEFAULT_PG_ADMIN_URL)
    common.add_argument("--redis-url", default=services.DEFAULT_REDIS_URL)
    common.add_argument(
        "--stall-seconds",
        type=float,
        default=120.0,
        help="give up when no event arrives for this long (120)",
    )
    common.add_argument("--keep-workdir", action="store_true", help="keep logs and dumps")
    modes = parser.add_subparsers(dest="mode", required=True)

    compare = modes.add_parser("compare", parents=[common], help="ours vs naive, same triggers")
    compare.add_argument("--triggers", type=int, default=20_000)
    compare.add_argument("--producers", type=int, default=4, help="producer threads (4)")
    compare.add_argument(
        "--profile",
        type=Path,
        help="py-spy the workers of both ours runs; files PATH-stem.ours_batch.txt, ...",
    )

    steady = modes.add_parser("steady", parents=[common], help="paced producer, latency")
    steady.add_argument("--rate", type=float, default=1_000.0, help="triggers/s (1000)")
    steady.add_argument("--seconds", type=float, default=60.0)
    steady.add_argument(
        "--ingest",
        choices=("batch", "single"),
        default="batch",
        help="batch: every 10 ms one enqueue_triggers call with what is due (default); "
        "single: enqueue_trigger calls from --producers threads",
    )
    steady.add_argument("--producers", type=int, help="1 for batch, 4 for single")
    steady.add_argument("--design", choices=("ours", "naive"), default="ours")

    nodes = modes.add_parser("nodes", parents=[common], help="1 vs 2 worker nodes, ours batched")
    nodes.add_argument("--triggers", type=int, default=20_000)
    nodes.add_argument("--producers", type=int, default=4, help="producer threads (4)")

    long = modes.add_parser("long", parents=[common], help="a million triggers, RSS over time")
    long.add_argument("--triggers", type=int, default=1_000_000)
    long.add_argument("--producers", type=int, default=2)
    long.add_argument("--rss-csv", type=Path, default=Path("bench-long-rss.csv"))
    long.add_argument("--rss-interval", type=float, default=2.0, help="seconds (2)")
    long.add_argument(
        "--max-backlog",
        type=int,
        default=20_000,
        help="producers wait while this many triggers are enqueued but not delivered",
    )
    long.add_argument("--warm-share", type=float, default=0.10, help="warm-up point (0.10)")
    from bench import fairness, pacing

    fairness.add_arguments(modes.add_parser("fairness", parents=[common], help=fairness.HELP))
    pacing.add_arguments(modes.add_parser("pacing", parents=[common], help=pacing.HELP))
    args = parser.parse_args(argv)
    if args.mode == "steady":
        if args.producers is None:
            args.producers = 1 if args.ingest == "batch" else 4
        args.triggers = max(1, round(args.rate * args.seconds))
    if args.triggers < 1 or args.producers < 1 or args.workers < 1 or args.concurrency < 1:
        parser.error("--triggers, --producers, --workers and --concurrency must be >= 1")
    return args


def log(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    # SIGTERM behaves like Ctrl-C: the pipelines' cleanup stops workers and drops databases.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        versions = services.check_services(args.pg_admin_url, args.redis_url)
    except services.ServiceUnavailable as error:
        sys.stderr.write(f"bench: cannot run: {error}\n")
        return EXIT_CANNOT_RUN
    # Imported late: the product reads its settings at import, after the checks above.
    from bench import modes
    from bench.runs import Context
    from bench.workload import Workload

    about = machine.describe(versions)
    log(machine.render(about))
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    ctx = Context(
        run_id=uuid.uuid4().hex[:8],
        workdir=workdir,
        pg_admin_url=args.pg_admin_url,
        redis_url=args.redis_url,
        workers=args.workers,
        concurrency=args.concurrency,
        sim_kind=args.sim,
        stall_seconds=args.stall_seconds,
        counter=StatementCounter().install(),
    )
    workload = Workload(args.triggers, args.producers, seed=args.seed)
    config = {
        "mode": args.mode,
        "triggers": workload.triggers,
        "leads": workload.leads,
        "stages": workload.stage_counts(),
        "event_sets": 3,
        "producers": args.producers,
        "workers": "1, then 2" if args.mode == "nodes" else args.workers,
        "concurrency": args.concurrency,
        "simulator": args.sim,
        "seed": args.seed,
    }
    log(
        f"setup: {config['workers']} worker(s) x prefork concurrency {args.concurrency}, "
        f"{args.producers} producer thread(s), simulator in a {args.sim}, "
        f"{workload.triggers:,} triggers ({workload.leads:,} leads: {config['stages']})"
    )
    result: dict[str, Any] = {"machine": about, "config": config}
    started = time.monotonic()
    try:
        if args.mode == "compare":
            result.update(modes.compare(ctx, workload, profile=args.profile, log=log))
            text = report.render_compare(result)
            complete = all(run["complete"] for run in result["runs"].values())
        elif args.mode == "nodes":
            result.update(modes.nodes(ctx, workload, log=log))
            text = report.render_nodes(result)
            complete = (
                all(run["complete"] for run in result["runs"].values())
                and result["summary"]["no_double_sends"]
            )
        elif args.mode in ("fairness", "pacing"):
            from bench import fairness, pacing

            special = fairness if args.mode == "fairness" else pacing
            text, complete = special.run(ctx, args, workload, result, log=log)
        elif args.mode == "steady":
            config.update(rate=args.rate, seconds=args.seconds, ingest=args.ingest)
            result.update(
                modes.steady(ctx, workload, rate=args.rate, design=args.design, ingest=args.ingest)
            )
            result.update(rate=args.rate, seconds=args.seconds)
            text = report.render_steady(result)
            complete = result["run"]["complete"]
        else:
            result.update(
                modes.long(
                    ctx,
                    workload,
                    rss_csv=args.rss_csv,
                    rss_interval=args.rss_interval,
                    max_backlog=args.max_backlog,
                    warm_share=args.warm_share,
                    log=log,
                )
            )
            text = report.render_long(result)
            complete = result["complete"]
    except KeyboardInterrupt:
        sys.stderr.write("bench: interrupted; workers stopped, databases dropped\n")
        return 130
    finally:
        if args.keep_workdir:
            log(f"workdir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    result["complete"] = complete
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    log("")
    log(text)
    if args.json is not None:
        report.write_json(args.json, result)
        log(f"\nfigures written to {args.json}")
    return 0 if complete else EXIT_INCOMPLETE


if __name__ == "__main__":
    sys.exit(main())
