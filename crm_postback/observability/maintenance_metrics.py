"""What the beat sweeper and the retention purge record."""

from __future__ import annotations

from crm_postback.observability import metric_definitions
from crm_postback.observability.metric_definitions import never_raises


@never_raises("the sweep")
def record_sweep(stale_triggers: int, tasks_queued: int) -> None:
    m = metric_definitions.metrics()
    if stale_triggers:
        m.sweeper_stale.inc(stale_triggers)
    if tasks_queued:
        m.sweeper_tasks.inc(tasks_queued)


@never_raises("the retention purge")
def record_purge(leads: int, payloads: int) -> None:
    m = metric_definitions.metrics()
    if leads:
        m.retention.labels("lead").inc(leads)
    if payloads:
        m.retention.labels("payload").inc(payloads)
