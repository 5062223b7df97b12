"""The worker's metrics server: its main process serves the sum of every pool process's
counters on METRICS_HOST:METRICS_PORT.

Workers run Celery's prefork pool: tasks run in child processes that come and go. They use
prometheus_client's multiprocess mode: the worker's main process creates an empty directory,
sets PROMETHEUS_MULTIPROC_DIR before any metric exists, and serves the sum of every pool
process's files. A child that is replaced leaves its file behind, so its counts are not lost.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from crm_postback.core.settings import Settings
from crm_postback.observability.metric_definitions import MULTIPROC_ENV, reset_metrics

log = logging.getLogger(__name__)


class WorkerMetrics:
    """What `start_worker_metrics` set up, so shutdown can undo it."""

    def __init__(self, directory: Path, owned: bool, server: Any) -> None:
        self.directory = directory
        self.owned = owned
        self.server = server

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.owned:
            shutil.rmtree(self.directory, ignore_errors=True)


def start_worker_metrics(settings: Settings) -> WorkerMetrics | None:
    """In a worker's main process, before the pool forks: multiprocess mode and the server.

    Uses PROMETHEUS_MULTIPROC_DIR when set (its old *.db files are removed: counters restart
    with the worker, as Prometheus expects), else a new temporary directory.
    """
    if not settings.metrics_port:
        return None
    from prometheus_client import CollectorRegistry, start_http_server, values
    from prometheus_client.multiprocess import MultiProcessCollector

    given = os.environ.get(MULTIPROC_ENV)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
    else:
        directory = Path(tempfile.mkdtemp(prefix="postback-metrics-"))
        os.environ[MULTIPROC_ENV] = str(directory)
    # prometheus_client picks the value class when it is imported; whatever imported it
    # before this point, metrics created from now on write to the shared directory.
    values.ValueClass = values.get_value_class()
    reset_metrics()
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    try:
        server, _ = start_http_server(
            settings.metrics_port, addr=settings.metrics_host, registry=registry
        )
    except OSError as error:
        log.warning(
            "metrics: cannot listen on %s:%s (%s); this worker's metrics are not served "
            "(set METRICS_PORT to a free port, or 0)",
            settings.metrics_host,
            settings.metrics_port,
            error.strerror or type(error).__name__,
        )
        return WorkerMetrics(directory, owned=not given, server=None)
    log.info(
        "metrics: serving the pool's metrics on http://%s:%s/metrics",
        settings.metrics_host,
        settings.metrics_port,
    )
    return WorkerMetrics(directory, owned=not given, server=server)


def mark_process_dead(pid: int) -> None:
    """A pool process exited: its live gauges (none today) stop counting; counters stay."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, directory)
