"""Trigger -> events: which mappings fire and which properties they produce."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import ValidationError

from mappings.resolve import (
    CompiledMapping,
    MissingAttribute,
    ResolvedEvent,
    build_properties,
    compile_mappings,
    missing_attributes,
    resolve,
)
from mappings.rules import Condition, PropertyRules


@dataclass
class Record:
    """Stand-in for models.Mapping (the MappingRecord protocol)."""

    id: int
    trigger_type: str = "lead.sold"
    event_name: str = "lead_sold"
    conditions: list[dict[str, Any]] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    version: int = 1


def _resolve(
    records: list[Record],
    attributes: dict[str, Any],
    trigger_type: str = "lead.sold",
    default_currency: str | None = None,
) -> list[ResolvedEvent]:
    return resolve(trigger_type, attributes, compile_mappings(records), default_currency)


def _one(
    properties: dict[str, Any], attributes: dict[str, Any], default_currency: str | None = None
) -> ResolvedEvent:
    events = _resolve(
        [Record(1, properties=properties)], attributes, default_currency=default_currency
    )
    assert len(events) == 1
    return events[0]


# --- compile_mappings ------------------------------------------------------------------------


def test_compile_sorts_by_id_and_skips_disabled() -> None:
    compiled = compile_mappings(
        [Record(3, event_name="c"), Record(1, event_name="a"), Record(2, enabled=False)]
    )
    assert [m.id for m in compiled] == [1, 3]
    assert [m.event_name for m in compiled] == ["a", "c"]


def test_compile_parses_conditions_and_rules() -> None:
    [compiled] = compile_mappings(
        [
            Record(
                7,
                version=4,
                conditions=[{"attribute": "buyer_id", "op": "eq", "value": "B17"}],
                properties={"currency": "eur", "order_id_from": "offer_id"},
            )
        ]
    )
    assert isinstance(compiled, CompiledMapping)
    assert compiled.version == 4
    assert compiled.conditions == (Condition(attribute="buyer_id", op="eq", value="B17"),)
    assert compiled.rules.currency == "EUR"
    assert compiled.rules.order_id_from == "offer_id"


def test_compile_tolerates_empty_properties() -> None:
    record = Record(1)
    record.properties = None  # type: ignore[assignment]
    [compiled] = compile_mappings([record])
    assert compiled.rules == PropertyRules()


def test_compile_rejects_invalid_stored_condition() -> None:
    with pytest.raises(ValidationError):
        compile_mappings([Record(1, conditions=[{"attribute": "v", "op": "gt", "value": "x"}])])


# --- which mappings fire ---------------------------------------------------------------------


def test_no_mapping_gives_no_events() -> None:
    assert _resolve([], {"buyer_id": "B17"}) == []


def test_other_trigger_type_gives_no_events() -> None:
    assert _resolve([Record(1, trigger_type="lead.sold")], {}, trigger_type="offer.click") == []


def test_disabled_mapping_does_not_fire() -> None:
    assert _resolve([Record(1, enabled=False)], {}) == []


@pytest.mark.parametrize(("buyer_id", "fires"), [("B17", True), ("B18", False), (None, False)])
def test_condition_selects(buyer_id: str | None, fires: bool) -> None:
    record = Record(1, conditions=[{"attribute": "buyer_id", "op": "eq", "value": "B17"}])
    attributes = {} if buyer_id is None else {"buyer_id": buyer_id}
    events = _resolve([record], attributes)
    assert [e.event_name for e in events] == (["lead_sold"] if fires else [])


def test_all_conditions_must_hold() -> None:
    record = Record(
        1,
        conditions=[
            {"attribute": "buyer_id", "op": "eq", "value": "B17"},
            {"attribute": "value", "op": "gte", "value": 50},
        ],
    )
    assert _resolve([record], {"buyer_id": "B17", "value": "49"}, default_currency="USD") == []
    assert len(_resolve([record], {"buyer_id": "B17", "value": "50"}, default_currency="USD")) == 1


def test_several_mappings_give_several_events() -> None:
    records = [
        Record(1, event_name="lead_sold"),
        Record(2, event_name="Purchase"),
        Record(
            3, event_name="big_sale", conditions=[{"attribute": "value", "op": "gt", "value": 100}]
        ),
    ]
    events = _resolve(records, {"value": 150, "currency": "USD"})
    assert [(e.mapping_id, e.event_name) for e in events] == [
        (1, "lead_sold"),
        (2, "Purchase"),
        (3, "big_sale"),
    ]
    assert all(e.error is None for e in events)
    small = _resolve(records, {"value": 10, "currency": "USD"})
    assert [e.event_name for e in small] == ["lead_sold", "Purchase"]


def test_duplicate_event_name_lowest_id_wins() -> None:
    records = [
        Record(9, event_name="lead_sold", version=2, properties={"value": 9, "currency": "USD"}),
        Record(4, event_name="lead_sold", version=5, properties={"value": 4, "currency": "USD"}),
    ]
    events = _resolve(records, {})
    assert len(events) == 1
    assert events[0].mapping_id == 4
    assert events[0].mapping_version == 5
    assert events[0].properties["value"] == 4


def test_duplicate_event_name_falls_through_to_next_matching_mapping() -> None:
    records = [
        Record(1, conditions=[{"attribute": "buyer_id", "op": "eq", "value": "B17"}]),
        Record(2),
    ]
    assert [e.mapping_id for e in _resolve(records, {"buyer_id": "B99"})] == [2]
    assert [e.mapping_id for e in _resolve(records, {"buyer_id": "B17"})] == [1]


# --- properties ------------------------------------------------------------------------------


def test_value_from_default_attribute() -> None:
    event = _one({}, {"value": "42.5", "currency": "usd"})
    assert event.properties == {"value": 42.5, "currency": "USD"}
    assert isinstance(event.properties["value"], float)
    assert event.error is None


def test_value_from_named_attribute() -> None:
    event = _one({"value_from": "payout"}, {"payout": 12, "value": 999, "currency": "EUR"})
    assert event.properties["value"] == 12.0


def test_zero_value_is_kept() -> None:
    assert _one({}, {"value": 0, "currency": "USD"}).properties == {"value": 0.0, "currency": "USD"}


def test_static_value_used_when_attribute_absent() -> None:
    event = _one({"value": 25, "currency": "USD"}, {})
    assert event.properties == {"value": 25.0, "currency": "USD"}


def test_attribute_value_beats_static_value() -> None:
    event = _one({"value": 25, "currency": "USD"}, {"value": 30})
    assert event.properties["value"] == 30.0


def test_static_value_used_when_attribute_is_none() -> None:
    assert _one({"value": 25, "currency": "USD"}, {"value": None}).properties["value"] == 25.0


@pytest.mark.parametrize(
    ("rules", "attributes", "default", "currency"),
    [
        ({"currency": "GBP"}, {"value": 1, "currency": "EUR"}, "USD", "GBP"),  # mapping const
        ({}, {"value": 1, "currency": "eur"}, "USD", "EUR"),  # trigger attribute
        ({}, {"value": 1}, "USD", "USD"),  # event set default
        ({}, {"value": 1, "currency": ""}, "JPY", "JPY"),  # empty attribute ignored
        ({"currency_from": "cur"}, {"value": 1, "cur": "cad", "currency": "EUR"}, None, "CAD"),
        ({"currency_from": None}, {"value": 1, "currency": "EUR"}, "USD", "USD"),
    ],
)
def test_currency_precedence(
    rules: dict[str, Any], attributes: dict[str, Any], default: str | None, currency: str
) -> None:
    event = _one(rules, attributes, default_currency=default)
    assert event.error is None
    assert event.properties["currency"] == currency


def test_value_without_any_currency_is_an_error() -> None:
    event = _one({}, {"value": 10})
    assert event.error is not None
    assert "properties.currency" in event.error
    assert event.properties == {}
    assert event.event_name == "lead_sold"
    assert event.mapping_id == 1


def test_unsupported_currency_attribute_is_an_error() -> None:
    event = _one({}, {"value": 10, "currency": "XYZ"}, default_currency="USD")
    assert event.error is not None
    assert "attributes.currency" in event.error
    assert event.properties == {}


@pytest.mark.parametrize("bad", ["abc", "$10", True])
def test_non_numeric_value_attribute_is_an_error(bad: object) -> None:
    event = _one({"value_from": "payout"}, {"payout": bad, "currency": "USD"})
    assert event.error is not None
    assert "attributes.payout" in event.error
    assert event.properties == {}


def test_error_in_one_mapping_does_not_block_others() -> None:
    records = [
        Record(1, event_name="with_value"),
        Record(2, event_name="no_value", properties={"value_from": None}),
    ]
    events = _resolve(records, {"value": 10})
    by_name = {e.event_name: e for e in events}
    assert by_name["with_value"].error is not None
    assert by_name["no_value"].error is None
    assert by_name["no_value"].properties == {}


@pytest.mark.parametrize(("offer_id", "order_id"), [(991, "991"), ("offer-991", "offer-991")])
def test_order_id_from_offer_id_is_a_string(offer_id: object, order_id: str) -> None:
    event = _one({"order_id_from": "offer_id"}, {"offer_id": offer_id})
    assert event.properties == {"order_id": order_id}
    assert isinstance(event.properties["order_id"], str)


def test_order_id_omitted_when_attribute_missing() -> None:
    assert "order_id" not in _one({"order_id_from": "offer_id"}, {}).properties


def test_content_type_and_description() -> None:
    event = _one({"content_type": "product", "description": "sold to buyer X"}, {})
    assert event.properties == {"content_type": "product", "description": "sold to buyer X"}


@pytest.mark.parametrize("default", [None, "USD"])
def test_no_currency_emitted_without_value(default: str | None) -> None:
    event = _one({"currency": "EUR", "order_id_from": "offer_id"}, {"offer_id": 5}, default)
    assert event.error is None
    assert event.properties == {"order_id": "5"}
    assert "currency" not in event.properties


def test_full_properties_match_reference_payload() -> None:
    event = _one(
        {"order_id_from": "offer_id", "description": "sold to buyer X"},
        {"value": "42.5", "currency": "USD", "offer_id": "offer-991"},
    )
    assert event.properties == {
        "value": 42.5,
        "currency": "USD",
        "order_id": "offer-991",
        "description": "sold to buyer X",
    }


def test_build_properties_directly() -> None:
    rules = PropertyRules(value=5, currency="usd", content_type="product_group")
    assert build_properties(rules, {}, None) == {
        "value": 5.0,
        "currency": "USD",
        "content_type": "product_group",
    }
    with pytest.raises(ValueError, match=r"properties\.currency"):
        build_properties(PropertyRules(), {"value": 1}, None)


@pytest.mark.parametrize("bad", ["NaN", "inf"])
def test_non_finite_value_attribute_is_an_error(bad: str) -> None:
    event = _one({}, {"value": bad, "currency": "USD"})
    assert event.error is not None
    assert "attributes.value" in event.error


def test_compiled_once_per_content_and_again_after_an_edit() -> None:
    record = Record(7, conditions=[{"attribute": "value", "op": "gt", "value": 5}])
    [first] = compile_mappings([record])
    [again] = compile_mappings(
        [Record(7, conditions=[{"attribute": "value", "op": "gt", "value": 5}])]
    )
    assert again is first  # cached: no second validation of the same mapping
    record.conditions = [{"attribute": "value", "op": "gt", "value": 50}]
    record.version = 2
    [edited] = compile_mappings([record])
    assert edited is not first and edited.version == 2
    assert not edited.matches("lead.sold", {"value": 20}) and first.matches(
        "lead.sold", {"value": 20}
    )
    # A change that bypassed the version (a manual SQL edit) is still seen.
    record.properties = {"value": 1}
    [unversioned] = compile_mappings([record])
    assert unversioned.rules.value == 1


# --- rules that read an attribute the trigger does not have ------------------------------------


def test_a_value_rule_reading_a_missing_attribute_says_so() -> None:
    """`value_from: payout` with no payout: the event goes without properties, and says why."""
    event = _one({"value_from": "payout", "currency": "USD"}, {"buyer_id": "B17"})
    assert event.properties == {}
    assert event.error is None
    assert event.missing == (MissingAttribute("value", "payout"),)
    assert "payout" in event.missing[0].describe()


def test_a_null_attribute_is_as_missing_as_an_absent_one() -> None:
    event = _one({"value_from": "payout", "order_id_from": "offer"}, {"payout": None})
    assert event.missing == (
        MissingAttribute("value", "payout"),
        MissingAttribute("order_id", "offer"),
    )


@pytest.mark.parametrize(
    ("properties", "attributes"),
    [
        ({}, {}),  # the default rules (value, currency) are optional: a Lead has no value
        ({"currency": "USD"}, {"buyer_id": "B17"}),
        ({"value_from": "payout", "value": 5, "currency": "USD"}, {}),  # the fixed fallback
        ({"value_from": "payout", "currency": "USD"}, {"payout": 12}),
        ({"order_id_from": "offer"}, {"offer": "O-1"}),
    ],
)
def test_nothing_is_said_when_nothing_configured_was_dropped(
    properties: dict[str, Any], attributes: dict[str, Any]
) -> None:
    assert _one(properties, attributes).missing == ()


def test_missing_attributes_directly() -> None:
    rules = PropertyRules.model_validate({"value_from": "payout", "order_id_from": "offer"})
    assert missing_attributes(rules, {"offer": "O-1"}) == (MissingAttribute("value", "payout"),)
    assert missing_attributes(PropertyRules(), {}) == ()
