"""The Python API for lead-routing systems.

    from crm_postback.api import enqueue_trigger
    enqueue_trigger({
        "type": "lead.sold", "lead_id": "L-1001", "event_set": "acme-crm",
        "occurred_at": "2026-11-21T10:00:00Z", "attributes": {"value": 42.5, "currency": "USD"},
    })

Each call validates, hashes match keys, stores the trigger and commits; only then is a Celery
task queued. If the broker is down the trigger is still stored and the sweeper sends it later.

Every call acts in one workspace: `workspace="acme"` names it, and without it the default
workspace is used (an install that never made one has only that). Event sets are looked up,
and leads named, inside that workspace only.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from crm_postback.configuration.workspaces import get_workspace
from crm_postback.core.errors import FieldError, InputRejected
from crm_postback.core.settings import get_settings
from crm_postback.intake.group_commit import GroupCommit
from crm_postback.intake.lead_keys import WITHDRAWN_WARNING, hash_match_keys, upsert_lead
from crm_postback.intake.trigger_intake import AcceptedTrigger, ScopedTrigger, accept_triggers
from crm_postback.intake.trigger_schemas import (
    LeadUpsert,
    TriggerIn,
    parse_lead_ref,
    parse_trigger,
    unstorable_values,
)
from crm_postback.observability.intake_metrics import (
    record_intake,
    record_keys_dropped,
    record_triggers_received,
)
from models import DEFAULT_WORKSPACE_ID, DEFAULT_WORKSPACE_NAME, Role
from models.db import in_transaction
from models.workspace_scope import ALL_WORKSPACES

if TYPE_CHECKING:
    from crm_postback.commands.withdraw_consent import ConsentWithdrawn

log = logging.getLogger(__name__)
PYTHON_API_ACTOR = "python-api"  # the audit trail's name for calls of this module

__all__ = [
    "AcceptedTrigger",
    "BatchItem",
    "InputRejected",
    "IntakeScope",
    "LeadKeysStored",
    "enqueue_trigger",
    "enqueue_triggers",
    "upsert_lead_keys",
    "withdraw_consent",
]


@dataclass(frozen=True)
class IntakeScope:
    """Where a caller may send: its workspace, and maybe only some of its event sets. The
    HTTP API makes one from the API key; the Python API from the `workspace` named."""

    workspace_id: int
    event_set_ids: Collection[int] | None = None
    strict: bool = False  # the API key's: a bad match key refuses instead of being dropped


_workspace_ids: dict[str, int] = {DEFAULT_WORKSPACE_NAME: DEFAULT_WORKSPACE_ID}


def _scope(workspace: str | IntakeScope) -> IntakeScope:
    if isinstance(workspace, IntakeScope):
        return workspace
    known = _workspace_ids.get(workspace)
    if known is None:
        # Workspaces are never renamed or deleted (no command does either): the id is
        # remembered for the life of the process.
        known = in_transaction(
            lambda session: get_workspace(session, workspace).id, workspace=ALL_WORKSPACES
        )
        _workspace_ids[workspace] = known
    return IntakeScope(known)


@dataclass(frozen=True)
class BatchItem:
    index: int
    accepted: AcceptedTrigger | None
    errors: list[FieldError]

    @property
    def warnings(self) -> tuple[FieldError, ...]:
        """Match keys dropped from an accepted trigger (never their values)."""
        return self.accepted.warnings if self.accepted is not None else ()


@dataclass(frozen=True)
class LeadKeysStored:
    lead_id: str
    warnings: tuple[FieldError, ...] = ()  # match keys dropped (never their values)
    # False: nothing changed (every key given was dropped, or the lead withdrew consent)
    stored: bool = True


def _refuse_unstorable(document: Mapping[str, Any]) -> None:
    unstorable = [
        FieldError(".".join(map(str, path)), message)
        for path, message in unstorable_values(dict(document))
    ]
    if unstorable:
        raise InputRejected(unstorable)


def _validated(trigger: TriggerIn | Mapping[str, Any], workspace_id: int) -> TriggerIn:
    try:
        if isinstance(trigger, Mapping):
            _refuse_unstorable(trigger)
        try:
            return parse_trigger(trigger)
        except ValidationError as error:
            document = trigger if isinstance(trigger, Mapping) else None
            raise InputRejected.from_validation(error, document=document) from None
        except Exception as error:
            # Whatever a validator trips over fails this trigger only, never its batch.
            log.warning("%s while validating a trigger", type(error).__name__)
            raise InputRejected.one("body", "could not be validated") from None
    except InputRejected:
        record_triggers_received(workspace_id, rejected=1)
        raise


def enqueue_trigger(
    trigger: TriggerIn | Mapping[str, Any],
    *,
    workspace: str | IntakeScope = DEFAULT_WORKSPACE_NAME,
    strict: bool = False,
) -> AcceptedTrigger:
    """Stores one trigger and queues it. Raises InputRejected naming each bad field.

    A match key that does not normalise is dropped and named in `warnings` of the answer;
    with `strict=True` it refuses the trigger instead. Thread-safe; calls made at the same
    time from several threads share one transaction (group commit), and each returns once
    its trigger is committed.
    """
    scope = _scope(workspace)
    [outcome] = _group(scope.workspace_id).submit(
        [
            ScopedTrigger(
                _validated(trigger, scope.workspace_id),
                scope.event_set_ids,
                strict or scope.strict,
            )
        ]
    )
    if isinstance(outcome, InputRejected):
        raise outcome
    return outcome


def enqueue_triggers(
    triggers: Iterable[TriggerIn | Mapping[str, Any]],
    *,
    workspace: str | IntakeScope = DEFAULT_WORKSPACE_NAME,
    strict: bool = False,
) -> list[BatchItem]:
    """Stores a batch in one transaction and queues one task; bad items do not stop good ones.
    Dropped match keys are in each item's `warnings` (`strict=True`: they refuse the item)."""
    scope = _scope(workspace)
    strict = strict or scope.strict
    items: list[BatchItem] = []
    valid: list[tuple[int, TriggerIn]] = []
    for index, trigger in enumerate(triggers):
        try:
            valid.append((index, _validated(trigger, scope.workspace_id)))
        except InputRejected as rejected:
            items.append(BatchItem(index, None, rejected.errors))
    outcomes = (
        _group(scope.workspace_id).submit(
            [ScopedTrigger(trigger, scope.event_set_ids, strict) for _, trigger in valid]
        )
        if valid
        else []
    )
    for (index, _), outcome in zip(valid, outcomes, strict=True):
        if isinstance(outcome, InputRejected):
            items.append(BatchItem(index, None, outcome.errors))
        else:
            items.append(BatchItem(index, outcome, []))
    return sorted(items, key=lambda item: item.index)


