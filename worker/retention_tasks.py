"""The daily retention purge (scheduled by beat; see `beat_schedule` in worker/app.py)."""

from __future__ import annotations

import logging
import time
from typing import Any

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
from models import utcnow
from models.db import session_scope, truncate_sqlite_log
from models.workspace_scope import ALL_WORKSPACES
from worker.app import app

log = logging.getLogger(__name__)

# Well inside the task's time limit (120 s); what is left is continued by a new task.
RUN_SECONDS = 60.0


@app.task(name="postback.purge_expired_data", acks_late=True, ignore_result=True)
def purge_expired_data(run_seconds: float = RUN_SECONDS) -> dict[str, Any]:
    """Clears match keys and event bodies past RETENTION_DAYS, workspace by workspace, one
    short transaction per batch of 1,000 in a session scoped to that workspace, so delivery
    is never held up by a long lock and one workspace's purge never touches another's rows."""
    settings = get_settings()
    cutoff = retention_cutoff(settings, utcnow())
    deadline = time.monotonic() + run_seconds
    with session_scope(workspace=ALL_WORKSPACES) as session:
        workspaces = workspace_ids(session)

    def out_of_time() -> bool:
        return time.monotonic() >= deadline

    leads = payloads = 0
    more = False  # a batch came back full when time ran out
    for workspace in workspaces:
        if out_of_time():
            more = True
            break

        def run_batch(
            after_lead_id: int, after_postback_id: int, workspace: int = workspace
        ) -> PurgeBatch:
            with session_scope(workspace=workspace) as session:
                batch = purge_batch(
                    session,
                    cutoff,
                    after_lead_id=after_lead_id,
                    after_postback_id=after_postback_id,
                    limit=PURGE_BATCH,
                )
                session.commit()
            record_purge(batch.leads, batch.payloads, workspace_id=workspace)
            return batch

        full = True  # until a batch of this workspace comes back not full
        for batch in purge_in_batches(run_batch, limit=PURGE_BATCH, stop=out_of_time):
            leads += batch.leads
            payloads += batch.payloads
            full = batch.full(PURGE_BATCH)
        if full:
            more = True  # stopped by the deadline inside this workspace
            break
    if more:
        purge_expired_data.delay()  # a large backlog: carry on in a fresh task
    elif (leads or payloads) and truncate_sqlite_log() is False:
        log.warning(
            "retention: SQLite's write-ahead log still holds old copies of the cleared rows "
            "(another connection kept it busy); the next purge empties it"
        )
    if leads or payloads or more:
        log.info(
            "retention: cleared the match keys of %d lead(s) and %d stored event bod(ies) "
            "older than %s%s",
            leads,
            payloads,
            cutoff.date().isoformat(),
            "; more to do, continuing in a new task" if more else "",
        )
    return {"leads": leads, "payloads": payloads, "more": more}
