"""Erasing one lead on a data subject's request: keys, attributes, event bodies.

The audit entry holds counts and the names of the keys that were stored, never a value. It
names the lead by the routing system's lead id, as before: that id is what the request to
erase refers to, and the lead's triggers and postbacks keep it after the erasure (with their
statuses and codes), so the entry tells nobody more than those rows already do.

A lead is named per workspace: the erasure runs in the actor's workspace (owners), and
another workspace's lead of the same id is neither touched nor named.
"""

from __future__ import annotations

from dataclasses import dataclass

from crm_postback.commands.unit_of_work import Actor, unit_of_work
from crm_postback.operations import retention
from crm_postback.operations.retention import ErasedLead
from models import Role
from models.db import truncate_sqlite_log


@dataclass(frozen=True)
class EraseLead:
    lead_id: str  # the routing system's id of the lead


def erase_lead(request: EraseLead, actor: Actor) -> ErasedLead:
    """Deletes the lead row (every hash) of the actor's workspace, clears its triggers'
    attributes and its postbacks' event bodies, stops what of it still waits to be sent.
    Nothing stored: nothing audited."""
    with unit_of_work(actor, requires=Role.OWNER) as uow:
        result = retention.erase_lead(uow.session, request.lead_id)
        if result.anything:
            uow.audit(
                "lead.erase",
                entity_type="lead",
                after=retention.describe_counts(result),
                note=f"lead {request.lead_id!r} erased on request; no match key or event body kept",
            )
    if result.anything:
        # The committed erasure is in the database file; the pages it replaced are still in
        # SQLite's write-ahead log until it is emptied.
        result.log_emptied = truncate_sqlite_log()
    return result
