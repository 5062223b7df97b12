"""Resolving stored triggers into outbox rows (no commit here; tasks commit).

In named steps: `resolve_triggers` takes the triggers, writes what became of each and plans
their rows; `insert_claimed` inserts them already claimed for sending, `insert_reserved`
inserts them leased for a delivery task. Set-based: a batch of triggers costs a fixed number
of statements (select triggers, leads, event sets and mappings; one UPDATE per outcome group;
one multi-row INSERT of postbacks).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    Row,
    Select,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from crm_postback.core.settings import Settings
from crm_postback.operations.postback_messages import (
    ALREADY_IN_THE_OUTBOX,
    MADE_TWICE_IN_THE_RUN,
    consent_withdrawn_message,
)
from crm_postback.tiktok.events_payload import (
    NoMatchKey,
    build_event,
    make_event_id,
    match_key_mask,
    resolve_limited_data_use,
)
from mappings.resolve import CompiledMapping, compile_mappings, explain_unmapped, resolve
from models import (
    FINAL_STATUSES,
    OPEN_TRIGGER_STATUSES,
    REPLAYABLE_STATUSES,
    EventSet,
    Lead,
    Mapping,
    Postback,
    PostbackStatus,
    Trigger,
    TriggerStatus,
    status_is_one_of,
)
from models.bulk import bulk_insert, is_postgres, matches_any, planned_for_its_parameters
from worker.claim_planning import OutgoingBatch, plan_claim
from worker.fair_shares import PerSetQuery, rows_of_sets, share_out, undoable_take

TRIGGERS = Trigger.__table__
POSTBACKS = Postback.__table__
# Every postback row is inserted with the same keys, as a multi-row INSERT requires.
_POSTBACK_DEFAULTS: dict[str, Any] = {
    "mapping_id": None,
    "mapping_version": None,
    "event_name": None,
    "event_id": None,
    "attempts": 0,
    "replays": 0,
    "next_attempt_at": None,
    "lease_until": None,
    "payload": None,
    "match_key_mask": None,
    "last_message": None,
}


def load_mappings(session: Session, event_set_ids: set[int]) -> dict[int, list[CompiledMapping]]:
    """The event sets' enabled mappings, compiled once per content (see `compile_mappings`)."""
    table = Mapping.__table__
    rows = session.execute(
        select(
            table.c.id,
            table.c.event_set_id,
            table.c.trigger_type,
            table.c.event_name,
            table.c.conditions,
            table.c.properties,
            table.c.enabled,
            table.c.version,
        ).where(table.c.event_set_id.in_(event_set_ids))
    )
    by_set: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        by_set[row.event_set_id].append(row)
    return {set_id: compile_mappings(by_set.get(set_id, [])) for set_id in event_set_ids}


def begin_attempt(
    session: Session, trigger_ids: Sequence[int], settings: Settings, now: datetime
) -> list[int]:
    """Counts a processing run of each open trigger; the caller commits before processing.

    A trigger whose earlier runs never finished (the worker died) is failed at the cap
    instead of being retried forever by broker redelivery and the sweeper.
    """
    if not trigger_ids:
        return []
    rows = session.execute(
        select(TRIGGERS.c.id, TRIGGERS.c.attempts)
        .where(
            matches_any(session, TRIGGERS.c.id, trigger_ids),
            TRIGGERS.c.status.in_(OPEN_TRIGGER_STATUSES),
        )
        .with_for_update(skip_locked=True, of=TRIGGERS)
    ).all()
    capped = [r.id for r in rows if r.attempts >= settings.max_processing_attempts]
    runnable = [r.id for r in rows if r.attempts < settings.max_processing_attempts]
    if runnable:
        session.execute(
            update(TRIGGERS)
            .where(matches_any(session, TRIGGERS.c.id, runnable))
            .values(attempts=TRIGGERS.c.attempts + 1)
        )
    if capped:
        session.execute(
            update(TRIGGERS)
            .where(matches_any(session, TRIGGERS.c.id, capped))
            .values(
                status=TriggerStatus.FAILED,
                processed_at=now,
                error=(
                    f"processing did not finish in {settings.max_processing_attempts} runs "
                    "(the worker stopped); see the worker logs for this trigger id"
                ),
            )
        )
    return runnable