def _store_and_dispatch(
    workspace_id: int, triggers: list[ScopedTrigger]
) -> list[AcceptedTrigger | InputRejected]:
    if not triggers:
        return []
    # Repeating after a lost COMMIT answer is safe: the idempotency keys find the stored
    # triggers (then reported as duplicates; the sweeper sends them).
    settings = get_settings()
    outcomes = in_transaction(
        lambda session: accept_triggers(session, triggers, settings), workspace=workspace_id
    )
    record_intake(
        workspace_id,
        [item.trigger for item in triggers],
        [o if isinstance(o, AcceptedTrigger) else None for o in outcomes],
    )
    record_keys_dropped(
        workspace_id,
        [
            kind
            for o in outcomes
            if isinstance(o, AcceptedTrigger) and not o.duplicate
            for kind in o.dropped_keys
        ],
    )
    _dispatch(
        [o.trigger_id for o in outcomes if isinstance(o, AcceptedTrigger) and not o.duplicate]
    )
    return outcomes


# One group commit per workspace: a transaction is scoped to one workspace.
_GROUPS: dict[int, GroupCommit[ScopedTrigger, AcceptedTrigger | InputRejected]] = {}
_GROUPS_LOCK = threading.Lock()


def _new_groups_lock() -> None:
    # A forked child must not inherit the lock held by a parent's thread (as GroupCommit).
    global _GROUPS_LOCK
    _GROUPS_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_new_groups_lock)


