"""Keeping personal data no longer than needed (no commit here; callers commit).

Two operations:

Both run in a session scoped to one workspace and touch only that workspace's rows: the purge
is run workspace by workspace (`workspace_ids`), each batch in its own transaction.

* **Retention purge** (daily, from beat): RETENTION_DAYS after a lead was last active (its keys
  changed or a trigger for it arrived), its match keys are cleared: every column of
  `intake.lead_keys.LEAD_KEY_COLUMNS` (ttclid, ttp, ip, user_agent, TikTok lead id, the email /
  phone / external id hashes, the name and address hashes, locale, page URL and referrer)
  except `limited_data_use`, a choice about the lead's data, not data about the lead. The row
  itself stays, with `consent_withdrawn_at`: the record that the lead withdrew consent, which
  must outlive the keys (a later trigger of the lead is still never sent). Outbox rows that are
  final and unchanged for RETENTION_DAYS lose their stored event body (`payload`). Rows still
  pending, retrying or sending, and leads with such rows or open triggers, are left alone.
  Statuses, attempts, TikTok codes, messages and request ids stay, so counts, `postback status`
  and diagnostics over older periods keep working.
* **Erasing one lead** on a data subject's request: the lead row is deleted, its triggers'
  attributes and its postbacks' event bodies are cleared, and anything of it still waiting to
  be sent is stopped. No hash of it is left in any table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    CursorResult,
    Update,
    and_,
    exists,
    func,
    literal,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from crm_postback.core.settings import Settings
from crm_postback.intake.lead_keys import HASH_COLUMNS, LEAD_KEY_COLUMNS
from models import (
    FINAL_STATUSES,
    OPEN_STATUSES,
    OPEN_TRIGGER_STATUSES,
    Lead,
    Postback,
    PostbackStatus,
    Trigger,
    TriggerStatus,
    Workspace,
)
from models.workspace_scope import (
    ALL_WORKSPACES,
    FILTERED,
    WorkspaceScopeError,
    scope_of,
    workspace_of,
)

LEADS = Lead.__table__
POSTBACKS = Postback.__table__
TRIGGERS = Trigger.__table__
# Derived, so that a key column added at the door is purged too unless named here.
KEPT_LEAD_KEY_COLUMNS = ("limited_data_use",)
SCALAR_KEYS = tuple(
    name for name in LEAD_KEY_COLUMNS if name not in (*HASH_COLUMNS, *KEPT_LEAD_KEY_COLUMNS)
)
PURGE_BATCH = 1000
ERASED_REASON = "lead erased on request (data-subject deletion); not sent"


# --- retention purge --------------------------------------------------------------------


def retention_cutoff(settings: Settings, now: datetime) -> datetime:
    return now - timedelta(days=settings.retention_days)


@dataclass
class PurgeBatch:
    leads: int = 0  # leads whose match keys were cleared
    payloads: int = 0  # postbacks whose stored event body was cleared
    last_lead_id: int = 0  # where the next batch of this run starts
    last_postback_id: int = 0

    def full(self, limit: int) -> bool:
        return self.leads >= limit or self.payloads >= limit


def _has_keys() -> Any:
    return or_(
        *(LEADS.c[name].isnot(None) for name in SCALAR_KEYS),
        *(and_(LEADS.c[name].isnot(None), LEADS.c[name] != []) for name in HASH_COLUMNS),
    )


def workspace_ids(session: Session) -> list[int]:
    """Every workspace, in id order: the purge runs one workspace at a time."""
    return list(session.scalars(select(Workspace.id).order_by(Workspace.id)))


def _expired_leads(workspace_id: int, cutoff: datetime) -> Any:
    """The workspace's leads with keys, inactive since the cutoff, with nothing of theirs
    still open. A lead is named by (workspace, lead_ref): another workspace's rows of the same
    lead id are another lead's."""
    recent_or_open_trigger = exists().where(
        TRIGGERS.c.workspace_id == LEADS.c.workspace_id,
        TRIGGERS.c.lead_ref == LEADS.c.lead_ref,
        or_(TRIGGERS.c.received_at >= cutoff, TRIGGERS.c.status.in_(OPEN_TRIGGER_STATUSES)),
    )
    open_postback = exists().where(
        POSTBACKS.c.workspace_id == LEADS.c.workspace_id,
        POSTBACKS.c.lead_ref == LEADS.c.lead_ref,
        POSTBACKS.c.status.in_(OPEN_STATUSES),
    )
    return and_(
        LEADS.c.workspace_id == workspace_id,
        LEADS.c.updated_at < cutoff,
        _has_keys(),
        ~recent_or_open_trigger,
        ~open_postback,
    )