_TRIGGER_COLUMNS = (
    TRIGGERS.c.id,
    TRIGGERS.c.event_set_id,
    TRIGGERS.c.workspace_id,
    TRIGGERS.c.lead_ref,
    TRIGGERS.c.trigger_type,
    TRIGGERS.c.occurred_at,
    TRIGGERS.c.attributes,
    TRIGGERS.c.idempotency_key,
    TRIGGERS.c.received_at,
    TRIGGERS.c.event_id,
    TRIGGERS.c.limited_data_use,
)
LEADS = Lead.__table__
_LEAD_COLUMNS = (
    LEADS.c.workspace_id,
    LEADS.c.lead_ref,
    LEADS.c.ttclid,
    LEADS.c.ttp,
    LEADS.c.ip,
    LEADS.c.user_agent,
    LEADS.c.tiktok_lead_id,
    LEADS.c.email_hashes,
    LEADS.c.phone_hashes,
    LEADS.c.external_id_hashes,
    LEADS.c.first_name_hash,
    LEADS.c.last_name_hash,
    LEADS.c.city_hash,
    LEADS.c.state_hash,
    LEADS.c.country_hash,
    LEADS.c.zip_code_hash,
    LEADS.c.locale,
    LEADS.c.page_url,
    LEADS.c.page_referrer,
    LEADS.c.limited_data_use,
    LEADS.c.consent_withdrawn_at,
)


PostbackKey = tuple[int, str | None, str | None]  # event set, event name, event id


class NewPostback:
    """An outbox row planned but not inserted yet: the column values of its INSERT.

    Claiming reads it like a stored row (`claim_planning.ClaimableRow`); once inserted, it is
    found among the returned rows by `key`.
    """

    __slots__ = ("values",)
    attempts = 0
    replays = 0
    last_message = None

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    @property
    def event_set_id(self) -> int:
        set_id: int = self.values["event_set_id"]
        return set_id

    @property
    def payload(self) -> dict[str, Any] | None:
        payload: dict[str, Any] | None = self.values["payload"]
        return payload

    @property
    def created_at(self) -> datetime:
        created_at: datetime = self.values["created_at"]
        return created_at

    @property
    def lead_ref(self) -> str:
        lead_ref: str = self.values["lead_ref"]
        return lead_ref

    @property
    def key(self) -> PostbackKey:
        """TikTok's identity of the event (and the outbox's unique key)."""
        return self.values["event_set_id"], self.values["event_name"], self.values["event_id"]

    @property
    def trigger_id(self) -> int:
        trigger_id: int = self.values["trigger_id"]
        return trigger_id

    @property
    def pending(self) -> bool:
        return bool(self.values["status"] == PostbackStatus.PENDING)


@dataclass
class ResolvedTriggers:
    """What a run took: its triggers already marked, and the outbox rows they lead to."""

    taken: int  # triggers this run took
    new_postbacks: list[NewPostback]  # planned, not inserted
    event_sets: dict[int, EventSet]  # of the triggers taken
    full: bool = False  # it took as many triggers as it could: more may be waiting
    woke_early: bool = False  # and it already woke another worker (see `wake_early`)

    def sendable(self) -> list[NewPostback]:
        return [row for row in self.new_postbacks if row.pending]


@dataclass
class Processed:
    taken: int  # triggers this run took
    ready: list[int]  # new rows to send, reserved for a delivery task
    full: bool = False
    woke_early: bool = False


