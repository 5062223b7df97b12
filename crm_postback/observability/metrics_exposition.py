"""The Prometheus text exposition served by the web app's `/metrics`: this process's counters
(or, in multiprocess mode, every process's), then the outbox gauges read from the database."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from crm_postback.observability.database_gauges import OutboxCollector, SeriesGauges
from crm_postback.observability.metric_definitions import MULTIPROC_ENV, metrics

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


def _counter_registry() -> CollectorRegistry:
    """This process's counters, or with multiprocess mode on, every process's files."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)
        return registry
    return metrics().registry


def render(
    include_outbox: bool = True,
    now: datetime | None = None,
    per_event_set: Sequence[SeriesGauges] = (),
) -> tuple[bytes, str]:
    """The text exposition: counters and histograms, then the outbox gauges (and
    `per_event_set`'s, read with them)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    metrics()  # the families exist (at zero) before anything was recorded
    body = generate_latest(_counter_registry())
    if include_outbox:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(OutboxCollector(now, per_event_set))
        body += generate_latest(registry)
    return body, CONTENT_TYPE_LATEST
