"""What the beat sweeper and the retention purge record."""

from __future__ import annotations

from crm_postback.observability import metric_definitions
from crm_postback.observability.metric_definitions import never_raises
from crm_postback.observability.workspace_labels import workspace_label


@never_raises("the sweep")
def record_sweep(stale_triggers: int, tasks_queued: int) -> None:
    m = metric_definitions.metrics()
    if stale_triggers:
        m.sweeper_stale.inc(stale_triggers)
    if tasks_queued:
        m.sweeper_tasks.inc(tasks_queued)


@never_raises("the retention purge")
def record_purge(leads: int, payloads: int, *, workspace_id: int) -> None:
    """One batch of the purge, which runs workspace by workspace."""
    if not (leads or payloads):
        return
    m = metric_definitions.metrics()
    workspace = workspace_label(workspace_id)
    if leads:
        m.retention.labels(workspace, "lead").inc(leads)
    if payloads:
        m.retention.labels(workspace, "payload").inc(payloads)
