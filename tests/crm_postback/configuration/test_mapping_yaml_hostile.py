"""Hostile and odd mapping files (issue 13, items 10 and 11): each one expanded in memory,
answered with megabytes, or ended in a 500 before. Read with bounds now: no anchors or aliases,
bounded nesting, size, entries and error messages, and values PostgreSQL can store."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from crm_postback.commands.manage_mappings import ImportMappingYaml, import_mapping_yaml
from crm_postback.commands.unit_of_work import Actor
from crm_postback.configuration.mapping_yaml import (
    MAX_DEPTH,
    MAX_ERRORS,
    MAX_FILE_BYTES,
    MAX_MAPPINGS,
    MAX_MESSAGE,
    MAX_NODES,
    MAX_NUMBER,
    read_document,
)
from crm_postback.core.errors import FieldError, InputRejected
from models import DEFAULT_WORKSPACE_ID, Mapping, Role
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES

HEAD = "event_set: acme\nmappings:\n"
ENTRY = "- trigger: lead.sold\n  event: Lead\n"


def alias_bomb(levels: int) -> str:
    """A few hundred bytes; `currency` expands to 9**levels strings (the issue's 443 bytes
    answered 52 MB: the expanded value was written back in the message)."""
    lines = [HEAD + ENTRY + "  properties:", "    description: &l0 lol"]
    for level in range(1, levels):
        lines.append(f"    x{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    lines.append(f"    currency: [{', '.join([f'*l{levels - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


def refused(text: str) -> list[FieldError]:
    with pytest.raises(InputRejected) as caught:
        import_mapping_yaml(
            ImportMappingYaml(text, event_set="acme"),
            Actor("cli:test", DEFAULT_WORKSPACE_ID, Role.OWNER),
        )
    return caught.value.errors


def stored_mappings() -> int:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return session.query(Mapping).count()


@pytest.fixture(params=["sqlite_db", "pg_db"])
def acme(request: pytest.FixtureRequest, make_event_set: Callable[..., int]) -> int:
    request.getfixturevalue(request.param)
    return make_event_set(mappings=())


# --- 10. anchors, aliases, size, entries, errors -------------------------------------------


def test_an_alias_bomb_is_refused_before_it_expands() -> None:
    text = alias_bomb(levels=7)
    assert len(text.encode()) < 600
    tracemalloc.start()
    try:
        with pytest.raises(InputRejected) as caught:
            read_document(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [str(e) for e in caught.value.errors] == [
        "file: anchors and aliases (&name, *name) are not accepted (line 6)"
    ]
    assert peak < 1_000_000  # 9**7 strings would be hundreds of megabytes


@pytest.mark.parametrize(
    "text",
    [
        HEAD + "- &first\n  trigger: lead.sold\n  event: Lead\n",  # an anchor alone
        HEAD + "- trigger: &t lead.sold\n  event: Lead\n- trigger: *t\n  event: Contact\n",
        HEAD + ENTRY + "  properties: &p {currency: USD}\n- <<: *p\n  trigger: a.b\n",
    ],
    ids=["anchor", "alias", "merge-key"],
)
def test_any_anchor_or_alias_is_refused(text: str) -> None:
    with pytest.raises(InputRejected, match="anchors and aliases"):
        read_document(text)


def test_nesting_is_bounded_without_a_recursion_error() -> None:
    deep = HEAD + ENTRY + "  when: " + "[" * 100_000 + "]" * 100_000 + "\n"
    with pytest.raises(InputRejected) as caught:
        read_document(deep)
    assert caught.value.errors == [
        FieldError("file", f"lists and mappings nest at most {MAX_DEPTH} deep (line 5)")
    ]
    # What a mapping file needs (a list in a condition, six levels) is far within it.
    ok = HEAD + ENTRY + "  when:\n  - {attribute: state, op: in, value: [CA, NY]}\n"
    assert read_document(ok)[1][0]["when"][0]["value"] == ["CA", "NY"]


def test_a_file_over_the_size_limit_is_refused_unread() -> None:
    text = HEAD + ENTRY + "  properties: {description: '" + "a" * MAX_FILE_BYTES + "'}\n"
    with pytest.raises(InputRejected) as caught:
        read_document(text)
    assert caught.value.errors == [FieldError("file", f"is larger than {MAX_FILE_BYTES} bytes")]
    multibyte = HEAD + "# " + "é" * (MAX_FILE_BYTES // 2 + 1) + "\n"
    with pytest.raises(InputRejected, match="larger than"):
        read_document(multibyte)


def test_at_most_so_many_mappings_in_one_file(acme: int) -> None:
    too_many = HEAD + ENTRY * (MAX_MAPPINGS + 1)
    assert refused(too_many) == [
        FieldError("mappings", f"at most {MAX_MAPPINGS} mappings in one file")
    ]
    assert stored_mappings() == 0


def test_errors_are_bounded_in_number_and_length(acme: int) -> None:
    long_name = "a" * 1000
    entry = f"- trigger: {long_name}\n  event: Lead\n"
    errors = refused(HEAD + entry * 500)
    assert len(errors) == MAX_ERRORS + 1
    assert errors[-1] == FieldError("file", f"{500 - MAX_ERRORS} more problem(s) not shown")
    assert all(len(e.message) <= MAX_MESSAGE for e in errors)
    assert sum(len(str(e)) for e in errors) < 20_000


def test_conditions_per_mapping_are_bounded(acme: int) -> None:
    when = "".join(f"  - x == {n}\n" for n in range(101))
    [error] = refused(HEAD + ENTRY + "  when:\n" + when)
    assert error == FieldError("mappings.0.when", "at most 100 conditions in one mapping")


def test_keys_and_names_from_the_file_are_not_echoed(acme: int) -> None:
    errors = refused(HEAD + ENTRY + "  jane@example.com: 1\n  7: 2\n")
    assert {str(e) for e in errors} == {"mappings.0.<redacted>: is not a known field"}
    [error] = refused("event_set: jane@example.com\nmappings: []\n")
    assert "jane" not in str(error) and error.field == "event_set"
    [error] = refused("event_set: [a, b]\nmappings: []\n")
    assert error == FieldError("event_set", "must be the event set's name")
    [error] = refused("event_set: acme\nmappings: []\njane@example.com: x\n")
    assert error == FieldError("file", "unknown top-level keys: <redacted>")
    [error] = refused(HEAD + ENTRY + "  properties: {currency: 'jane@example.com'}\n")
    assert error == FieldError(
        "mappings.0.properties.currency", "is not a currency TikTok supports"
    )


# --- 11. values that were a bare 500 ------------------------------------------------------


@pytest.mark.parametrize(
    ("properties", "field"),
    [
        ("{content_type: [product]}", "mappings.0.properties.content_type"),
        ("{content_type: {product: 1}}", "mappings.0.properties.content_type"),
        ("{currency: [USD]}", "mappings.0.properties.currency"),
    ],
)
def test_a_list_or_mapping_where_text_belongs_is_refused(
    acme: int, properties: str, field: str
) -> None:
    [error] = refused(HEAD + ENTRY + f"  properties: {properties}\n")
    assert error.field == field
    assert stored_mappings() == 0


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ("  when: [{attribute: x, op: eq, value: .inf}]", "when.0.value", "finite"),
        ("  when: [{attribute: x, op: in, value: [1, .nan]}]", "when.0.value.1", "finite"),
        ("  properties: {value: -.inf, value_from: null}", "properties.value", "finite"),
        ('  properties: {description: "a\\0b"}', "properties.description", "NUL"),
        ('  when: [{attribute: x, op: eq, value: "\\uD800"}]', "when.0.value", "surrogate"),
    ],
)
def test_what_postgresql_cannot_store_is_refused_on_both_backends(
    acme: int, line: str, field: str, message: str
) -> None:
    [error] = refused(HEAD + ENTRY + line + "\n")
    assert error.field == f"mappings.0.{field}" and message in error.message
    assert stored_mappings() == 0


# --- 10/11 (review). numbers PyYAML reads without a limit, escapes, counts, duplicates --------


def long_number(prefix: str) -> str:
    return prefix + "f" * 5000 if prefix == "0x" else prefix + "1" * 5000


@pytest.mark.parametrize(
    "number",
    [long_number("0x"), long_number("0b"), long_number("0"), long_number("-0x"), "1" * 5000],
    ids=["hex", "binary", "octal", "negative-hex", "decimal"],
)
@pytest.mark.parametrize("where", ["id", "condition"])
def test_a_number_too_long_is_refused_naming_its_line(acme: int, number: str, where: str) -> None:
    if where == "id":
        text = HEAD + f"- id: {number}\n  trigger: lead.sold\n  event: Lead\n"
        line = 3
    else:
        text = HEAD + ENTRY + f"  when: [{{attribute: x, op: eq, value: {number}}}]\n"
        line = 5
    assert refused(text) == [
        FieldError("file", f"a number is longer than {MAX_NUMBER} characters (line {line})")
    ]
    assert stored_mappings() == 0


@pytest.mark.parametrize("number", ["1:30", "-1:0:0", "1:30.5", "190:20:30.15"])
def test_a_base_60_number_is_refused(acme: int, number: str) -> None:
    text = HEAD + ENTRY + f"  when: [{{attribute: x, op: eq, value: {number}}}]\n"
    assert refused(text) == [
        FieldError(
            "file", "a number with ':' (base 60) is not accepted; quote it for text (line 5)"
        )
    ]
    assert stored_mappings() == 0


def test_a_long_base_60_number_is_refused_in_bounded_work() -> None:
    # 1:0:0:… of 980 KB took seconds of CPU (PyYAML's base-60 loop is quadratic).
    text = HEAD + "- id: 1" + ":0" * 490_000 + "\n  trigger: lead.sold\n  event: Lead\n"
    assert len(text.encode()) < MAX_FILE_BYTES
    with pytest.raises(InputRejected) as caught:
        read_document(text)
    assert caught.value.errors == [
        FieldError("file", f"a number is longer than {MAX_NUMBER} characters (line 3)")
    ]


def test_numbers_within_the_limit_still_read() -> None:
    longest = "9" * MAX_NUMBER
    text = (
        HEAD + ENTRY + f"  when: [{{attribute: x, op: in, value: [0x1f, 0b11, 017, {longest}]}}]\n"
    )
    assert read_document(text)[1][0]["when"][0]["value"] == [31, 3, 15, int(longest)]


@pytest.mark.parametrize(
    "escape",
    ['"a\\UFFFFFFFF"', '"a\\U00110000"', '!!int ""', '!!int "-"', '!!int "0x"', '!!float ""'],
)
def test_an_escape_beyond_unicode_or_a_tagged_non_number_is_not_valid_yaml(
    acme: int, escape: str
) -> None:
    text = HEAD + ENTRY + f"  properties: {{description: {escape}}}\n"
    [error] = refused(text)
    assert error == FieldError("file", "is not valid YAML at line 5")
    assert "ffff" not in str(error).lower()


def count_composed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    compose = yaml.composer.Composer.compose_node

    def counting(self: yaml.composer.Composer, parent: Any, index: Any) -> Any:
        calls[0] += 1
        return compose(self, parent, index)

    monkeypatch.setattr(yaml.composer.Composer, "compose_node", counting)
    return calls


def test_too_many_mappings_are_refused_while_reading(
    acme: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 333k empty entries (under 1 MB) were all built before the count was checked.
    text = "event_set: acme\nmappings: [" + "[]," * 333_000 + "]\n"
    assert len(text) < MAX_FILE_BYTES
    composed = count_composed(monkeypatch)
    assert refused(text) == [FieldError("mappings", f"at most {MAX_MAPPINGS} mappings in one file")]
    assert composed[0] <= MAX_MAPPINGS + 10
    assert stored_mappings() == 0


@pytest.mark.parametrize(
    "text",
    [
        HEAD + ENTRY + "  when: [" + "1," * 400_000 + "]\n",
        HEAD + ENTRY + "  properties: {" + "a: [],\n" * 140_000 + "}\n",
        "[" + "[]," * 333_000 + "]\n",
    ],
    ids=["long-list", "long-mapping", "top-level-list"],
)
def test_values_in_one_file_are_counted_while_reading(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(text) < MAX_FILE_BYTES
    composed = count_composed(monkeypatch)
    with pytest.raises(InputRejected) as caught:
        read_document(text)
    [error] = caught.value.errors
    assert error.field == "file" and error.message.startswith(
        f"at most {MAX_NODES} values in one file (line "
    )
    assert composed[0] <= MAX_NODES + 1


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("event_set: acme\nmappings: []\nmappings:\n" + ENTRY, 3),
        (HEAD + ENTRY + "  event: Purchase\n", 5),
        (HEAD + ENTRY + "  properties: {currency: USD, currency: EUR}\n", 5),
        (HEAD + ENTRY + "  properties: {1: a, 0x1: b}\n", 5),
    ],
    ids=["top-level", "entry", "properties", "same-number"],
)
def test_a_key_written_twice_is_refused_naming_its_line(acme: int, text: str, line: int) -> None:
    assert refused(text) == [
        FieldError("file", f"a key appears twice in one mapping (line {line})")
    ]
    assert stored_mappings() == 0


def test_an_id_out_of_range_is_not_written_back(acme: int) -> None:
    text = (
        HEAD + "- id: 100000000000000000000000\n  version: 1\n  trigger: lead.sold\n  event: Lead\n"
    )
    [error] = refused(text)
    assert error.field == "mappings.0.id"
    assert "100000000000000000000000" not in error.message
    assert "has no mapping with this id" in error.message
    twice = HEAD + ("- id: 100000000000000000000000\n" + ENTRY.replace("- ", "  ")) * 2
    assert "100000000000000000000000" not in " ".join(str(e) for e in refused(twice))
    import_mapping_yaml(
        ImportMappingYaml(HEAD + ENTRY, event_set="acme"),
        Actor("cli:test", DEFAULT_WORKSPACE_ID, Role.OWNER),
    )
    with session_scope(workspace=ALL_WORKSPACES) as session:
        [saved] = session.query(Mapping).all()
        mapping_id = saved.id
    stale = HEAD + f"- id: {mapping_id}\n  version: 100000000000000000000000\n"
    stale += ENTRY.replace("- ", "  ")
    assert "100000000000000000000000" not in " ".join(str(e) for e in refused(stale))


@pytest.mark.parametrize("date", ["2001-13-40", "2001-12-14", "2001-12-14t21:59:43.10-05:00"])
def test_a_date_is_read_as_text(acme: int, date: str) -> None:
    # PyYAML read these as dates (a bad one raised ValueError: "a number too long to read").
    text = HEAD + ENTRY + f"  when: [{{attribute: day, op: eq, value: {date}}}]\n"
    assert read_document(text)[1][0]["when"][0]["value"] == date
    import_mapping_yaml(
        ImportMappingYaml(text, event_set="acme"),
        Actor("cli:test", DEFAULT_WORKSPACE_ID, Role.OWNER),
    )
    with session_scope(workspace=ALL_WORKSPACES) as session:
        [mapping] = session.query(Mapping).all()
        assert mapping.conditions[0]["value"] == date
