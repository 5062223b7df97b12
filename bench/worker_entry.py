"""Bench-only Celery worker launcher: the product's (or the naive) app, plus statement counts.

    python -m bench.worker_entry ours|naive STATS_DIR [celery worker options...]

Each pool process counts its SQL statements, transactions and tasks (bench.dbcount) and
writes them to STATS_DIR/<pid>.json every FLUSH_SECONDS and when it shuts down, so the
counts survive a worker that has to be killed. The main process touches STATS_DIR/ready-<pid>
once it consumes, so the harness does not depend on a log level to see that.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

from celery import Celery, signals

from bench.dbcount import StatementCounter

FLUSH_SECONDS = 1.0


def load_app(kind: str) -> Celery:
    if kind == "ours":
        from worker.app import app

        return app
    if kind == "naive":
        from bench.naive import app as naive_app

        return naive_app
    raise SystemExit(f"unknown app {kind!r}: use ours or naive")


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    kind, stats_dir, *options = argv
    folder = Path(stats_dir)
    folder.mkdir(parents=True, exist_ok=True)
    app = load_app(kind)
    counter = StatementCounter().install()

    def flush_forever() -> None:
        last: dict[str, int] = {}
        while True:
            current = counter.snapshot()
            if current != last:
                counter.write(folder)
                last = current
            threading.Event().wait(FLUSH_SECONDS)

    def child_started(**_: Any) -> None:
        counter.reset()  # whatever the main process counted before the fork is not ours
        counter.write(folder)
        threading.Thread(target=flush_forever, name="bench-count-flush", daemon=True).start()

    def task_done(**_: Any) -> None:
        counter.add_task()

    def child_stopping(**_: Any) -> None:
        counter.write(folder)

    def ready(**_: Any) -> None:
        (folder / f"ready-{os.getpid()}").touch()

    # weak=False: these closures have no other reference and would be collected.
    signals.worker_process_init.connect(child_started, weak=False)
    signals.task_postrun.connect(task_done, weak=False)
    signals.worker_process_shutdown.connect(child_stopping, weak=False)
    signals.worker_ready.connect(ready, weak=False)
    app.worker_main(argv=["worker", *options])


if __name__ == "__main__":
    main(sys.argv[1:])
