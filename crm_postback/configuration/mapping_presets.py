"""Mapping presets: the mappings TikTok recommends for a funnel, made in one action (no commit
here: `commands.manage_mappings.apply_preset` and `manage_event_sets.add_event_set` commit).

The lead-generation preset follows TikTok's lead funnel (submitted, qualified, sold, offer
conversion; shared/reference/tiktok-events-api.md §3.2-3.3). A CRM event set takes custom
names, which TikTok maps to its funnel stages in Events Manager (its CRM events are mapped
there, not by name), and non-standard ones keep the stages apart; the first is `Lead`, the
current name of what TikTok's CRM pages still call SubmitForm. A Pixel gets standard names
only, one per stage in funnel order, so each can be chosen as an optimisation event.

Applying a preset is idempotent: a mapping of the same trigger to the same event is already
there (whatever its conditions, properties or state: it may have been edited since) and is
kept; a mapping of one of the preset's triggers to another event is a conflict, and nothing
is created. The mappings made are ordinary ones, edited and deleted like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_postback.configuration import audit
from crm_postback.configuration.mapping_service import add_mapping, list_mappings
from crm_postback.core.errors import FieldError, InputRejected
from models import EventSet, EventSetKind, Mapping

LEAD_GENERATION = "lead-generation"

# Lead-type events have no recommended properties (a trigger's `value` is not sent with them).
_NO_VALUE: dict[str, Any] = {"value_from": None, "currency_from": None}
# The defaults: value from the `value` attribute, currency from `currency`, then the set's.
_SALE: dict[str, Any] = {}
_CONVERSION: dict[str, Any] = {"order_id_from": "order_id"}


@dataclass(frozen=True)
class PresetMapping:
    trigger_type: str
    event_name: str
    properties: dict[str, Any] = field(default_factory=dict)


_LEAD_GENERATION: dict[str, tuple[PresetMapping, ...]] = {
    EventSetKind.CRM: (
        PresetMapping("lead.submitted", "Lead", _NO_VALUE),
        PresetMapping("lead.qualified", "lead_qualified", _NO_VALUE),
        PresetMapping("lead.sold", "lead_sold", _SALE),
        PresetMapping("offer.conversion", "offer_converted", _CONVERSION),
    ),
    EventSetKind.WEB: (
        PresetMapping("lead.submitted", "Lead", _NO_VALUE),
        PresetMapping("lead.qualified", "SubmitApplication", _NO_VALUE),
        PresetMapping("lead.sold", "ApplicationApproval", _SALE),
        PresetMapping("offer.conversion", "Purchase", _CONVERSION),
    ),
}

PRESETS = (LEAD_GENERATION,)


def preset_mappings(preset: str, kind: str) -> tuple[PresetMapping, ...]:
    if preset != LEAD_GENERATION:
        raise InputRejected.one("preset", f"must be one of: {', '.join(PRESETS)}")
    return _LEAD_GENERATION[EventSetKind(kind)]


@dataclass
class PresetResult:
    created: list[Mapping]
    present: list[Mapping]  # already there (same trigger, same event), left as they are


def apply_preset(session: Session, event_set: EventSet, preset: str, *, actor: str) -> PresetResult:
    """Creates the preset's mappings the event set lacks; InputRejected, nothing created, if
    one of its triggers is mapped to another event. The event set's row is locked first, so
    two runs at once (two admins, a double click) create each mapping once."""
    wanted = preset_mappings(preset, event_set.kind)
    session.execute(select(EventSet.id).where(EventSet.id == event_set.id).with_for_update())
    saved = list_mappings(session, event_set)
    present: list[Mapping] = []
    missing: list[PresetMapping] = []
    conflicts: list[FieldError] = []
    for item in wanted:
        same_trigger = [m for m in saved if m.trigger_type == item.trigger_type]
        same = [m for m in same_trigger if m.event_name == item.event_name]
        if same:
            present.extend(same)
        elif same_trigger:
            conflicts.extend(
                FieldError(
                    "preset",
                    f"mapping {m.id} maps {m.trigger_type} to {m.event_name!r}, the preset to "
                    f"{item.event_name!r}: change or delete it first, nothing was created",
                )
                for m in same_trigger
            )
        else:
            missing.append(item)
    if conflicts:
        raise InputRejected(conflicts)
    created = [
        add_mapping(
            session,
            event_set,
            trigger_type=item.trigger_type,
            event_name=item.event_name,
            properties=item.properties,
            actor=actor,
        )
        for item in missing
    ]
    if created:
        audit.record(
            session,
            actor=actor,
            action="event_set.preset",
            entity_type="event_set",
            entity_id=event_set.id,
            event_set_id=event_set.id,
            after={
                "preset": preset,
                "created": [m.id for m in created],
                "present": [m.id for m in present],
            },
            workspace_id=event_set.workspace_id,
        )
    return PresetResult(created, present)
