"""Hostile and odd mapping files (issue 13, items 10 and 11): each one expanded in memory,
answered with megabytes, or ended in a 500 before. Read with bounds now: no anchors or aliases,
bounded nesting, size, entries and error messages, and values PostgreSQL can store."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import pytest

from crm_postback.commands.manage_mappings import ImportMappingYaml, import_mapping_yaml
from crm_postback.commands.unit_of_work import Actor
from crm_postback.configuration.mapping_yaml import (
    MAX_DEPTH,
    MAX_ERRORS,
    MAX_FILE_BYTES,
    MAX_MAPPINGS,
    MAX_MESSAGE,
    read_document,
)
from crm_postback.core.errors import FieldError, InputRejected
from models import Mapping
from models.db import session_scope

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
        import_mapping_yaml(ImportMappingYaml(text, event_set="acme"), Actor("cli:test"))
    return caught.value.errors


def stored_mappings() -> int:
    with session_scope() as session:
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


def test_an_integer_too_long_to_read_is_refused(acme: int) -> None:
    text = HEAD + ENTRY + "  when: [{attribute: x, op: eq, value: " + "1" * 5000 + "}]\n"
    assert refused(text) == [FieldError("file", "holds a number too long to read")]


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
