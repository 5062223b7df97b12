"""`python -m chaos.run --mode bounded|full [--triggers N] [--seed S] [--json PATH]`

Pushes N triggers through 2 celery workers + 1 beat + a private Redis + a private PostgreSQL
cluster behind a private PgBouncer (or `--broker-url amqp://...`: a RabbitMQ queue of the run's
own) to the TikTok simulator while SIGKILLing workers, restarting Redis, killing PostgreSQL
connections, SIGKILLing and fast-restarting the PostgreSQL server, SIGKILLing PgBouncer and
making the simulator fail (20 % 5xx, 10 % 40100, some requests hanging past the client
timeout); then checks that every expected event arrived, nothing was lost, duplicates only
repeat an event_id, no raw email/phone was sent or stored, and the outbox reconciles.

Exit status: 0 pass, 1 fail, 2 the run could not start (no PostgreSQL server binaries, the
--pg-admin-url server or the --broker-url RabbitMQ unreachable, no redis-server, or
--pgbouncer without a pgbouncer binary).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

from chaos.config import (
    EXTERNAL_PG_EXAMPLE_URL,
    MIN_FULL_TRIGGERS,
    MODES,
    RABBITMQ_EXAMPLE_URL,
    RunConfig,
)


def parse_args(argv: list[str] | None = None) -> RunConfig:
    parser = argparse.ArgumentParser(prog="python -m chaos.run", description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=sorted(MODES), default="bounded")
    parser.add_argument("--triggers", type=int, help="how many triggers (default per mode)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--pg-admin-url",
        default=None,
        help="use this external PostgreSQL server (a database to connect to for CREATE/DROP "
        f"DATABASE, e.g. {EXTERNAL_PG_EXAMPLE_URL}) instead of a private cluster; the server "
        "is never restarted, so the crash and fast-restart faults are left out",
    )
    parser.add_argument(
        "--broker-url",
        default=None,
        help=f"amqp:// (e.g. {RABBITMQ_EXAMPLE_URL}): run on that RabbitMQ with a queue of "
        "the run's own, deleted at the end; the server is shared and never restarted, so the "
        "broker-restart fault is left out. Default (or a redis:// URL): a private redis-server",
    )
    parser.add_argument(
        "--pgbouncer",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a private PgBouncer (transaction mode) in front of the private cluster, and its "
        "SIGKILL + restart among the faults; default: on when pgbouncer is installed",
    )
    parser.add_argument(
        "--keep-tmp", action="store_true", help="keep the run's temp dir (logs, received events)"
    )
    args = parser.parse_args(argv)
    if args.triggers is not None and args.triggers < 1:
        parser.error("--triggers must be at least 1")
    if args.broker_url and not args.broker_url.startswith(
        ("redis://", "amqp://", "amqps://", "pyamqp://")
    ):
        parser.error("--broker-url must be an amqp:// or redis:// URL")
    if args.mode == "full" and args.triggers is not None and args.triggers < MIN_FULL_TRIGGERS:
        parser.error(f"full mode pushes at least {MIN_FULL_TRIGGERS} triggers")
    return RunConfig.for_mode(
        args.mode,
        triggers=args.triggers,
        seed=args.seed,
        pg_admin_url=args.pg_admin_url,
        broker_url=args.broker_url,
        pgbouncer=args.pgbouncer,
        json_path=args.json,
        keep_tmp=args.keep_tmp,
    )


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    # SIGTERM behaves like Ctrl-C: the harness's finally blocks kill, drop and delete.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    from chaos.harness import EXIT_CANNOT_RUN, Harness
    from chaos.services import ServiceUnavailable

    try:
        return Harness(config).run()
    except ServiceUnavailable as error:
        sys.stderr.write(f"chaos: cannot run: {error}\n")
        return EXIT_CANNOT_RUN
    except KeyboardInterrupt:
        sys.stderr.write("chaos: interrupted; processes stopped, database dropped\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
