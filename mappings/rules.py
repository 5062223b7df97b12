"""What an admin writes in a mapping: conditions on trigger attributes and property rules."""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from crm_postback.tiktok.event_catalogue import CONTENT_TYPES, SUPPORTED_CURRENCIES

Operator = Literal["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists"]
NUMERIC_OPERATORS = frozenset({"gt", "gte", "lt", "lte"})
ATTRIBUTE_NAME = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$"
Scalar = str | int | float | bool | None


def as_number(value: object) -> float | None:
    """A number, or a numeric string; None for anything else (bools are not numbers here)."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str):
            number = float(value.strip())
        else:
            return None
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    attribute: str = Field(pattern=ATTRIBUTE_NAME)
    op: Operator
    # Checked even when left out, so that 'gt' without a value is refused as `value`.
    value: Scalar | list[Scalar] = Field(None, validate_default=True)

    @field_validator("value")
    @classmethod
    def _value_fits_operator(
        cls, value: Scalar | list[Scalar], info: ValidationInfo
    ) -> Scalar | list[Scalar]:
        # Named as `value` and never shown: a condition's value may be anything an admin typed.
        op = info.data.get("op")  # absent when the operator itself was refused
        if op in NUMERIC_OPERATORS and as_number(value) is None:
            raise ValueError(f"'{op}' compares numbers; the value is not a number")
        if op in ("in", "not_in") and not isinstance(value, list):
            raise ValueError(f"'{op}' needs a list of values")
        return value

    def matches(self, attributes: dict[str, Any]) -> bool:
        present = self.attribute in attributes and attributes[self.attribute] is not None
        actual = attributes.get(self.attribute)
        if self.op == "exists":
            return present
        if self.op in NUMERIC_OPERATORS:
            left, right = as_number(actual), as_number(self.value)
            if left is None or right is None:
                return False
            return {
                "gt": left > right,
                "gte": left >= right,
                "lt": left < right,
                "lte": left <= right,
            }[self.op]
        if self.op == "eq":
            return present and _same(actual, self.value)
        if self.op == "ne":
            return not (present and _same(actual, self.value))
        options = self.value if isinstance(self.value, list) else [self.value]
        found = present and any(_same(actual, option) for option in options)
        return found if self.op == "in" else not found

    def describe(self) -> str:
        symbol = {
            "eq": "==",
            "ne": "!=",
            "gt": ">",
            "gte": ">=",
            "lt": "<",
            "lte": "<=",
            "in": "in",
            "not_in": "not in",
        }
        if self.op == "exists":
            return f"{self.attribute} exists"
        return f"{self.attribute} {symbol[self.op]} {json.dumps(self.value)}"


def _same(actual: object, expected: object) -> bool:
    left, right = as_number(actual), as_number(expected)
    if left is not None and right is not None and not isinstance(actual, str | bool):
        return left == right
    return str(actual) == str(expected)


MAX_CONDITION_LENGTH = 2000
MAX_CONDITION_NESTING = 4  # brackets in a value; a valid one has at most one list
_ATTRIBUTE_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_ATTRIBUTE_REST = _ATTRIBUTE_START | frozenset("0123456789.-")
_SYMBOL_OPERATORS: tuple[tuple[str, Operator], ...] = (
    ("==", "eq"),
    ("!=", "ne"),
    (">=", "gte"),
    ("<=", "lte"),
    (">", "gt"),
    ("<", "lt"),
)
_SHAPE = (
    "condition: expected '<attribute> <op> <value>' with op one of "
    "==, !=, >, >=, <, <=, in, not in, exists"
)


def parse_condition(text: str) -> Condition:
    """`buyer_id == "B17"`, `value >= 50`, `state in ["CA","NY"]`, `offer_id exists`.

    A scan from left to right (no pattern that could backtrack): time linear in the text,
    which is capped at MAX_CONDITION_LENGTH, and values nest at most MAX_CONDITION_NESTING
    brackets deep. Errors name the problem, not the text.
    """
    if len(text) > MAX_CONDITION_LENGTH:
        raise ValueError(f"condition: longer than {MAX_CONDITION_LENGTH} characters")
    text = text.strip()
    end = 0
    if text[:1] in _ATTRIBUTE_START:
        end = 1
        while end < len(text) and text[end] in _ATTRIBUTE_REST:
            end += 1
    if not end:
        raise ValueError(_SHAPE)
    operator = _operator(text, _skip_space(text, end))
    if operator is None:
        # As the pattern this replaces read it: a word operator right after a "." or "-"
        # ends the name there ("offer.exists" is "offer." exists).
        for cut in range(end - 1, 0, -1):
            if text[cut - 1] in ".-" and (operator := _operator(text, cut)) is not None:
                end = cut
                break
        else:
            raise ValueError(_SHAPE)
    attribute = text[:end]
    op, op_text, after = operator
    raw_value = text[after:].strip()
    if "\n" in raw_value:
        raise ValueError(_SHAPE)
    value: Any = None
    if op != "exists":
        if not raw_value:
            raise ValueError(f"condition: missing value after '{op_text}'")
        if _nesting(raw_value) > MAX_CONDITION_NESTING:
            raise ValueError(
                f"condition: the value nests brackets deeper than {MAX_CONDITION_NESTING} "
                "levels; give one value or a list of values"
            )
        try:
            value = json.loads(raw_value)
        except json.JSONDecodeError:
            value = raw_value
    return Condition(attribute=attribute, op=op, value=value)


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


def _word_at(text: str, position: int, word: str) -> bool:
    """`word` at `position`, not followed by a letter, digit or "_" (a regex `\\bword\\b`)."""
    if not text.startswith(word, position):
        return False
    following = position + len(word)
    return following == len(text) or not (text[following].isalnum() or text[following] == "_")


def _operator(text: str, position: int) -> tuple[Operator, str, int] | None:
    """(operator, as written, where its value starts), or None."""
    for symbol, op in _SYMBOL_OPERATORS:
        if text.startswith(symbol, position):
            return op, symbol, position + len(symbol)
    if _word_at(text, position, "in"):
        return "in", "in", position + 2
    if _word_at(text, position, "exists"):
        return "exists", "exists", position + 6
    if _word_at(text, position, "not"):
        after_not = _skip_space(text, position + 3)
        if after_not > position + 3 and _word_at(text, after_not, "in"):
            return "not_in", "not in", after_not + 2
    return None


def _nesting(value: str) -> int:
    """How deep brackets nest outside JSON strings (a JSON reader recurses once per level)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in value:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


