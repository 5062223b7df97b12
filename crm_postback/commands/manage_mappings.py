"""Mapping use cases: add, update, enable/disable, delete, import YAML (with a dry run), apply
a preset (`configuration.mapping_presets`).

Each opens one unit of work; `configuration.mapping_service` (and `mapping_yaml` for imports)
changes the rows and records the audit entries in it. A mapping can be named with the event
set it must belong to (the pages and the JSON API), or alone (the CLI).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.orm import Session

from crm_postback.commands.lookups import EventSetRef, load_event_set, load_mapping
from crm_postback.commands.unit_of_work import Actor, unit_of_work
from crm_postback.configuration import mapping_presets, mapping_service, mapping_yaml
from crm_postback.core.errors import FieldError, InputRejected
from mappings.rules import Condition, PropertyRules
from models import EventSet, Mapping, Role


@dataclass(frozen=True)
class MappingInput:
    """A whole mapping as saved: what `add` creates and `update` replaces."""

    trigger_type: str
    event_name: str
    conditions: Sequence[Condition | dict[str, Any]] = ()
    properties: PropertyRules | dict[str, Any] = field(default_factory=dict)
    enabled: bool = True

    @classmethod
    def from_entry(cls, entry: mapping_yaml.MappingEntry) -> MappingInput:
        return cls(
            entry.trigger_type, entry.event_name, entry.conditions, entry.properties, entry.enabled
        )


@dataclass(frozen=True)
class AddMapping:
    event_set: EventSetRef
    mapping: MappingInput


@dataclass(frozen=True)
class UpdateMapping:
    """Replaces the mapping (a new version only if something changed). With
    `expected_version`, refused with VersionConflict if it was changed since."""

    mapping_id: int
    mapping: MappingInput
    event_set: EventSetRef | None = None  # given: the mapping must belong to it
    expected_version: int | None = None
    # False: `event_set` must exist but need not own the mapping, which is found by its id
    # alone (the CLI's `mapping set --event-set A --id N`, as it has always behaved).
    must_belong: bool = True


@dataclass(frozen=True)
class SetMappingEnabled:
    mapping_id: int
    enabled: bool | None  # None: the other way round from now (the page's toggle)
    event_set: EventSetRef | None = None


@dataclass(frozen=True)
class DeleteMapping:
    mapping_id: int
    event_set: EventSetRef | None = None


@dataclass(frozen=True)
class ImportMappingYaml:
    """The event set's mappings become the file's; `event_set` defaults to the one the file
    names. Everything is validated first; with `dry_run` nothing is written."""

    text: str
    event_set: EventSetRef | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class ApplyPreset:
    """Creates the preset's mappings the event set lacks (`mapping_presets.apply_preset`)."""

    event_set: EventSetRef
    preset: str = mapping_presets.LEAD_GENERATION


class VersionConflict(InputRejected):
    """The mapping changed since the caller read it (the JSON API answers 409)."""


Outcome = Literal["created", "saved", "unchanged"]


@dataclass(frozen=True)
class MappingSaved:
    mapping: Mapping  # detached, columns loaded
    outcome: Outcome
    summary: str  # `describe_mapping`, e.g. "lead.sold -> Purchase when ... [currency=USD]"
    # Saved, with something to say (a legacy name on a CRM event set): shown as a notice.
    warnings: tuple[FieldError, ...] = ()


@dataclass(frozen=True)
class MappingDeleted:
    mapping_id: int
    event_set_id: int
    summary: str


@dataclass(frozen=True)
class MappingImport:
    event_set: str  # the reference used: the one given, or the file's event_set line
    dry_run: bool
    created: int
    updated: list[int]
    deleted: list[int]
    unchanged: list[int]
    summary: str  # "1 created, 0 updated, 0 deleted, 2 unchanged"
    warnings: tuple[FieldError, ...] = ()  # `mappings.2.event: ...`


@dataclass(frozen=True)
class PresetApplied:
    event_set: str  # its name
    preset: str
    created: list[MappingSaved]
    present: list[MappingSaved]  # already there, left as they are

    @property
    def summary(self) -> str:
        return f"{len(self.created)} created, {len(self.present)} already there"


def _saved(mapping: Mapping, outcome: Outcome, kind: str) -> MappingSaved:
    warnings = tuple(mapping_service.event_name_warnings(mapping.event_name, kind))
    return MappingSaved(mapping, outcome, mapping_service.describe_mapping(mapping), warnings)


