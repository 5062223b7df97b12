"""Property-based fuzzing of the mapping-file reader and the entry validator, up to the body
limit (a file arrives as a body of PUT /admin/api/event-sets/{reference}/mappings.yaml).

read_document returns the entries or refuses with InputRejected; parse_mapping_entry never
raises, it returns the problems, each message short. Work grows about linearly with the file
(tests/bounded_work.py), so nothing like an alias bomb gets through.
"""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from crm_postback.configuration.mapping_yaml import (
    ENTRY_FIELDS,
    parse_mapping_entry,
    read_document,
)
from crm_postback.core.errors import InputRejected
from tests.bounded_work import (  # type: ignore[import-not-found]
    Scaled,
    assert_bounded_work,
    scaled,
)

LONGEST_MESSAGE = 1000
YAML_TOKENS = [
    "\n",
    "  ",
    "- ",
    ": ",
    "[",
    "]",
    "{",
    "}",
    ", ",
    "&a ",
    "*a",
    "? ",
    "|\n",
    ">\n",
    "#",
    "'",
    '"',
    "!!str ",
    "!!python/object:os.system ",
    "<<: ",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "mappings:\n",
    "- trigger: lead.sold\n  event: Purchase\n",
    "  when:\n  - value >= 1\n",
    "  properties: {content_type: [product]}\n",
    "9" * 50,
    "1e309",
    ".nan",
]
PROPERTY_KEYS = [
    "value_from",
    "value",
    "currency",
    "currency_from",
    "order_id_from",
    "content_type",
    "description",
    "other",
]
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def assert_short(errors: list[Any]) -> None:
    for error in errors:
        assert len(error.field) + len(error.message) <= LONGEST_MESSAGE, "a long problem"


def import_dry(text: str) -> str:
    """What an import does before touching the database: read, then check every entry."""
    try:
        _, entries = read_document(text)
    except InputRejected as refused:
        assert_short(refused.errors)
        return "refused"
    for index, raw in enumerate(entries):
        _, errors = parse_mapping_entry(raw, f"mappings.{index}.", index, kind="web")
        assert_short(errors)
    return "read"


@given(shape=scaled(tokens=YAML_TOKENS))
@example(shape=Scaled("mappings:\n", "- trigger: lead.sold\n  event: Purchase\n", ""))
@example(shape=Scaled("mappings:\n", "- {trigger: lead.sold, event: Lead, when: [a == 1]}\n", ""))
@example(shape=Scaled("a: &a [x]\nmappings: [", "*a, ", "]"))  # aliases
@example(shape=Scaled("mappings: ", "[", ""))  # nesting: the composer recurses
@example(shape=Scaled("mappings:\n- trigger: ", "9", "\n"))  # a long integer
@example(shape=Scaled("mappings:\n- event: '", "x", "'\n"))
@settings(max_examples=30, deadline=None)
def test_files_are_read_or_refused_in_bounded_work(shape: Scaled) -> None:
    small, large = shape.small(), shape.large()
    import_dry(small)
    import_dry(large)
    assert_bounded_work(import_dry, small, large, f"mapping file {shape}")
    import_dry(shape.full())


def test_nested_aliases_are_refused() -> None:
    """A few hundred bytes that expand a millionfold wherever the value is walked."""
    levels = ["  - &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"  - &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 7)]
    text = "mappings:\n- trigger: lead.sold\n  event: Purchase\n  when:\n" + "\n".join(levels)
    assert len(text) < 600
    assert import_dry(text) == "refused"


ENTRIES = st.fixed_dictionaries(
    {},
    optional={
        "trigger": st.text(max_size=70) | VALUES,
        "event": st.sampled_from(["Purchase", "purchase", "Lead", "CompletePayment"])
        | st.text(max_size=70)
        | VALUES,
        "enabled": VALUES,
        "id": st.integers() | VALUES,
        "version": st.integers() | VALUES,
        "when": st.lists(st.text(max_size=40) | VALUES, max_size=5) | VALUES,
        "properties": st.dictionaries(st.sampled_from(PROPERTY_KEYS), VALUES) | VALUES,
    },
) | st.dictionaries(st.sampled_from([*ENTRY_FIELDS, "other"]) | st.text(max_size=8), VALUES)


@given(raw=ENTRIES | VALUES)
@example(raw={"trigger": "lead.sold", "event": "Purchase", "properties": {"content_type": ["a"]}})
@example(raw={"trigger": "lead.sold", "event": "Purchase", "properties": {"currency": {"a": 1}}})
@example(raw={"trigger": "lead.sold", "event": "Purchase", "when": [{"attribute": []}]})
@example(raw={"trigger": "lead.sold", "event": "Purchase", "when": ["x in " + "[" * 5000]})
@example(raw={"trigger": "lead.sold", "event": "Purchase", "id": 10**23, "version": 10**23})
@example(raw={"trigger": "lead.sold", "event": "Purchase", "when": "value >= 1"})
@settings(max_examples=300, deadline=None)
def test_entries_are_checked_without_raising(raw: Any) -> None:
    _, errors = parse_mapping_entry(raw, "mappings.0.", 0, kind="crm")
    assert_short(errors)


def grown_entry(place: str, shape: Scaled, count: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"trigger": "lead.sold", "event": "Purchase"}
    if place == "when":
        entry["when"] = [shape.at(1)] * count
    elif place == "properties":
        entry["properties"] = {f"{shape.at(1)}{i}": i for i in range(count)}
    elif place == "keys":
        entry.update({f"{shape.at(1)}{i}": i for i in range(count)})
    else:
        entry[place] = shape.at(count)
    return entry


@given(
    place=st.sampled_from(["when", "properties", "keys", "trigger", "event"]),
    shape=scaled(),
)
@example(place="when", shape=Scaled("", "a == 1", ""))
@settings(max_examples=30, deadline=None)
def test_large_entries_are_checked_in_bounded_work(place: str, shape: Scaled) -> None:
    def check(count: int) -> None:
        _, errors = parse_mapping_entry(grown_entry(place, shape, count), kind="crm")
        assert_short(errors)

    small = max(1, shape.count_for(2_000) // 8)
    check(small)
    assert_bounded_work(check, small, small * 8, f"entry {place} ({shape})")