def has_body(dialect: str) -> Any:
    """SQL: the postback has a stored event body. Rows created without one (unmapped, or
    failed before a body was built) hold JSON `null`, not SQL NULL; a purge writes SQL NULL."""
    column = POSTBACKS.c.payload
    json_type = func.jsonb_typeof if dialect == "postgresql" else func.json_type
    return and_(column.isnot(None), json_type(column) == "object")


def _expired_payloads(workspace_id: int, dialect: str, cutoff: datetime) -> Any:
    return and_(
        POSTBACKS.c.workspace_id == workspace_id,
        has_body(dialect),
        POSTBACKS.c.status.in_(FINAL_STATUSES),
        POSTBACKS.c.updated_at < cutoff,
    )


def purge_batch(
    session: Session,
    cutoff: datetime,
    *,
    workspace_id: int | None = None,
    after_lead_id: int = 0,
    after_postback_id: int = 0,
    limit: int = PURGE_BATCH,
) -> PurgeBatch:
    """Clears up to `limit` leads and `limit` event bodies of one workspace past the cutoff,
    in id order: `workspace_id`, or the session's workspace (a session over every workspace
    must name one: the batches of a run go workspace by workspace, see `workspace_ids`).

    Rows another transaction holds are skipped (SKIP LOCKED); the next run takes them.
    """
    workspace = _one_workspace(session, workspace_id)
    batch = PurgeBatch(last_lead_id=after_lead_id, last_postback_id=after_postback_id)
    dialect = session.get_bind().dialect.name
    lead_ids = list(
        session.scalars(
            select(LEADS.c.id)
            .where(LEADS.c.id > after_lead_id, _expired_leads(workspace, cutoff))
            .order_by(LEADS.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=LEADS),
            execution_options=FILTERED,
        )
    )
    if lead_ids:
        session.execute(
            update(LEADS)
            .where(LEADS.c.workspace_id == workspace, LEADS.c.id.in_(lead_ids))
            .values(
                **dict.fromkeys(SCALAR_KEYS),
                **{name: [] for name in HASH_COLUMNS},
            ),
            execution_options=FILTERED,
        )
        batch.leads, batch.last_lead_id = len(lead_ids), lead_ids[-1]
    postback_ids = list(
        session.scalars(
            select(POSTBACKS.c.id)
            .where(
                POSTBACKS.c.id > after_postback_id,
                _expired_payloads(workspace, dialect, cutoff),
            )
            .order_by(POSTBACKS.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=POSTBACKS),
            execution_options=FILTERED,
        )
    )
    if postback_ids:
        session.execute(
            update(POSTBACKS)
            .where(POSTBACKS.c.workspace_id == workspace, POSTBACKS.c.id.in_(postback_ids))
            .values(payload=null()),
            execution_options=FILTERED,
        )
        batch.payloads, batch.last_postback_id = len(postback_ids), postback_ids[-1]
    return batch


