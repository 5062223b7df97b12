"""HTML form fields <-> mapping entries and event set fields; errors keyed by field name."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData

from crm_postback.core.errors import FieldError
from crm_postback.tiktok.event_catalogue import STANDARD_EVENTS
from mappings.rules import Condition, PropertyRules

CUSTOM = "__custom__"
OPERATORS = (
    ("eq", "equals"),
    ("ne", "does not equal"),
    ("in", "is one of"),
    ("not_in", "is none of"),
    ("gt", ">"),
    ("gte", "≥"),
    ("lt", "<"),
    ("lte", "≤"),
    ("exists", "is present"),
)


def scalar(text: str) -> Any:
    """`50` -> 50, `true` -> True, `"50"` -> "50", `B17` -> "B17" (JSON when it parses)."""
    text = text.strip()
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, too deep, or a number too long
        return text
    return value if not isinstance(value, dict | list) else text


def scalar_text(value: Any) -> str:
    if isinstance(value, str):
        return value if scalar(value) == value and value == value.strip() else json.dumps(value)
    return json.dumps(value, ensure_ascii=False)


def value_text(op: str, value: Any) -> str:
    if op == "exists" or (value is None and op not in ("eq", "ne")):
        return ""
    if isinstance(value, list):
        parts = [scalar_text(v) for v in value]
        if any("," in part for part in parts):
            return json.dumps(value, ensure_ascii=False)
        return ", ".join(parts)
    return scalar_text(value)


def parse_value(op: str, text: str) -> Any:
    text = text.strip()
    if op == "exists":
        return None
    if op in ("in", "not_in"):
        if text.startswith("["):
            try:
                loaded = json.loads(text)
            except (ValueError, RecursionError):
                return text  # refused by the rules: 'in' needs a list
            return loaded
        return [scalar(part) for part in text.split(",") if part.strip()]
    return scalar(text)


@dataclass
class ConditionRow:
    attribute: str = ""
    op: str = "eq"
    value: str = ""


@dataclass
class MappingForm:
    """What the mapping form shows (and what was typed, when it is shown again)."""

    trigger: str = ""
    event_choice: str = "Lead"
    event_custom: str = ""
    enabled: bool = True
    rows: list[ConditionRow] = field(default_factory=list)
    value_mode: str = "attribute"
    value_from: str = "value"
    value_fixed: str = ""
    currency_mode: str = "attribute"
    currency_from: str = "currency"
    currency_fixed: str = ""
    order_id_from: str = ""
    content_type: str = ""
    description: str = ""

    @property
    def event_name(self) -> str:
        return self.event_custom.strip() if self.event_choice == CUSTOM else self.event_choice

    @classmethod
    def from_mapping(
        cls,
        trigger_type: str,
        event_name: str,
        enabled: bool,
        conditions: list[dict[str, Any]],
        properties: dict[str, Any],
    ) -> MappingForm:
        rules = PropertyRules.model_validate(properties or {})
        standard = event_name in STANDARD_EVENTS
        form = cls(
            trigger=trigger_type,
            event_choice=event_name if standard else CUSTOM,
            event_custom="" if standard else event_name,
            enabled=enabled,
        )
        for raw in conditions:
            condition = Condition.model_validate(raw)
            form.rows.append(
                ConditionRow(
                    condition.attribute, condition.op, value_text(condition.op, condition.value)
                )
            )
        if rules.value_from:
            form.value_mode, form.value_from = "attribute", rules.value_from
        elif rules.value is not None:
            form.value_mode, form.value_fixed = "fixed", f"{rules.value:g}"
        else:
            form.value_mode = "none"
        if rules.currency:
            form.currency_mode, form.currency_fixed = "fixed", rules.currency
        form.currency_from = rules.currency_from or ""
        form.order_id_from = rules.order_id_from or ""
        form.content_type = rules.content_type or ""
        form.description = rules.description or ""
        return form

    @classmethod
    def from_form(cls, data: FormData) -> MappingForm:
        def text(name: str, default: str = "") -> str:
            value = data.get(name, default)
            return value.strip() if isinstance(value, str) else default

        attributes = data.getlist("cond_attribute")
        ops = data.getlist("cond_op")
        values = data.getlist("cond_value")
        rows = []
        for index, attribute in enumerate(attributes):
            attribute = str(attribute).strip()
            if not attribute:
                continue
            op = str(ops[index]) if index < len(ops) else "eq"
            value = str(values[index]) if index < len(values) else ""
            rows.append(ConditionRow(attribute, op, value.strip()))
        return cls(
            trigger=text("trigger"),
            event_choice=text("event_choice", "Lead"),
            event_custom=text("event_custom"),
            enabled=data.get("enabled") == "on",
            rows=rows,
            value_mode=text("value_mode", "attribute"),
            value_from=text("value_from"),
            value_fixed=text("value_fixed"),
            currency_mode=text("currency_mode", "attribute"),
            currency_from=text("currency_from"),
            currency_fixed=text("currency_fixed"),
            order_id_from=text("order_id_from"),
            content_type=text("content_type"),
            description=text("description"),
        )

    def entry(self) -> tuple[dict[str, Any], list[FieldError]]:
        """The entry `parse_mapping_entry` validates, and errors only the form can find."""
        errors: list[FieldError] = []
        if self.event_choice != CUSTOM and self.event_choice not in STANDARD_EVENTS:
            errors.append(
                FieldError("event", f"{self.event_choice!r} is not a TikTok standard event")
            )
        if self.event_choice == CUSTOM and not self.event_custom.strip():
            errors.append(FieldError("event", "type the custom event's name"))
        properties: dict[str, Any] = {}
        if self.value_mode == "attribute":
            if not self.value_from:
                errors.append(FieldError("properties.value_from", "name the attribute"))
            properties["value_from"] = self.value_from or None
        elif self.value_mode == "fixed":
            properties["value_from"] = None
            try:
                properties["value"] = float(self.value_fixed)
            except ValueError:
                errors.append(FieldError("properties.value", "must be a number, e.g. 25 or 9.99"))
        else:
            properties["value_from"] = None
        if self.currency_mode == "fixed":
            if not self.currency_fixed:
                errors.append(FieldError("properties.currency", "pick a currency"))
            properties["currency"] = self.currency_fixed or None
        properties["currency_from"] = self.currency_from or None
        properties["order_id_from"] = self.order_id_from or None
        properties["content_type"] = self.content_type or None
        properties["description"] = self.description or None
        # The rules' defaults need not be written; None would switch them off.
        for name, default in (("value_from", "value"), ("currency_from", "currency")):
            if properties.get(name) == default:
                del properties[name]
        for name in ("currency", "order_id_from", "content_type", "description"):
            if properties.get(name) is None:
                properties.pop(name, None)
        when = [
            {"attribute": row.attribute, "op": row.op, "value": parse_value(row.op, row.value)}
            for row in self.rows
        ]
        entry = {
            "trigger": self.trigger,
            "event": self.event_name,
            "enabled": self.enabled,
            "when": when,
            "properties": properties,
        }
        return entry, errors


def error_map(errors: list[FieldError]) -> dict[str, str]:
    found: dict[str, str] = {}
    for error in errors:
        found[error.field] = (
            f"{found[error.field]}; {error.message}" if error.field in found else error.message
        )
    return found