def resolve_triggers(
    session: Session,
    trigger_ids: Sequence[int],
    settings: Settings,
    now: datetime,
    also_ready: int = 0,
    wake_early: Callable[[], None] | None = None,
) -> ResolvedTriggers:
    """Takes open triggers, writes what became of each, and plans their outbox rows.

    `also_ready` > 0 also takes up to that many other triggers waiting for a worker, so a
    burst of single-trigger tasks turns into a few large requests (natural batching); they
    are shared out across event sets (`take_waiting_fairly`). Given triggers that are gone
    (another run holds or finished them) leave their room to such triggers too.
    `wake_early` is called as soon as this run has locked a full batch, before the work on it:
    more may be waiting, and another worker can take the next batch meanwhile (its SELECT
    skips the rows locked here). Only PostgreSQL locks them; elsewhere (SQLite) the result
    says `full` and the caller wakes the next worker after committing.
    The planned rows are inserted by `insert_claimed` or `insert_reserved`.
    """
    if not trigger_ids and not also_ready:
        return ResolvedTriggers(0, [], {})
    limit = len(trigger_ids) + max(also_ready, 0)
    triggers: list[Row[Any]] = []
    if trigger_ids:
        triggers = list(
            session.execute(
                select(*_TRIGGER_COLUMNS)
                .where(
                    matches_any(session, TRIGGERS.c.id, trigger_ids),
                    TRIGGERS.c.status.in_(OPEN_TRIGGER_STATUSES),
                )
                .order_by(TRIGGERS.c.id)
                .with_for_update(skip_locked=True, of=TRIGGERS)
            )
        )
    # Given triggers another run already holds or finished leave room to fill as well: the
    # task was woken for work, and a wake-up chain must not end because its ids were taken.
    more_waiting = False
    if also_ready > 0 or len(triggers) < len(trigger_ids):
        taken = {trigger.id for trigger in triggers}
        waiting, more_waiting = take_waiting_fairly(session, limit - len(triggers))
        triggers.extend(trigger for trigger in waiting if trigger.id not in taken)
    if not triggers:
        return ResolvedTriggers(0, [], {})
    full = len(triggers) >= limit or more_waiting
    woke_early = False
    if full and wake_early is not None and is_postgres(session):
        wake_early()
        woke_early = True
    with planned_for_its_parameters(session):
        # A lead is named by (workspace, lead_ref); the same ref in another workspace of the
        # batch is read too and left aside.
        leads = {
            (lead.workspace_id, lead.lead_ref): lead
            for lead in session.execute(
                select(*_LEAD_COLUMNS)
                .where(
                    matches_any(session, Lead.lead_ref, list({t.lead_ref for t in triggers})),
                    Lead.workspace_id.in_({t.workspace_id for t in triggers}),
                )
                # The weakest row lock (FOR KEY SHARE): a withdrawal's FOR UPDATE of the lead
                # waits for this run's commit, then stops or counts as in flight the rows
                # planned here; one that committed first is seen here. Writers that lock
                # leads take them in this order (by lead_ref) too.
                .order_by(LEADS.c.lead_ref, LEADS.c.workspace_id)
                .with_for_update(of=LEADS, read=True, key_share=True)
            ).all()
        }
    set_ids = {t.event_set_id for t in triggers}
    event_sets = {
        es.id: es for es in session.scalars(select(EventSet).where(EventSet.id.in_(set_ids)))
    }
    mappings = load_mappings(session, set_ids)

    new_postbacks: list[NewPostback] = []
    outcomes: dict[int, tuple[str, str | None, bool]] = {}
    for trigger in triggers:
        lead = leads.get((trigger.workspace_id, trigger.lead_ref))
        if lead is None:
            status, error = _waiting_for_lead(trigger, settings, now)
            outcomes[trigger.id] = (status, error, status == TriggerStatus.FAILED)
            continue
        event_set = event_sets[trigger.event_set_id]
        postbacks, status, error = _postbacks_for(
            trigger, lead, event_set, mappings.get(event_set.id, []), now
        )
        new_postbacks.extend(NewPostback(values) for values in postbacks)
        outcomes[trigger.id] = (status, error, True)
    callers = {trigger.id for trigger in triggers if trigger.event_id}
    notes: dict[int, list[str]] = defaultdict(list)
    new_postbacks = _without_duplicates(session, new_postbacks, callers, notes)

    trigger_updates: dict[tuple[str, str | None, bool], list[int]] = defaultdict(list)
    for trigger_id, (status, error, processed) in outcomes.items():
        trigger_updates[(status, _with_notes(error, notes.get(trigger_id)), processed)].append(
            trigger_id
        )
    for (status, error, processed), ids in trigger_updates.items():
        values: dict[str, Any] = {
            "status": status,
            "error": error,
            "processed_at": now if processed else None,
        }
        if status == TriggerStatus.WAITING_FOR_LEAD:
            # This run finished: `attempts` counts the runs that did not (`begin_attempt`), so
            # the sweeps that look again for the lead never reach the cap meant for crashes.
            values["attempts"] = 0
        session.execute(
            update(TRIGGERS).where(matches_any(session, TRIGGERS.c.id, ids)).values(**values)
        )
    return ResolvedTriggers(len(triggers), new_postbacks, event_sets, full, woke_early)


