"""Trigger -> TikTok events: which mappings match, and the properties each produces."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from crm_postback.tiktok.event_catalogue import SUPPORTED_CURRENCIES
from mappings.rules import Condition, PropertyRules, as_number


class MappingRecord(Protocol):
    id: int
    trigger_type: str
    event_name: str
    conditions: list[dict[str, Any]]
    properties: dict[str, Any]
    enabled: bool
    version: int


@dataclass(frozen=True)
class CompiledMapping:
    id: int
    version: int
    trigger_type: str
    event_name: str
    conditions: tuple[Condition, ...]
    rules: PropertyRules

    @classmethod
    def from_record(cls, record: MappingRecord) -> CompiledMapping:
        return cls(
            id=record.id,
            version=record.version,
            trigger_type=record.trigger_type,
            event_name=record.event_name,
            conditions=tuple(Condition.model_validate(c) for c in record.conditions),
            rules=PropertyRules.model_validate(record.properties or {}),
        )

    def matches(self, trigger_type: str, attributes: dict[str, Any]) -> bool:
        return trigger_type == self.trigger_type and all(
            condition.matches(attributes) for condition in self.conditions
        )


@dataclass(frozen=True)
class MissingAttribute:
    """A property the mapping fills from an attribute this trigger does not have (absent or
    null), so the event goes without it."""

    property: str
    attribute: str

    def describe(self) -> str:
        return (
            f"property {self.property} reads attribute {self.attribute!r}, which the trigger "
            f"does not have: the event goes without {self.property}"
        )


@dataclass(frozen=True)
class ResolvedEvent:
    mapping_id: int
    mapping_version: int
    event_name: str
    properties: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # set when the trigger's attributes cannot fill the properties
    # Properties configured from attributes this trigger lacks (sent without them).
    missing: tuple[MissingAttribute, ...] = ()

    def explain_missing(self, mapping: str | None = None) -> list[str]:
        """One sentence per property left out, naming this event and its mapping (`mapping`
        names it otherwise, e.g. an unsaved one)."""
        source = mapping or f"mapping {self.mapping_id}"
        return [f"{self.event_name} ({source}): {item.describe()}" for item in self.missing]


def compile_mappings(records: Iterable[MappingRecord]) -> list[CompiledMapping]:
    return [_compiled(r) for r in sorted(records, key=lambda r: r.id) if r.enabled]


# Compiled mappings by their full content: an admin's edit changes the key (and the version),
# so an edited mapping is compiled afresh on its next use and the old entry ages out.
_COMPILED: dict[tuple[Any, ...], CompiledMapping] = {}
_COMPILED_LIMIT = 4_096


def _compiled(record: MappingRecord) -> CompiledMapping:
    key = (
        record.id,
        record.version,
        record.trigger_type,
        record.event_name,
        repr(record.conditions),
        repr(record.properties),
    )
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = CompiledMapping.from_record(record)
        if len(_COMPILED) >= _COMPILED_LIMIT:
            _COMPILED.clear()
        _COMPILED[key] = compiled
    return compiled


def resolve(
    trigger_type: str,
    attributes: dict[str, Any],
    mappings: Sequence[CompiledMapping],
    default_currency: str | None = None,
) -> list[ResolvedEvent]:
    """Every matching mapping gives one event; the first mapping wins for a repeated name."""
    resolved: dict[str, ResolvedEvent] = {}
    for mapping in mappings:
        if mapping.event_name in resolved or not mapping.matches(trigger_type, attributes):
            continue
        missing: tuple[MissingAttribute, ...] = ()
        try:
            properties = build_properties(mapping.rules, attributes, default_currency)
            error = None
            missing = missing_attributes(mapping.rules, attributes)
        except ValueError as exc:
            properties, error = {}, str(exc)
        resolved[mapping.event_name] = ResolvedEvent(
            mapping_id=mapping.id,
            mapping_version=mapping.version,
            event_name=mapping.event_name,
            properties=properties,
            error=error,
            missing=missing,
        )
    return list(resolved.values())


def missing_attributes(
    rules: PropertyRules, attributes: dict[str, Any]
) -> tuple[MissingAttribute, ...]:
    """The properties `rules` was told to fill from an attribute that `attributes` lacks (or
    holds null), and that are therefore left out. Only rules set on the mapping count: the
    default `value_from: value` is optional (a Lead has no value), and a fixed `value` is the
    configured fallback of `value_from`."""
    configured = rules.model_fields_set
    missing = []
    if (
        "value_from" in configured
        and rules.value_from
        and rules.value is None
        and attributes.get(rules.value_from) is None
    ):
        missing.append(MissingAttribute("value", rules.value_from))
    if rules.order_id_from and attributes.get(rules.order_id_from) is None:
        missing.append(MissingAttribute("order_id", rules.order_id_from))
    return tuple(missing)


def build_properties(
    rules: PropertyRules, attributes: dict[str, Any], default_currency: str | None
) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    value: float | None = rules.value
    if rules.value_from and attributes.get(rules.value_from) is not None:
        value = as_number(attributes[rules.value_from])
        if value is None:
            raise ValueError(f"attributes.{rules.value_from}: not a number")
    if value is not None:
        properties["value"] = value
        properties["currency"] = _currency(rules, attributes, default_currency)

    if rules.order_id_from and attributes.get(rules.order_id_from) is not None:
        properties["order_id"] = str(attributes[rules.order_id_from])
    if rules.content_type:
        properties["content_type"] = rules.content_type
    if rules.description:
        properties["description"] = rules.description
    return properties


def _currency(rules: PropertyRules, attributes: dict[str, Any], default: str | None) -> str:
    if rules.currency:
        return rules.currency
    if rules.currency_from and attributes.get(rules.currency_from):
        currency = str(attributes[rules.currency_from]).upper()
        if currency not in SUPPORTED_CURRENCIES:
            raise ValueError(
                f"attributes.{rules.currency_from}: {currency!r} is not a currency TikTok supports"
            )
        return currency
    if default:
        return default
    raise ValueError(
        "properties.currency: a value needs a currency; set one on the mapping, "
        "the event set, or send attributes.currency"
    )


def explain_unmapped(trigger_type: str, candidates: Sequence[CompiledMapping]) -> str:
    same_type = [m for m in candidates if m.trigger_type == trigger_type]
    if not same_type:
        return f"no enabled mapping for trigger {trigger_type!r} on this event set"
    conditions = "; ".join(
        " and ".join(c.describe() for c in m.conditions) or "(always)" for m in same_type
    )
    return f"{len(same_type)} mapping(s) for {trigger_type!r}, none matched: {conditions}"
