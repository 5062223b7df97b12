"""The retention purge, run now (beat runs the same batches daily, in worker.retention_tasks).

Match keys and event bodies past RETENTION_DAYS are cleared in batches; each batch is its own
transaction with its own audit entry, so no lock is held long and what was cleared before an
interruption stays cleared and recorded.

The purge is the instance's (instance administrators, the CLI): it runs workspace by
workspace, each batch a unit of work scoped to one workspace, whose audit trail gets the
entry of what was cleared in it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from crm_postback.commands.unit_of_work import Actor, unit_of_work
from crm_postback.core.settings import get_settings
from crm_postback.observability.maintenance_metrics import record_purge
from crm_postback.operations.retention import (
    PURGE_BATCH,
    PurgeBatch,
    purge_batch,
    purge_in_batches,
    retention_cutoff,
    workspace_ids,
)
from models import Role, utcnow
from models.db import session_scope, truncate_sqlite_log
from models.workspace_scope import ALL_WORKSPACES


@dataclass(frozen=True)
class PurgeResult:
    cutoff: datetime
    retention_days: int
    leads: int  # leads whose match keys were cleared
    payloads: int  # postbacks whose stored event body was cleared
    # SQLite: the write-ahead log, with the pages the purge replaced, was emptied (False:
    # another connection kept it busy; None: PostgreSQL, or nothing cleared).
    log_emptied: bool | None = None


def purge(
    actor: Actor, *, now: datetime | None = None, batch_size: int = PURGE_BATCH
) -> PurgeResult:
    """Clears everything past the cutoff (RETENTION_DAYS before `now`), batch by batch, in
    every workspace."""
    actor.require_instance_admin()
    settings = get_settings()
    cutoff = retention_cutoff(settings, now or utcnow())
    with session_scope(workspace=ALL_WORKSPACES) as session:
        workspaces = workspace_ids(session)
    leads = payloads = 0
    for workspace in workspaces:
        cleared = _purge_workspace(replace(actor, workspace_id=workspace), cutoff, batch_size)
        leads, payloads = leads + cleared[0], payloads + cleared[1]
    emptied = truncate_sqlite_log() if leads or payloads else None
    return PurgeResult(cutoff, settings.retention_days, leads, payloads, emptied)


def _purge_workspace(actor: Actor, cutoff: datetime, batch_size: int) -> tuple[int, int]:
    settings = get_settings()

    def run_batch(after_lead_id: int, after_postback_id: int) -> PurgeBatch:
        with unit_of_work(actor, requires=Role.OWNER) as uow:
            batch = purge_batch(
                uow.session,
                cutoff,
                after_lead_id=after_lead_id,
                after_postback_id=after_postback_id,
                limit=batch_size,
            )
            if batch.leads or batch.payloads:
                uow.audit(
                    "retention.purge",
                    entity_type="retention",
                    after={
                        "cutoff": cutoff.isoformat(),
                        "retention_days": settings.retention_days,
                        "leads_cleared": batch.leads,
                        "payloads_cleared": batch.payloads,
                    },
                )
        record_purge(batch.leads, batch.payloads, workspace_id=actor.workspace_id)
        return batch

    leads = payloads = 0
    for batch in purge_in_batches(run_batch, limit=batch_size):
        leads, payloads = leads + batch.leads, payloads + batch.payloads
    return leads, payloads