def take_waiting_fairly(session: Session, limit: int) -> tuple[list[Row[Any]], bool]:
    """Up to `limit` triggers waiting for a worker (`received`), locked, shared out across
    their event sets (`worker.fair_shares`), and whether more are left waiting. Sets with a
    few triggers go first, in a batch of their own, when another set has a backlog: one
    advertiser's backlog (a nightly re-send) costs another advertiser's fresh trigger the
    end of one batch of waiting, not the backlog. Rows another worker holds are skipped
    (PostgreSQL); on SQLite the writer lock already makes the run exclusive."""
    return share_out(
        list(session.scalars(_EVENT_SETS_WAITING)),
        limit,
        lambda shares: rows_of_sets(session, _WAITING_BY_SET, shares),
        small_first=lambda: undoable_take(session),
    )


# The distinct event sets with triggers waiting, one index probe per set (a loose index scan
# over ix_triggers_received_event_set_id) rather than reading every waiting row. The status is
# a literal so that the planner can use the partial index.
_EVENT_SETS_WAITING = text(
    """
    WITH RECURSIVE waiting(event_set_id) AS (
        SELECT min(event_set_id) FROM triggers WHERE status = 'received'
        UNION ALL
        SELECT (
            SELECT min(t.event_set_id) FROM triggers AS t
            WHERE t.status = 'received' AND t.event_set_id > waiting.event_set_id
        )
        FROM waiting WHERE waiting.event_set_id IS NOT NULL
    )
    SELECT event_set_id FROM waiting WHERE event_set_id IS NOT NULL
    """
)
_WAITING = TRIGGERS.c.status == literal_column("'received'")


def _waiting_of_set(set_id: Any, after: int | None, limit: Any) -> Any:
    return _waiting(select(*_TRIGGER_COLUMNS), set_id, after, limit).with_for_update(
        skip_locked=True, of=TRIGGERS
    )


def _waiting(query: Select[Any], set_id: Any, after: int | None, limit: Any) -> Select[Any]:
    conditions = [_WAITING, TRIGGERS.c.event_set_id == set_id]
    if after is not None:
        conditions.append(TRIGGERS.c.id > after)
    return query.where(*conditions).order_by(TRIGGERS.c.id).limit(limit)


_WAITING_BY_SET = PerSetQuery(_waiting_of_set)


def insert_claimed(
    session: Session, resolved: ResolvedTriggers, settings: Settings, now: datetime
) -> list[OutgoingBatch]:
    """Inserts the planned rows already claimed (see `claim_planning.plan_claim`): one write
    per row instead of an INSERT and then an UPDATE. Returns the requests to send once the
    caller commits, the smallest first: a set with a few fresh events does not wait for
    another set's full request to be answered."""
    if not resolved.new_postbacks:
        return []
    plan = plan_claim(resolved.sendable(), resolved.event_sets, settings, now)
    for row, values in plan.changes:
        row.values.update(values)
    row_ids = _insert(session, resolved.new_postbacks)
    return sorted(plan.batches(lambda row: row_ids.get(row.key)), key=lambda b: len(b.items))


def insert_reserved(
    session: Session, resolved: ResolvedTriggers, settings: Settings, now: datetime
) -> list[int]:
    """Inserts the planned rows, those to send under a lease (the sweeper leaves them to the
    delivery task the caller queues). Returns the ids of the rows to send."""
    if not resolved.new_postbacks:
        return []
    sendable = resolved.sendable()
    lease_until = now + timedelta(seconds=settings.dispatch_lease_seconds)
    for row in sendable:
        row.values["lease_until"] = lease_until
    row_ids = _insert(session, resolved.new_postbacks)
    return [row_ids[row.key] for row in sendable if row.key in row_ids]


def _insert(session: Session, rows: list[NewPostback]) -> dict[PostbackKey, int]:
    """One multi-row INSERT; the new ids by (event set, event name, event id).

    A row another worker stored meanwhile (the same caller event id, from another trigger
    resolved at the same time) is not inserted and has no id here; its trigger says why.
    """
    inserted = bulk_insert(
        session,
        POSTBACKS,
        [row.values for row in rows],
        returning=(
            POSTBACKS.c.id,
            POSTBACKS.c.event_set_id,
            POSTBACKS.c.event_name,
            POSTBACKS.c.event_id,
        ),
        ignore_conflicts=True,
    )
    row_ids = {(row.event_set_id, row.event_name, row.event_id): row.id for row in inserted}
    lost = [row for row in rows if row.values["event_name"] is not None and row.key not in row_ids]
    if lost:
        notes: dict[int, list[str]] = defaultdict(list)
        stored = _stored_events(session, [row.key for row in lost])
        for row in lost:
            notes[row.trigger_id].append(_duplicate_note(row.key, stored.get(row.key)))
        for trigger_id, texts in notes.items():
            error = session.scalar(select(TRIGGERS.c.error).where(TRIGGERS.c.id == trigger_id))
            session.execute(
                update(TRIGGERS)
                .where(TRIGGERS.c.id == trigger_id)
                .values(error=_with_notes(error, texts))
            )
    return row_ids