def _kind_of(session: Session, mapping: Mapping) -> str:
    owner = session.get(EventSet, mapping.event_set_id)
    return str(owner.kind) if owner is not None else ""


def add_mapping(request: AddMapping, actor: Actor) -> MappingSaved:
    with unit_of_work(actor, requires=Role.EDITOR) as uow:
        owner = load_event_set(uow.session, request.event_set)
        wanted = request.mapping
        created = mapping_service.add_mapping(
            uow.session,
            owner,
            trigger_type=wanted.trigger_type,
            event_name=wanted.event_name,
            conditions=wanted.conditions,
            properties=wanted.properties,
            enabled=wanted.enabled,
            actor=actor.name,
        )
        return _saved(created, "created", owner.kind)


def update_mapping(request: UpdateMapping, actor: Actor) -> MappingSaved:
    with unit_of_work(actor, requires=Role.EDITOR) as uow:
        if request.must_belong:
            saved = load_mapping(uow.session, request.mapping_id, request.event_set)
        else:
            if request.event_set is not None:
                load_event_set(uow.session, request.event_set)
            saved = load_mapping(uow.session, request.mapping_id, None)
        expected = request.expected_version
        if expected is not None and expected != saved.version:
            raise VersionConflict(
                [
                    FieldError(
                        "version",
                        f"mapping {saved.id} is at v{saved.version}, not v{expected}: "
                        "someone changed it; read it again",
                    )
                ]
            )
        version = saved.version
        wanted = request.mapping
        mapping_service.update_mapping(
            uow.session,
            saved,
            trigger_type=wanted.trigger_type,
            event_name=wanted.event_name,
            conditions=wanted.conditions,
            properties=wanted.properties,
            enabled=wanted.enabled,
            actor=actor.name,
        )
        outcome: Outcome = "saved" if saved.version != version else "unchanged"
        return _saved(saved, outcome, _kind_of(uow.session, saved))


def set_mapping_enabled(request: SetMappingEnabled, actor: Actor) -> MappingSaved:
    with unit_of_work(actor, requires=Role.EDITOR) as uow:
        saved = load_mapping(uow.session, request.mapping_id, request.event_set)
        enabled = not saved.enabled if request.enabled is None else request.enabled
        version = saved.version
        mapping_service.update_mapping(uow.session, saved, enabled=enabled, actor=actor.name)
        outcome: Outcome = "saved" if saved.version != version else "unchanged"
        return _saved(saved, outcome, _kind_of(uow.session, saved))


def delete_mapping(request: DeleteMapping, actor: Actor) -> MappingDeleted:
    """Postbacks the mapping produced are kept and still delivered."""
    with unit_of_work(actor, requires=Role.EDITOR) as uow:
        saved = load_mapping(uow.session, request.mapping_id, request.event_set)
        deleted = MappingDeleted(
            saved.id, saved.event_set_id, mapping_service.describe_mapping(saved)
        )
        mapping_service.delete_mapping(uow.session, saved, actor=actor.name)
        return deleted


def import_mapping_yaml(request: ImportMappingYaml, actor: Actor) -> MappingImport:
    with unit_of_work(actor, requires=Role.EDITOR, dry_run=request.dry_run) as uow:
        reference: EventSetRef | None = request.event_set
        if reference is None:
            reference = mapping_yaml.read_document(request.text)[0]
            if not reference:
                raise InputRejected.one("event_set", "the file names none; pass --event-set")
        target = load_event_set(uow.session, reference)
        result = mapping_yaml.import_mappings(
            uow.session, target, request.text, actor=actor.name, dry_run=request.dry_run
        )
        return MappingImport(
            event_set=str(reference),
            dry_run=request.dry_run,
            created=len(result.created),
            updated=[m.id for m in result.updated],
            deleted=list(result.deleted),
            unchanged=[m.id for m in result.unchanged],
            summary=result.summary(),
            warnings=tuple(result.warnings),
        )


def apply_preset(request: ApplyPreset, actor: Actor) -> PresetApplied:
    """Idempotent: a second run creates nothing and writes no audit entry."""
    with unit_of_work(actor, requires=Role.EDITOR) as uow:
        target = load_event_set(uow.session, request.event_set)
        result = mapping_presets.apply_preset(uow.session, target, request.preset, actor=actor.name)
        return PresetApplied(
            event_set=target.name,
            preset=request.preset,
            created=[_saved(m, "created", target.kind) for m in result.created],
            present=[_saved(m, "unchanged", target.kind) for m in result.present],
        )