def purge_in_batches(
    run_batch: Callable[[int, int], PurgeBatch],
    *,
    limit: int = PURGE_BATCH,
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[PurgeBatch]:
    """The purge's batch loop: `run_batch(after_lead_id, after_postback_id)` runs one
    `purge_batch` of `limit` in its own transaction and commits it; each batch starts where
    the previous one ended. Yields every batch once committed; ends after a batch that was not
    full (nothing left), or when `stop()` says so before a batch starts.
    """
    after_lead = after_postback = 0
    while not stop():
        batch = run_batch(after_lead, after_postback)
        yield batch
        if not batch.full(limit):
            return
        after_lead, after_postback = batch.last_lead_id, batch.last_postback_id


@dataclass
class PurgePreview:
    cutoff: datetime
    leads: int
    payloads: int


def count_expired(session: Session, cutoff: datetime) -> PurgePreview:
    """What a purge would clear now (for `postback purge --dry-run`): in the session's
    workspace, or, in a session over every workspace, in all of them (counted one by one)."""
    scope = scope_of(session)
    workspaces = workspace_ids(session) if scope is ALL_WORKSPACES else [workspace_of(session)]
    dialect = session.get_bind().dialect.name
    leads = payloads = 0
    for workspace in workspaces:
        leads += (
            session.scalar(
                select(func.count()).select_from(LEADS).where(_expired_leads(workspace, cutoff)),
                execution_options=FILTERED,
            )
            or 0
        )
        payloads += (
            session.scalar(
                select(func.count())
                .select_from(POSTBACKS)
                .where(_expired_payloads(workspace, dialect, cutoff)),
                execution_options=FILTERED,
            )
            or 0
        )
    return PurgePreview(cutoff, leads, payloads)


def _one_workspace(session: Session, workspace_id: int | None) -> int:
    if workspace_id is None:
        return workspace_of(session)
    scope = scope_of(session)
    if scope is not ALL_WORKSPACES and scope != workspace_id:
        raise WorkspaceScopeError(f"workspace {workspace_id}'s purge in another scope's session")
    return workspace_id


# --- erasing one lead -------------------------------------------------------------------


@dataclass
class ErasedLead:
    lead_ref: str
    lead_found: bool
    hashes: dict[str, int] = field(default_factory=dict)  # kind -> how many were stored
    scalar_keys: list[str] = field(default_factory=list)  # which were stored
    triggers: int = 0  # attributes cleared
    triggers_stopped: int = 0  # were still open: now failed
    postbacks: int = 0  # event bodies cleared
    postbacks_stopped: int = 0  # were still waiting to be sent: now failed
    # Other leads that carry one of the same hashes or ids: the same person under another
    # lead id? They are not touched; the operator decides.
    shared_with: list[str] = field(default_factory=list)
    # SQLite: the write-ahead log, which still held the old pages, was emptied after the
    # commit (False: another connection kept it busy; None: PostgreSQL, or nothing erased).
    log_emptied: bool | None = None

    @property
    def anything(self) -> bool:
        return self.lead_found or bool(self.triggers or self.postbacks)


def _sharing(session: Session, lead: Lead) -> list[str]:
    """Lead refs of other leads of the workspace holding one of this lead's hashes, ttclid or
    TikTok lead id (another workspace's leads are not named: they are not this one's to know)."""
    conditions: list[ColumnElement[bool]] = []
    dialect = session.get_bind().dialect.name
    for name in HASH_COLUMNS:
        values = list(getattr(lead, name) or [])
        if not values:
            continue
        column = LEADS.c[name]
        if dialect == "postgresql":
            conditions.append(column.op("?|")(literal(values, _text_array())))
        else:
            each = func.json_each(column).table_valued("value")
            conditions.append(
                select(literal(1)).select_from(each).where(each.c.value.in_(values)).exists()
            )
    for name in ("ttclid", "tiktok_lead_id"):
        value = getattr(lead, name)
        if value:
            conditions.append(LEADS.c[name] == value)
    if not conditions:
        return []
    return list(
        session.scalars(
            select(LEADS.c.lead_ref)
            .where(
                LEADS.c.workspace_id == lead.workspace_id,
                LEADS.c.id != lead.id,
                or_(*conditions),
            )
            .order_by(LEADS.c.lead_ref)
            .limit(20),
            execution_options=FILTERED,
        )
    )


def _text_array() -> Any:
    from sqlalchemy.dialects.postgresql import ARRAY
    from sqlalchemy.types import Text

    return ARRAY(Text())


def erase_lead(session: Session, lead_ref: str) -> ErasedLead:
    """Removes everything personal about one lead of the session's workspace (see the module
    docstring); the caller records the erasure in the audit trail. Another workspace's lead of
    the same id is another lead: it is not touched."""
    # On SQLite, every connection zeroes what it deletes or overwrites (secure_delete, in
    # models.db); the command empties the write-ahead log after the commit.
    workspace = workspace_of(session)
    result = ErasedLead(lead_ref=lead_ref, lead_found=False)
    # Triggers before the lead, as a planning worker takes them (it holds its triggers and
    # then reads their leads FOR KEY SHARE): the other order deadlocks with it.
    of_trigger = and_(TRIGGERS.c.workspace_id == workspace, TRIGGERS.c.lead_ref == lead_ref)
    of_postback = and_(POSTBACKS.c.workspace_id == workspace, POSTBACKS.c.lead_ref == lead_ref)
    result.triggers_stopped = _count_update(
        session,
        update(TRIGGERS)
        .where(of_trigger, TRIGGERS.c.status.in_(OPEN_TRIGGER_STATUSES))
        .values(status=TriggerStatus.FAILED, error=ERASED_REASON),
    )
    result.triggers = _count_update(
        session, update(TRIGGERS).where(of_trigger).values(attributes={})
    )
    lead = session.scalar(
        select(Lead)
        .where(Lead.workspace_id == workspace, Lead.lead_ref == lead_ref)
        .with_for_update()
    )
    if lead is not None:
        result.lead_found = True
        result.hashes = {
            name.removesuffix("_hashes"): len(getattr(lead, name) or [])
            for name in HASH_COLUMNS
            if getattr(lead, name)
        }
        result.scalar_keys = [
            name.removesuffix("_hash") for name in SCALAR_KEYS if getattr(lead, name)
        ]
        result.shared_with = _sharing(session, lead)
        session.delete(lead)
    result.postbacks_stopped = _count_update(
        session,
        update(POSTBACKS)
        .where(of_postback, POSTBACKS.c.status.in_(OPEN_STATUSES))
        .values(
            status=PostbackStatus.FAILED,
            last_message=ERASED_REASON,
            next_attempt_at=None,
            lease_until=None,
        ),
    )
    result.postbacks = _count_update(
        session,
        update(POSTBACKS)
        .where(of_postback, has_body(session.get_bind().dialect.name))
        .values(payload=null()),
    )
    session.flush()
    return result


def _count_update(session: Session, statement: Update) -> int:
    result = session.execute(statement, execution_options=FILTERED)
    assert isinstance(result, CursorResult)  # an UPDATE answers with a cursor result
    return int(result.rowcount or 0)


def describe_counts(result: ErasedLead) -> dict[str, Any]:
    """How much was erased: counts and key names, never a value."""
    return {
        "lead_row_deleted": result.lead_found,
        "hashes": dict(result.hashes),
        "keys": list(result.scalar_keys),
        "triggers_cleared": result.triggers,
        "triggers_stopped": result.triggers_stopped,
        "postbacks_cleared": result.postbacks,
        "postbacks_stopped": result.postbacks_stopped,
    }


def describe_erased(result: ErasedLead) -> list[str]:
    """What `postback erase-lead` prints."""
    if not result.anything:
        return [f"lead {result.lead_ref}: nothing stored; nothing to erase"]
    lines = [f"lead {result.lead_ref} erased:"]
    if result.lead_found:
        stored = [f"{count} {kind} hash(es)" for kind, count in result.hashes.items()]
        stored += result.scalar_keys
        lines.append(
            "  lead row deleted, with its match keys: " + (", ".join(stored) or "none stored")
        )
    else:
        lines.append("  no lead row (no match keys were stored)")
    lines.append(
        f"  {result.triggers} trigger(s): attributes cleared"
        + (f"; {result.triggers_stopped} still open, now failed" if result.triggers_stopped else "")
    )
    lines.append(
        f"  {result.postbacks} postback(s): stored event bodies cleared"
        + (
            f"; {result.postbacks_stopped} not yet sent, now failed (never sent)"
            if result.postbacks_stopped
            else ""
        )
    )
    lines.append(
        "  kept: statuses, attempts, TikTok codes, messages and request ids (no personal data)"
    )
    if result.log_emptied is False:
        lines.append(
            "  note: the database's write-ahead log still holds old copies of the erased rows "
            "(another process kept it busy); run the erasure again to empty it"
        )
    if result.shared_with:
        lines.append(
            "  note: other leads carry one of the same hashes or ids (the same person?): "
            + ", ".join(result.shared_with)
            + "; erase them too if so"
        )
    return lines
