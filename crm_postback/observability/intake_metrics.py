"""What the intake records once a batch of triggers is committed: the counter by workspace
and result, and a DEBUG line per trigger with its ids (never its match keys).

Takes plain values: the intake's own types stay in `crm_postback.intake`, above this package.
The DEBUG lines are logged as "crm_postback.api", a face's name, on purpose: it is the intake's
log name from when the intake was that module, and producers filter on it. Only the name is
borrowed; nothing here imports the face.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from crm_postback.observability import metric_definitions
from crm_postback.observability.metric_definitions import never_raises
from crm_postback.observability.workspace_labels import workspace_label

# A face's name, on purpose (see the module docstring).
_intake_log = logging.getLogger("crm_postback.api")


class ReceivedTrigger(Protocol):
    """What the DEBUG line says about a trigger (a validated `TriggerIn`)."""

    @property
    def type(self) -> str: ...

    @property
    def lead_id(self) -> str: ...

    @property
    def event_set(self) -> str: ...


class StoredTrigger(Protocol):
    """A trigger the intake stored, or found stored before (an `AcceptedTrigger`)."""

    @property
    def trigger_id(self) -> int: ...

    @property
    def duplicate(self) -> bool: ...


@never_raises("triggers received")
def record_triggers_received(
    workspace_id: int, accepted: int = 0, duplicate: int = 0, rejected: int = 0
) -> None:
    """Counts triggers of one workspace (the label is the process's cached name)."""
    counter = metric_definitions.metrics().triggers_received
    workspace = workspace_label(workspace_id)
    for result, count in (("accepted", accepted), ("duplicate", duplicate), ("rejected", rejected)):
        if count:
            counter.labels(workspace, result).inc(count)


@never_raises("the intake")
def record_intake(
    workspace_id: int,
    triggers: Sequence[ReceivedTrigger],
    stored: Sequence[StoredTrigger | None],
) -> None:
    """After an intake commit in one workspace. `stored[i]` is what became of triggers[i];
    None: rejected."""
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    debug = _intake_log.isEnabledFor(logging.DEBUG)
    for trigger, outcome in zip(triggers, stored, strict=True):
        if outcome is not None:
            result = "duplicate" if outcome.duplicate else "accepted"
            trigger_id: int | None = outcome.trigger_id
        else:
            result, trigger_id = "rejected", None
        counts[result] += 1
        if debug:
            _intake_log.debug(
                "trigger %s %s: %s",
                trigger_id if trigger_id is not None else "-",
                result,
                trigger.type,
                extra={
                    "trigger_id": trigger_id,
                    "lead_id": trigger.lead_id,
                    "event_set": trigger.event_set,
                    "status": result,
                },
            )
    record_triggers_received(workspace_id, **counts)


@never_raises("dropped match keys")
def record_keys_dropped(workspace_id: int, kinds: Sequence[str]) -> None:
    """Counts match keys dropped at the door (kinds such as phone or ttclid, never values)."""
    if not kinds:
        return
    counter = metric_definitions.metrics().match_keys_dropped
    workspace = workspace_label(workspace_id)
    for kind in kinds:
        counter.labels(workspace, kind).inc()
