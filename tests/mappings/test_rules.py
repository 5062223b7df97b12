"""Conditions on trigger attributes, their text form, property rules and as_number."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from mappings.rules import Condition, PropertyRules, as_number, parse_condition

# --- as_number -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, 5.0),
        (5.5, 5.5),
        (0, 0.0),
        (-3, -3.0),
        ("50", 50.0),
        (" 12.25 ", 12.25),
        ("-3", -3.0),
        ("1e3", 1000.0),
    ],
)
def test_as_number_numbers_and_numeric_strings(value: object, expected: float) -> None:
    result = as_number(value)
    assert isinstance(result, float)
    assert result == expected


@pytest.mark.parametrize("value", [True, False, None, "", "abc", "50 USD", "$5", [1], {"a": 1}])
def test_as_number_rejects_non_numbers_and_bools(value: object) -> None:
    assert as_number(value) is None


@pytest.mark.parametrize(
    "value",
    ["nan", "NaN", "inf", "-Infinity", float("nan")],
    ids=["nan", "NaN", "inf", "-Infinity", "float-nan"],
)
def test_as_number_rejects_non_finite(value: object) -> None:
    assert as_number(value) is None


# --- Condition.matches -----------------------------------------------------------------------

MATCH_TABLE: list[tuple[str, Any, dict[str, Any], bool]] = [
    # eq
    ("eq", "B17", {"x": "B17"}, True),
    ("eq", "B17", {"x": "B18"}, False),
    ("eq", "B17", {"x": "b17"}, False),
    ("eq", "B17", {}, False),
    ("eq", "B17", {"x": None}, False),
    ("eq", 50, {"x": 50.0}, True),
    ("eq", 50, {"x": "50"}, True),
    ("eq", 17, {"x": "017"}, False),  # ids stay strings: "017" is not 17
    ("eq", True, {"x": True}, True),
    ("eq", True, {"x": 1}, False),  # bool is not a number
    ("eq", 1, {"x": True}, False),
    # ne
    ("ne", "B17", {"x": "B17"}, False),
    ("ne", "B17", {"x": "B18"}, True),
    ("ne", "B17", {}, True),
    ("ne", "B17", {"x": None}, True),
    ("ne", 50, {"x": 50.0}, False),
    # in / not_in
    ("in", ["CA", "NY"], {"x": "CA"}, True),
    ("in", ["CA", "NY"], {"x": "NY"}, True),
    ("in", ["CA", "NY"], {"x": "TX"}, False),
    ("in", ["CA", "NY"], {}, False),
    ("in", ["CA", "NY"], {"x": None}, False),
    ("in", [1, 2], {"x": 2.0}, True),
    ("in", [], {"x": "CA"}, False),
    ("not_in", ["CA"], {"x": "CA"}, False),
    ("not_in", ["CA"], {"x": "TX"}, True),
    ("not_in", ["CA"], {}, True),
    ("not_in", ["CA"], {"x": None}, True),
    # gt / gte / lt / lte
    ("gt", 50, {"x": 51}, True),
    ("gt", 50, {"x": 50}, False),
    ("gt", 50, {"x": "50.01"}, True),
    ("gt", 50, {}, False),
    ("gte", 50, {"x": 50}, True),
    ("gte", 50, {"x": "50"}, True),
    ("gte", 50, {"x": " 50.0 "}, True),
    ("gte", 50, {"x": 49.99}, False),
    ("gte", 50, {"x": "abc"}, False),
    ("gte", 50, {}, False),
    ("gte", 50, {"x": None}, False),
    ("gte", 0, {"x": True}, False),  # bool is not a number
    ("gte", "50", {"x": 60}, True),  # numeric string on the condition side
    ("lt", 50, {"x": 49}, True),
    ("lt", 50, {"x": 50}, False),
    ("lt", 50, {"x": "-1"}, True),
    ("lt", 50, {}, False),
    ("lt", 1, {"x": False}, False),
    ("lte", 50, {"x": 50}, True),
    ("lte", 50, {"x": "50.0"}, True),
    ("lte", 50, {"x": 50.5}, False),
    ("lte", 50, {}, False),
    # exists
    ("exists", None, {"x": "anything"}, True),
    ("exists", None, {"x": ""}, True),
    ("exists", None, {"x": 0}, True),
    ("exists", None, {"x": False}, True),
    ("exists", None, {"x": None}, False),
    ("exists", None, {}, False),
    ("exists", None, {"y": 1}, False),
]


@pytest.mark.parametrize(("op", "value", "attributes", "expected"), MATCH_TABLE)
def test_condition_matches(op: str, value: Any, attributes: dict[str, Any], expected: bool) -> None:
    condition = Condition(attribute="x", op=op, value=value)
    assert condition.matches(attributes) is expected


def test_every_operator_is_covered_by_the_table() -> None:
    ops = {row[0] for row in MATCH_TABLE}
    assert ops == {"eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attribute": "x", "op": "gt", "value": "abc"},
        {"attribute": "x", "op": "gte", "value": None},
        {"attribute": "x", "op": "lt", "value": True},
        {"attribute": "x", "op": "in", "value": "CA"},
        {"attribute": "x", "op": "not_in", "value": None},
        {"attribute": "x", "op": "like", "value": "a"},
        {"attribute": "1x", "op": "eq", "value": "a"},
        {"attribute": "has space", "op": "eq", "value": "a"},
        {"attribute": "x", "op": "eq", "value": "a", "extra": 1},
    ],
)
def test_invalid_condition_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Condition.model_validate(kwargs)


# --- parse_condition -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "attribute", "op", "value"),
    [
        ('buyer_id == "B17"', "buyer_id", "eq", "B17"),
        ("buyer_id == B17", "buyer_id", "eq", "B17"),  # bare word is a string
        ("  buyer_id==B17  ", "buyer_id", "eq", "B17"),
        ('status != "returned"', "status", "ne", "returned"),
        ("value >= 50", "value", "gte", 50),
        ("value>=50", "value", "gte", 50),
        ("value > 12.5", "value", "gt", 12.5),
        ("value < 10", "value", "lt", 10),
        ("value <= 10", "value", "lte", 10),
        ('state in ["CA","NY"]', "state", "in", ["CA", "NY"]),
        ('state not in ["CA"]', "state", "not_in", ["CA"]),
        ('state   not   in   ["CA"]', "state", "not_in", ["CA"]),
        ("offer_id exists", "offer_id", "exists", None),
        ("buyer.tier == gold", "buyer.tier", "eq", "gold"),
        ("sub-id == 7", "sub-id", "eq", 7),
    ],
)
def test_parse_condition(text: str, attribute: str, op: str, value: Any) -> None:
    condition = parse_condition(text)
    assert condition == Condition(attribute=attribute, op=op, value=value)
    assert type(condition.value) is type(value)


def test_parsed_condition_behaves() -> None:
    assert parse_condition("value >= 50").matches({"value": "50"})
    assert not parse_condition("value >= 50").matches({"value": "49"})
    assert parse_condition('state not in ["CA"]').matches({})
    assert parse_condition("buyer_id == B17").matches({"buyer_id": "B17"})
    assert not parse_condition("buyer_id == B17").matches({"buyer_id": "B18"})


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "???",
        "== 5",
        "1abc == 2",
        "value =>  5",
        "value >=",
        "buyer_id ==",
        "value > abc",
        "value <= ten",
        'state in "CA"',
        "state not in CA",
    ],
)
def test_parse_condition_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_condition(text)


def test_numeric_operator_error_explains_the_number() -> None:
    with pytest.raises(ValueError, match="compares numbers"):
        parse_condition("value > abc")


def test_missing_value_error_names_the_operator() -> None:
    with pytest.raises(ValueError, match="missing value"):
        parse_condition("value >=")


# --- describe() ------------------------------------------------------------------------------

DESCRIBED: list[tuple[Condition, str]] = [
    (Condition(attribute="buyer_id", op="eq", value="B17"), 'buyer_id == "B17"'),
    (Condition(attribute="buyer_id", op="ne", value="B17"), 'buyer_id != "B17"'),
    (Condition(attribute="value", op="gte", value=50), "value >= 50"),
    (Condition(attribute="value", op="gt", value=12.5), "value > 12.5"),
    (Condition(attribute="value", op="lt", value=10), "value < 10"),
    (Condition(attribute="value", op="lte", value="10"), 'value <= "10"'),
    (Condition(attribute="state", op="in", value=["CA", "NY"]), 'state in ["CA", "NY"]'),
    (Condition(attribute="state", op="not_in", value=["CA"]), 'state not in ["CA"]'),
    (Condition(attribute="offer_id", op="exists"), "offer_id exists"),
    (Condition(attribute="flag", op="eq", value=True), "flag == true"),
    (Condition(attribute="city", op="eq", value="Zürich"), 'city == "Z\\u00fcrich"'),
]


@pytest.mark.parametrize(("condition", "text"), DESCRIBED)
def test_describe_text(condition: Condition, text: str) -> None:
    assert condition.describe() == text


@pytest.mark.parametrize(("condition", "text"), DESCRIBED)
def test_describe_round_trips_through_parse(condition: Condition, text: str) -> None:
    parsed = parse_condition(condition.describe())
    assert parsed == condition
    assert json.dumps(parsed.value) == json.dumps(condition.value)


# --- PropertyRules ---------------------------------------------------------------------------


def test_property_rules_defaults() -> None:
    rules = PropertyRules()
    assert rules.value_from == "value"
    assert rules.currency_from == "currency"
    assert rules.value is None
    assert rules.currency is None
    assert rules.content_type is None


@pytest.mark.parametrize(("given", "stored"), [("usd", "USD"), ("Eur", "EUR"), ("JPY", "JPY")])
def test_property_rules_currency_uppercased(given: str, stored: str) -> None:
    assert PropertyRules(currency=given).currency == stored


@pytest.mark.parametrize("currency", ["XYZ", "usdollar", "BTC", ""])
def test_property_rules_unsupported_currency(currency: str) -> None:
    with pytest.raises(ValidationError, match="currency"):
        PropertyRules(currency=currency)


@pytest.mark.parametrize("content_type", ["product", "product_group"])
def test_property_rules_content_type_accepted(content_type: str) -> None:
    assert PropertyRules(content_type=content_type).content_type == content_type


@pytest.mark.parametrize("content_type", ["products", "Product", "service", ""])
def test_property_rules_bad_content_type(content_type: str) -> None:
    with pytest.raises(ValidationError, match="content_type"):
        PropertyRules(content_type=content_type)


@pytest.mark.parametrize(
    "data",
    [
        {"value_from": "has space"},
        {"currency_from": "1abc"},
        {"order_id_from": "a$b"},
        {"description": "x" * 201},
        {"value": "fifty"},
        {"unknown": 1},
    ],
)
def test_property_rules_invalid(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PropertyRules.model_validate(data)


# --- parse_condition: bounded work ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "attribute", "op"),
    [
        ("offer.exists", "offer.", "exists"),  # as the pattern it replaced read it
        ("a-in [1]", "a-", "in"),
        ("a-not in [1]", "a-not", "in"),
        ("not in [1]", "not", "in"),
        ("xnot in [1]", "xnot", "in"),
    ],
)
def test_parse_condition_reads_names_ending_in_a_separator_as_before(
    text: str, attribute: str, op: str
) -> None:
    condition = parse_condition(text)
    assert (condition.attribute, condition.op) == (attribute, op)


@pytest.mark.parametrize("text", ["xin [1]", "aexists", "a == 1\n2", "a notin [1]"])
def test_parse_condition_refuses_operators_glued_to_words(text: str) -> None:
    with pytest.raises(ValueError, match="expected '<attribute> <op> <value>'"):
        parse_condition(text)


def test_parse_condition_caps_length_and_nesting_without_echoing() -> None:
    secret = "jane@example.com"
    with pytest.raises(ValueError) as refused:
        parse_condition(f"{secret} == " + " " * 20_000 + "x")
    assert str(refused.value) == "condition: longer than 2000 characters"
    with pytest.raises(ValueError) as refused:
        parse_condition("x in " + "[" * 1_990)  # was a RecursionError
    assert "deeper than 4 levels" in str(refused.value)
    with pytest.raises(ValueError) as refused:
        parse_condition(f"{secret} garbage")
    assert secret not in str(refused.value)
    # Brackets inside a JSON string are text, not nesting.
    assert parse_condition('x in ["[[[[[[", "]]"]').value == ["[[[[[[", "]]"]
    with pytest.raises(ValidationError):  # 4 levels: read, then refused as not a list of values
        parse_condition("x in [[[[1]]]]")


def test_a_long_value_is_cut_in_the_numeric_operator_message() -> None:
    with pytest.raises(ValidationError) as refused:
        Condition(attribute="value", op="gt", value="x" * 500)
    assert "x" * 40 not in str(refused.value)


@pytest.mark.parametrize("op", ["gt", "gte", "lt", "lte"])
@pytest.mark.parametrize("value", ["jane.doe@example.org", "+1 213 373 4253", ["a"], None])
def test_a_numeric_operator_refuses_a_non_number_naming_value_without_echoing_it(
    op: str, value: Any
) -> None:
    with pytest.raises(ValidationError) as refused:
        Condition.model_validate({"attribute": "buyer", "op": op, "value": value})
    [error] = refused.value.errors(include_input=False)
    assert error["loc"] == ("value",)
    assert error["msg"] == f"Value error, '{op}' compares numbers; the value is not a number"
    for text in ("jane", "example", "213", "'a'"):
        assert text not in str(refused.value)


def test_parse_condition_does_not_echo_a_non_number() -> None:
    with pytest.raises(ValueError) as refused:
        parse_condition('value > "jane.doe@example.org"')
    assert "jane" not in str(refused.value) and "compares numbers" in str(refused.value)


def test_in_without_a_list_names_value() -> None:
    with pytest.raises(ValidationError) as refused:
        Condition.model_validate({"attribute": "state", "op": "in", "value": "jane@example.org"})
    [error] = refused.value.errors(include_input=False)
    assert error["loc"] == ("value",) and "jane" not in str(refused.value)