def _group(workspace_id: int) -> GroupCommit[ScopedTrigger, AcceptedTrigger | InputRejected]:
    group = _GROUPS.get(workspace_id)
    if group is None:
        with _GROUPS_LOCK:
            group = _GROUPS.get(workspace_id)
            if group is None:
                group = _GROUPS[workspace_id] = GroupCommit(
                    lambda items: _store_and_dispatch(workspace_id, items),
                    gather_seconds=get_settings().group_commit_wait_ms / 1000,
                )
    return group


def upsert_lead_keys(
    lead_id: str,
    match_keys: Mapping[str, Any] | None = None,
    *,
    workspace: str | IntakeScope = DEFAULT_WORKSPACE_NAME,
    limited_data_use: bool | None = None,
    strict: bool = False,
) -> LeadKeysStored:
    """Adds or merges a lead's match keys without a trigger (e.g. the ttclid arrives later).

    `limited_data_use` (True/False) is the lead's own choice for its events, above the event
    set's; None leaves it as it is. A match key that does not normalise is dropped and named in
    the answer's `warnings`; with `strict=True` it refuses the call instead. When every key
    given was dropped, or the lead withdrew consent (a warning says so), nothing is stored and
    the answer's `stored` is False."""
    scope = _scope(workspace)
    document: dict[str, Any] = {"lead_id": lead_id, "match_keys": match_keys or {}}
    if limited_data_use is not None:
        document["limited_data_use"] = limited_data_use
    _refuse_unstorable(document)
    try:
        upsert = LeadUpsert.model_validate(document)
    except ValidationError as error:
        raise InputRejected.from_validation(error, document=document) from None
    settings = get_settings()
    keys, warnings = hash_match_keys(
        upsert.match_keys, settings.default_phone_region, strict=strict or scope.strict
    )
    keys.limited_data_use = upsert.limited_data_use
    stored = False
    if not keys.is_empty():
        # A merge of keys: repeating it changes nothing.
        stored = in_transaction(
            lambda session: upsert_lead(session, scope.workspace_id, upsert.lead_id, keys),
            workspace=scope.workspace_id,
        )
        if not stored:
            warnings.append(WITHDRAWN_WARNING)
    record_keys_dropped(scope.workspace_id, keys.dropped)
    # Triggers waiting for this lead are picked up by the next sweep.
    return LeadKeysStored(upsert.lead_id, tuple(warnings), stored=stored)


def withdraw_consent(
    lead_id: str, *, workspace: str | IntakeScope = DEFAULT_WORKSPACE_NAME
) -> ConsentWithdrawn:
    """Records that the lead withdrew consent: its postbacks still waiting end
    `consent_withdrawn`, and nothing more is sent for it (one already being sent may still
    arrive). Not reversible: a lead who consents again comes back under a new lead id. An
    unknown lead of the workspace raises NotFound (an InputRejected)."""
    from crm_postback.commands.unit_of_work import Actor
    from crm_postback.commands.withdraw_consent import WithdrawConsent
    from crm_postback.commands.withdraw_consent import withdraw_consent as withdraw

    scope = _scope(workspace)
    actor = Actor(PYTHON_API_ACTOR, scope.workspace_id, Role.EDITOR)
    return withdraw(WithdrawConsent(lead_id=parse_lead_ref(lead_id)), actor)


def _dispatch(trigger_ids: list[int]) -> None:
    if not trigger_ids:
        return
    from worker import wakeups
    from worker.tasks import process_triggers

    settings = get_settings()
    linger_ms = wakeups.wakeup_linger_ms(settings)
    wakeups.wake(
        settings,
        lambda: process_triggers.delay(trigger_ids, linger_ms),
        f"{len(trigger_ids)} stored trigger(s)",
        linger_ms=linger_ms,
    )