class StoredEvent(NamedTuple):
    """The outbox row that already holds an event."""

    id: int
    status: str


def _stored_events(session: Session, keys: Sequence[PostbackKey]) -> dict[PostbackKey, StoredEvent]:
    """The outbox rows that already hold these events (one statement)."""
    if not keys:
        return {}
    wanted = set(keys)
    rows = session.execute(
        select(
            POSTBACKS.c.id,
            POSTBACKS.c.status,
            POSTBACKS.c.event_set_id,
            POSTBACKS.c.event_name,
            POSTBACKS.c.event_id,
        ).where(
            POSTBACKS.c.event_set_id.in_({key[0] for key in wanted}),
            matches_any(session, POSTBACKS.c.event_id, list({key[2] for key in wanted})),
        )
    )
    found = {}
    for row in rows:
        key = (row.event_set_id, row.event_name, row.event_id)
        if key in wanted:
            found[key] = StoredEvent(row.id, row.status)
    return found


def _without_duplicates(
    session: Session,
    rows: list[NewPostback],
    callers: set[int],
    notes: dict[int, list[str]],
) -> list[NewPostback]:
    """Drops the events already in the outbox (the same event set, name and caller's event
    id: TikTok's identity of an event) or made twice in this run. The trigger that made the
    dropped one gets a note in `notes` (by trigger id)."""
    if not callers:
        return rows  # a deterministic id is unique to its trigger occurrence
    candidates = [row.key for row in rows if row.trigger_id in callers and row.key[1] is not None]
    stored = _stored_events(session, candidates)
    made: dict[PostbackKey, int] = {}
    kept = []
    for row in rows:
        key = row.key
        if key[1] is None:
            kept.append(row)
            continue
        if key in stored:
            notes[row.trigger_id].append(_duplicate_note(key, stored[key]))
            continue
        if key in made:
            notes[row.trigger_id].append(
                f"event {key[1]} with event_id {key[2]!r}{MADE_TWICE_IN_THE_RUN}{made[key]} "
                "of the same run: TikTok would drop it as a duplicate; stored once"
            )
            continue
        made[key] = row.trigger_id
        kept.append(row)
    return kept


def _duplicate_note(key: PostbackKey, stored: StoredEvent | None) -> str:
    """Why the event was not stored again, and what to do when the stored one never left."""
    event = f"event {key[1]} with event_id {key[2]!r}"
    if stored is None:  # stored by another worker meanwhile; gone again by now
        return f"{event}{ALREADY_IN_THE_OUTBOX}: not stored again"
    held = f"{event}{ALREADY_IN_THE_OUTBOX} as postback {stored.id} ({stored.status})"
    if stored.status == PostbackStatus.DELIVERED:
        return f"{held}: TikTok has it; not stored again"
    if stored.status in REPLAYABLE_STATUSES:
        return (
            f"{held}, which TikTok never got; not stored again: to send it, "
            f"replay that postback (`postback replay --id {stored.id}`)"
        )
    if stored.status in FINAL_STATUSES:
        return f"{held}, which is never sent; not stored again"
    return f"{held}, which is sent once; not stored again"


def _with_notes(error: str | None, notes: list[str] | None) -> str | None:
    if not notes:
        return error
    return "; ".join([*([error] if error else []), *notes])[:4000]


def process_triggers(
    session: Session,
    trigger_ids: Sequence[int],
    settings: Settings,
    now: datetime,
    also_ready: int = 0,
    wake_early: Callable[[], None] | None = None,
) -> Processed:
    """Turns open triggers into outbox rows reserved for delivery tasks (the sweeper's way;
    a task that sends them itself uses `resolve_triggers` and `insert_claimed`)."""
    resolved = resolve_triggers(session, trigger_ids, settings, now, also_ready, wake_early)
    ready = insert_reserved(session, resolved, settings, now)
    return Processed(resolved.taken, ready, resolved.full, resolved.woke_early)


