"""Property-based fuzzing of the condition parser and the mapping rules, up to the body limit.

parse_condition reads what an admin types (the edit form, a YAML file, the JSON API), so any
text: it returns a Condition or refuses with ValueError (never RecursionError or another
exception), and its work grows about linearly with the text (tests/bounded_work.py). The
rule models (Condition, PropertyRules) take the same care with the dicts of a JSON body.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mappings.rules import Condition, PropertyRules, as_number, parse_condition
from tests.bounded_work import (  # type: ignore[import-not-found]
    Scaled,
    assert_bounded_work,
    returns_or_refuses,
    scaled,
)

TOKENS = [
    " ",
    "  ",
    "\t",
    "\n",
    "value",
    "a.b",
    "-",
    ".",
    "_",
    "==",
    "!=",
    ">=",
    "<=",
    ">",
    "<",
    "=",
    "!",
    "in",
    "not",
    "not in",
    "exists",
    "[",
    "]",
    "{",
    "}",
    '"',
    "\\",
    ",",
    ":",
    "1",
    "1e309",
    "-0.5",
    "null",
    "true",
    "NaN",
]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def parse(text: str) -> Condition:
    condition = parse_condition(text)
    condition.describe()
    condition.matches({"value": 10, "a.b": "x"})
    return condition


@given(shape=scaled(tokens=TOKENS))
@example(shape=Scaled("", " ", ""))  # only spaces
@example(shape=Scaled("a == x", " ", "y"))  # spaces inside the value: quadratic backtracking
@example(shape=Scaled("a", " ", "== 1"))
@example(shape=Scaled("x in ", "[", ""))  # nesting: RecursionError in the JSON reader
@example(shape=Scaled("x in ", "[", "1" + "]"))
@example(shape=Scaled("x == ", "{", ""))
@example(shape=Scaled("a", ".", "exists"))
@example(shape=Scaled("a", "-", " in [1]"))
@example(shape=Scaled("a", " not", " in [1]"))
@example(shape=Scaled('a == "', "\\", '"'))
@settings(max_examples=40, deadline=None)
def test_parse_condition_returns_or_refuses_in_bounded_work(shape: Scaled) -> None:
    checked = returns_or_refuses(parse, (ValueError,))
    small, large = shape.small(), shape.large()
    checked(small)
    checked(large)
    assert_bounded_work(checked, small, large, f"parse_condition({shape})")
    checked(shape.full())


def condition_with(place: str, shape: Scaled, count: int) -> dict[str, Any]:
    condition: dict[str, Any] = {"attribute": "value", "op": "in", "value": ["a"]}
    if place == "value list":
        condition["value"] = [shape.at(1)] * count
    elif place == "nested list":
        nested: Any = shape.at(1)
        for _ in range(min(count, 900)):  # deeper than a JSON body could carry is moot
            nested = [nested]
        condition["value"] = nested
    else:
        condition[place] = shape.at(count)
    return condition


@pytest.mark.parametrize("place", ["attribute", "op", "value", "value list", "nested list"])
@given(shape=scaled(), op=st.sampled_from(["eq", "ne", "in", "not_in", "gt", "lte", "exists"]))
@example(shape=Scaled("a", "a", "@"), op="eq")
@settings(max_examples=8, deadline=None)
def test_condition_model_returns_or_refuses_in_bounded_work(
    place: str, shape: Scaled, op: str
) -> None:
    def validate(count: int) -> None:
        condition = condition_with(place, shape, count)
        if place != "op":
            condition["op"] = op
        parsed = Condition.model_validate(condition)
        parsed.describe()
        parsed.matches({"value": shape.at(1)})

    checked = returns_or_refuses(validate, (ValidationError,))
    small = shape.count_for(2_000)
    checked(small)
    assert_bounded_work(checked, small, small * 8, f"Condition.{place} ({shape})")
    checked(shape.count_for(5_000_000) if place != "nested list" else 900)


@given(
    rules=st.dictionaries(
        st.sampled_from(
            [
                "value_from",
                "value",
                "currency",
                "currency_from",
                "order_id_from",
                "content_type",
                "description",
                "other",
            ]
        ),
        JSON,
    )
)
@example(rules={"content_type": ["product"]})
@example(rules={"currency": ["USD"]})
@example(rules={"value": 10**400})
@example(rules={"value": "1e309"})
@settings(max_examples=200, deadline=None)
def test_property_rules_return_or_refuse(rules: dict[str, Any]) -> None:
    with contextlib.suppress(ValidationError):
        PropertyRules.model_validate(rules).describe()


@given(value=JSON | st.text(st.sampled_from("0123456789.e+-_ \t")))
@example(value=10**400)
@example(value="1" * 5000)
@example(value=float("nan"))
def test_as_number_never_raises(value: Any) -> None:
    number = as_number(value)
    assert number is None or isinstance(number, float)
