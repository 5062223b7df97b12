"""Property-based fuzzing of the trigger and lead schemas, up to the body limit.

A document grown from a small generated shape (one field's text, a list of keys, many
attributes, a long number) goes through what the door does with it: the storable-text check
(unstorable_values), the lead id as a URL path gives it (parse_lead_ref), TriggerIn, LeadUpsert
and MatchKeys (model_validate), then hash_match_keys. Each either accepts it or refuses it with
ValidationError / InputRejected (never another exception, such as OverflowError), and the work
grows about linearly with the document (tests/bounded_work.py).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from crm_postback.core import jsontext
from crm_postback.core.errors import InputRejected
from crm_postback.intake.lead_keys import hash_match_keys
from crm_postback.intake.trigger_schemas import (
    LeadUpsert,
    MatchKeys,
    TriggerIn,
    parse_lead_ref,
    unstorable_values,
)
from tests.bounded_work import (  # type: ignore[import-not-found]
    BODY_LIMIT,
    FACTOR,
    SMALL_SIZE,
    Scaled,
    assert_bounded_work,
    scaled,
)

BASE: dict[str, Any] = {
    "type": "lead.sold",
    "lead_id": "L-1",
    "event_set": "acme",
    "occurred_at": "2024-01-01T00:00:00Z",
    "attributes": {"value": 10, "currency": "USD"},
    "match_keys": {"email": "jane@example.com", "phone": "+12133734253"},
    "idempotency_key": "k-1",
}
TEXT_PLACES = [
    "type",
    "lead_id",
    "event_set",
    "occurred_at",
    "idempotency_key",
    "match_keys.ttclid",
    "match_keys.ttp",
    "match_keys.email",
    "match_keys.phone",
    "match_keys.external_id",
    "match_keys.ip",
    "match_keys.user_agent",
    "match_keys.tiktok_lead_id",
    "attributes.note",
    "attributes.value",
    "attributes.currency",
]
LIST_PLACES = ["match_keys.email", "match_keys.phone", "match_keys.external_id"]
NUMBER_PLACES = ["occurred_at", "attributes.value", "lead_id", "match_keys.phone"]
# Python refuses to read or write an int of more than 4,300 digits; JSON bodies cannot hold one.
MAX_DIGITS = 4300


def with_value(place: str, value: Any) -> dict[str, Any]:
    document = copy.deepcopy(BASE)
    *parents, name = place.split(".")
    target = document
    for parent in parents:
        target = target[parent]
    target[name] = value
    return document


def size_of(document: Any) -> int:
    text = json.dumps(document, ensure_ascii=False, default=str)
    return len(text.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class Grown:
    """A document that grows linearly with `count`."""

    label: str
    build: Callable[[int], Any] = field(repr=False, compare=False)
    max_count: int | None = None

    def count_for(self, size: int) -> int:
        one, two = size_of(self.build(1)), size_of(self.build(2))
        each = max(1, two - one)
        count = max(1, (size - (one - each)) // each)
        return min(count, self.max_count) if self.max_count else count

    def small(self) -> Any:
        return self.build(self.count_for(SMALL_SIZE))

    def large(self) -> Any:
        return self.build(self.count_for(SMALL_SIZE) * FACTOR)

    def full(self) -> Any:
        return self.build(self.count_for(BODY_LIMIT))


def text_at(place: str, shape: Scaled) -> Grown:
    return Grown(f"{place} = {shape}", lambda n: with_value(place, shape.at(n)))


def list_at(place: str, shape: Scaled) -> Grown:
    return Grown(f"{place} = [{shape.at(1)!r}, …]", lambda n: with_value(place, [shape.at(1)] * n))


def many_attributes(shape: Scaled) -> Grown:
    def build(n: int) -> dict[str, Any]:
        names = (f"a{i}" if i % 2 else shape.at(1) + str(i) for i in range(n))
        return with_value("attributes", {name: shape.at(1) for name in names})

    return Grown(f"attributes: many of {shape}", build)


@st.composite
def documents(draw: st.DrawFn) -> Grown:
    kind = draw(st.sampled_from(["text", "list", "attributes"]))
    shape = draw(scaled())
    if kind == "text":
        return text_at(draw(st.sampled_from(TEXT_PLACES)), shape)
    if kind == "list":
        return list_at(draw(st.sampled_from(LIST_PLACES)), shape)
    return many_attributes(shape)


def through_the_door(document: Any) -> str:
    """What intake does with a document; "refused" for the documented refusals."""
    lead = {"lead_id": document.get("lead_id"), "match_keys": document.get("match_keys")}
    outcome = "accepted"
    if unstorable_values(document):
        outcome = "refused"
    if isinstance(lead["lead_id"], str):  # as a URL path gives it
        try:
            parse_lead_ref(lead["lead_id"])
        except InputRejected:
            outcome = "refused"
    for model, part in ((TriggerIn, document), (LeadUpsert, lead), (MatchKeys, lead["match_keys"])):
        try:
            parsed = model.model_validate(part)
        except ValidationError:
            outcome = "refused"
            continue
        if isinstance(parsed, TriggerIn):
            jsontext.dumps_bytes(parsed.attributes)  # what is stored can be written
        keys = parsed if isinstance(parsed, MatchKeys) else parsed.match_keys
        if keys is not None:
            try:
                hash_match_keys(keys, "US")
            except InputRejected:
                outcome = "refused"
    return outcome


@given(grown=documents())
@example(grown=text_at("match_keys.email", Scaled("a@", ".", "@")))
@example(grown=text_at("match_keys.email", Scaled("", "a@b.", "")))
@example(grown=text_at("attributes.note", Scaled("a@", "a.", "@")))
@example(grown=text_at("attributes.note", Scaled("", "a@a.", "")))
@example(grown=text_at("match_keys.phone", Scaled("+1", "2", "")))
@example(grown=text_at("occurred_at", Scaled("2024-01-01T00:00:00", "0", "Z")))
@example(grown=text_at("type", Scaled("a", ".", "A")))
@example(grown=many_attributes(Scaled("", "x", "")))
@example(grown=list_at("match_keys.email", Scaled("", "j@example.com", "")))
@settings(max_examples=30, deadline=None)
def test_documents_are_accepted_or_refused_in_bounded_work(grown: Grown) -> None:
    small, large = grown.small(), grown.large()
    through_the_door(small)
    through_the_door(large)
    assert_bounded_work(through_the_door, small, large, grown.label)
    through_the_door(grown.full())


def test_long_numbers_are_accepted_or_refused_in_bounded_work() -> None:
    for place in NUMBER_PLACES:
        for sign in (1, -1):
            small = with_value(place, sign * int("9" * (MAX_DIGITS // FACTOR)))
            large = with_value(place, sign * int("9" * MAX_DIGITS))
            through_the_door(small)
            assert_bounded_work(through_the_door, small, large, f"{place} = {sign}·9…9")


@given(
    place=st.sampled_from(["occurred_at", "attributes.value", "match_keys.email", "lead_id"]),
    value=st.one_of(
        st.floats(),
        st.integers(),
        st.datetimes(),
        st.sampled_from(
            [
                "0001-01-01T00:00:00+14:00",
                "9999-12-31T23:59:59-14:00",
                "0000-00-00T00:00:00Z",
                "1e309",
                "NaN",
                "-Infinity",
                "99999999999999999999",
                "+999999-01-01T00:00:00Z",
            ]
        ),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.text(max_size=8),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner),
            max_leaves=8,
        ),
    ),
)
@example(place="occurred_at", value="0001-01-01T00:00:00+14:00")
@example(place="occurred_at", value=float("inf"))
@example(place="attributes.value", value=10**400)
@settings(max_examples=200, deadline=None)
def test_odd_values_are_accepted_or_refused(place: str, value: Any) -> None:
    through_the_door(with_value(place, value))