def _waiting_for_lead(
    trigger: Row[*tuple[Any, ...]], settings: Settings, now: datetime
) -> tuple[str, str | None]:
    waited = (now - trigger.received_at).total_seconds()
    if waited >= settings.lead_wait_seconds:
        return TriggerStatus.FAILED, (
            f"lead_id: no lead {trigger.lead_ref!r} arrived with match keys within "
            f"{settings.lead_wait_seconds} s (send lead.submitted or upsert the lead first)"
        )
    return (
        TriggerStatus.WAITING_FOR_LEAD,
        f"lead_id: waiting for lead {trigger.lead_ref!r} to be submitted",
    )


def _postbacks_for(
    trigger: Row[*tuple[Any, ...]],
    lead: Row[*tuple[Any, ...]],
    event_set: EventSet,
    candidates: list[CompiledMapping],
    now: datetime,
) -> tuple[list[dict[str, Any]], str, str | None]:
    resolved = resolve(
        trigger.trigger_type, trigger.attributes, candidates, event_set.default_currency
    )
    base = {
        **_POSTBACK_DEFAULTS,
        "trigger_id": trigger.id,
        "event_set_id": event_set.id,
        "workspace_id": event_set.workspace_id,
        "lead_ref": trigger.lead_ref,
        "created_at": now,
        "updated_at": now,
    }
    if not resolved:
        reason = explain_unmapped(trigger.trigger_type, candidates)
        row = {**base, "status": PostbackStatus.UNMAPPED, "last_message": reason}
        return [row], TriggerStatus.UNMAPPED, reason

    limited_data_use = resolve_limited_data_use(
        trigger.limited_data_use, lead.limited_data_use, event_set.limited_data_use
    )
    withdrawn = (
        consent_withdrawn_message(lead.consent_withdrawn_at) if lead.consent_withdrawn_at else None
    )
    postbacks = []
    for event in resolved:
        # Every event of the trigger keeps the caller's (Pixel's) id: TikTok's identity of an
        # event is its name and id, so two events of one trigger never collide.
        event_id = trigger.event_id or make_event_id(
            event_set.id, trigger.idempotency_key, event.event_name
        )
        row = {
            **base,
            "mapping_id": event.mapping_id,
            "mapping_version": event.mapping_version,
            "event_name": event.event_name,
            "event_id": event_id,
            "status": PostbackStatus.PENDING,
            "next_attempt_at": now,
        }
        no_match_key = None
        try:
            row["payload"] = build_event(
                event_source=event_set.event_source,
                lead_event_source=event_set.lead_event_source,
                lead=lead,
                event_name=event.event_name,
                event_id=event_id,
                occurred_at=trigger.occurred_at,
                properties=event.properties,
                limited_data_use=limited_data_use,
            )
            row["match_key_mask"] = int(match_key_mask(row["payload"]))
        except NoMatchKey as error:
            no_match_key = str(error)
            row["match_key_mask"] = int(error.mask)
        if withdrawn:
            row.update(_final(PostbackStatus.CONSENT_WITHDRAWN, withdrawn))
        elif event.error:
            row.update(_final(PostbackStatus.FAILED, event.error))
        elif no_match_key:
            row.update(_final(PostbackStatus.NO_MATCH_KEY, no_match_key))
        postbacks.append(row)
    if withdrawn:
        return postbacks, TriggerStatus.RESOLVED, withdrawn
    return postbacks, TriggerStatus.RESOLVED, None


def _final(status: PostbackStatus, message: str) -> dict[str, Any]:
    """A planned row that ends at once: nothing of the lead is kept for an unsent event."""
    return {
        "status": status,
        "last_message": message[:2000],
        "next_attempt_at": None,
        "payload": None,
    }


def stale_trigger_ids(
    session: Session, now: datetime, stale_after: timedelta, limit: int
) -> list[int]:
    """Triggers whose task never ran (broker lost it, or Redis was down at enqueue time)."""
    cutoff = now - stale_after
    return list(
        session.scalars(
            select(TRIGGERS.c.id)
            .where(
                status_is_one_of(TRIGGERS.c.status, OPEN_TRIGGER_STATUSES),
                TRIGGERS.c.received_at <= cutoff,
            )
            # Not by id: with a LIMIT, PostgreSQL would walk the primary key from the oldest
            # row, and open triggers are the newest. Ordered by age, it reads the stale ones
            # from the partial status index and sorts them.
            .order_by(TRIGGERS.c.received_at, TRIGGERS.c.id)
            .limit(limit)
        )
    )