class PropertyRules(BaseModel):
    """How `properties` is filled. Attribute names refer to the trigger's attributes."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    value_from: str | None = Field("value", pattern=ATTRIBUTE_NAME)
    value: float | None = Field(None, description="A fixed value, used when value_from is absent")
    currency: str | None = Field(None, description="A fixed currency, overriding the trigger's")
    currency_from: str | None = Field("currency", pattern=ATTRIBUTE_NAME)
    order_id_from: str | None = Field(None, pattern=ATTRIBUTE_NAME)
    content_type: str | None = None
    description: str | None = Field(None, max_length=200)

    def describe(self) -> list[tuple[str, bool, str]]:
        """(property, comes from an attribute?, attribute name or fixed value), for display."""
        parts: list[tuple[str, bool, str]] = []
        if self.value_from:
            parts.append(("value", True, self.value_from))
        if self.value is not None:
            parts.append(("value", False, f"{self.value:g}"))
        if self.currency:
            parts.append(("currency", False, self.currency))
        elif self.currency_from:
            parts.append(("currency", True, self.currency_from))
        if self.order_id_from:
            parts.append(("order_id", True, self.order_id_from))
        if self.content_type:
            parts.append(("content_type", False, self.content_type))
        if self.description:
            parts.append(("description", False, self.description))
        return parts

    @model_validator(mode="after")
    def _known_codes(self) -> PropertyRules:
        if self.currency is not None:
            self.currency = self.currency.upper()
            if self.currency not in SUPPORTED_CURRENCIES:
                raise ValueError(f"currency {self.currency!r} is not one TikTok supports")
        if self.content_type is not None and self.content_type not in CONTENT_TYPES:
            raise ValueError(f"content_type must be one of {sorted(CONTENT_TYPES)}")
        return self
