"""An event set's mappings as YAML, for review in git: export, edit, import (no commit here).

    event_set: acme-crm
    mappings:
    - id: 3
      version: 2
      trigger: lead.sold
      event: lead_sold
      enabled: true
      when:
      - buyer_id == "B17"
      properties:
        currency: USD

Round trip is exact: importing an export changes nothing (no version bump, no audit entry),
and exporting again gives the same text. Import makes the event set's mappings equal to the
file: entries with an `id` update that mapping (refused if its `version` is not the saved
one: someone changed it since the export), entries without one are created, saved mappings
missing from the file are deleted. Everything is validated before anything is written.

A file is read with bounds, as it may come from anyone with an admin token: at most
MAX_FILE_BYTES, MAX_NODES nodes and MAX_MAPPINGS entries (counted while composing), no anchors
or aliases (a few hundred bytes of nested aliases expand to gigabytes), collections nested at
most MAX_DEPTH deep, no key twice in one mapping, numbers of at most MAX_NUMBER characters and
not in base 60, dates as text; of its problems the first MAX_ERRORS are reported, each message
at most MAX_MESSAGE characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.events import AliasEvent, CollectionStartEvent, NodeEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from crm_postback.configuration.event_set_service import CURRENCY_SHAPED
from crm_postback.configuration.mapping_service import (
    MAX_CONDITIONS,
    add_mapping,
    checked_event_name,
    delete_mapping,
    event_name_warnings,
    list_mappings,
    update_mapping,
    validate_mapping,
)
from crm_postback.core.errors import FieldError, InputRejected
from crm_postback.tiktok.event_catalogue import CONTENT_TYPES, SUPPORTED_CURRENCIES
from mappings.rules import Condition, parse_condition
from mappings.validation import MappingError, validate_trigger_type
from models import EventSet, Mapping

ENTRY_FIELDS = ("id", "version", "trigger", "event", "enabled", "when", "properties")
MAX_FILE_BYTES = 1_000_000
MAX_MAPPINGS = 1000
MAX_DEPTH = 20
MAX_NUMBER = 40  # characters of a number (int() of a long one is slow or refused)
MAX_NODES = 50_000  # lists, mappings and values in one file
MAX_ERRORS = 50
MAX_MESSAGE = 300
MAX_ROW_ID = 2**31 - 1  # the largest id or version an INTEGER column holds
# A key named in an error: only plain names (a key can be anything, an email included).
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}")


class FileRefused(yaml.YAMLError):
    """The file uses what this reader does not accept (anchors, aliases, deep nesting, long
    numbers, a key written twice), or holds more than it may; `line` is None for `mappings`."""

    def __init__(self, reason: str, line: int | None, field: str = "file") -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line
        self.field = field


def _line(mark: Any) -> int:
    return mark.line + 1 if mark is not None else 0


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader without anchors and aliases, with bounded nesting (its composer
    recurses once per level), at most MAX_NODES nodes and MAX_MAPPINGS entries in `mappings`
    (counted while composing, before anything is built), numbers of at most MAX_NUMBER
    characters and not in base 60 (PyYAML's int() has no limit, and its base-60 loop is
    quadratic), no key twice in one mapping, and no timestamps (text, as a mapping needs)."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.nodes = 0
        self.entries_next = False  # the next collection is the value of the top-level `mappings`
        self.entries: Node | None = None

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()
        line = _line(event.start_mark)
        if isinstance(event, AliasEvent) or (
            isinstance(event, NodeEvent) and event.anchor is not None
        ):
            raise FileRefused("anchors and aliases (&name, *name) are not accepted", line)
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise FileRefused(f"at most {MAX_NODES} values in one file", line)
        if self.entries_next:
            self.entries_next = False
            if isinstance(parent, SequenceNode) and index == 0:
                self.entries = parent
        if self.entries is not None and parent is self.entries and index >= MAX_MAPPINGS:
            raise FileRefused(f"at most {MAX_MAPPINGS} mappings in one file", None, "mappings")
        if not isinstance(event, CollectionStartEvent):
            return super().compose_node(parent, index)
        self.depth += 1
        is_entries = (
            self.depth == 2
            and isinstance(parent, MappingNode)
            and isinstance(index, ScalarNode)
            and index.value == "mappings"
        )
        try:
            if self.depth > MAX_DEPTH:
                raise FileRefused(f"lists and mappings nest at most {MAX_DEPTH} deep", line)
            self.entries_next = is_entries
            return super().compose_node(parent, index)
        finally:
            self.entries_next = False
            self.depth -= 1

    def _number(self, node: ScalarNode) -> None:
        text = node.value
        if len(text) > MAX_NUMBER:
            raise FileRefused(
                f"a number is longer than {MAX_NUMBER} characters", _line(node.start_mark)
            )
        if ":" in text:
            raise FileRefused(
                "a number with ':' (base 60) is not accepted; quote it for text",
                _line(node.start_mark),
            )

    def construct_yaml_int(self, node: ScalarNode) -> int:
        self._number(node)
        try:
            return int(super().construct_yaml_int(node))
        except (ValueError, IndexError):  # a tagged non-number: !!int "0x", !!int ""
            raise yaml.MarkedYAMLError(problem_mark=node.start_mark) from None

    def construct_yaml_float(self, node: ScalarNode) -> float:
        self._number(node)
        try:
            return float(super().construct_yaml_float(node))
        except (ValueError, IndexError):
            raise yaml.MarkedYAMLError(problem_mark=node.start_mark) from None

    def construct_yaml_timestamp(self, node: ScalarNode) -> str:  # type: ignore[override]
        return str(self.construct_scalar(node))

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        if len(mapping) < len(node.value):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)  # built once, cached
                if key in seen:
                    raise FileRefused(
                        "a key appears twice in one mapping", _line(key_node.start_mark)
                    )
                seen.add(key)
        return mapping


BoundedLoader.add_constructor("tag:yaml.org,2002:int", BoundedLoader.construct_yaml_int)
BoundedLoader.add_constructor("tag:yaml.org,2002:float", BoundedLoader.construct_yaml_float)
# Not resolved implicitly (see yaml_implicit_resolvers); an explicit `!!timestamp` is text too.
BoundedLoader.add_constructor("tag:yaml.org,2002:timestamp", BoundedLoader.construct_yaml_timestamp)


def load_bounded(text: str) -> Any:
    loader = BoundedLoader(text)
    try:
        return loader.get_single_data()
    except (ValueError, OverflowError):
        # What PyYAML's scanner does not check itself, e.g. chr() of a "\UFFFFFFFF" escape.
        raise yaml.MarkedYAMLError(problem_mark=loader.get_mark()) from None
    finally:
        loader.dispose()


def _shown(number: int) -> str:
    """An id or version as named in a message: one no column holds is not written back (the
    bounded form of crm_postback.commands.lookups, which this layer does not import)."""
    return str(number) if 1 <= number <= MAX_ROW_ID else "with this id"


def _version(number: int) -> str:
    return f"v{number}" if 1 <= number <= MAX_ROW_ID else "another version"


def _key_name(key: Any) -> str:
    return key if isinstance(key, str) and _PLAIN_KEY.fullmatch(key) else "<redacted>"


def bounded(errors: list[FieldError]) -> list[FieldError]:
    """The first MAX_ERRORS problems, each message cut to MAX_MESSAGE characters, and a last
    line saying how many more there were."""
    shown = [FieldError(e.field[:MAX_MESSAGE], _cut(e.message)) for e in errors[:MAX_ERRORS]]
    if len(errors) > MAX_ERRORS:
        shown.append(FieldError("file", f"{len(errors) - MAX_ERRORS} more problem(s) not shown"))
    return shown


def _cut(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


def condition_text(condition: dict[str, Any]) -> str | dict[str, Any]:
    """`buyer_id == "B17"` when that text parses back to the same condition, else the dict."""
    parsed = Condition.model_validate(condition)
    text = parsed.describe()
    try:
        if parse_condition(text) == parsed:
            return text
    except (ValueError, ValidationError):
        pass
    return parsed.model_dump()


def export_mappings(event_set: EventSet, mappings: list[Mapping]) -> str:
    entries = []
    for mapping in mappings:
        entry: dict[str, Any] = {
            "id": mapping.id,
            "version": mapping.version,
            "trigger": mapping.trigger_type,
            "event": mapping.event_name,
            "enabled": mapping.enabled,
        }
        if mapping.conditions:
            entry["when"] = [condition_text(c) for c in mapping.conditions]
        if mapping.properties:
            entry["properties"] = dict(mapping.properties)
        entries.append(entry)
    header = (
        f"# Mappings of event set {event_set.name!r} "
        f"({event_set.kind} {event_set.source_id}), exported by crm-postback.\n"
        "# Apply with: postback mapping import FILE  (id + version name a saved mapping;\n"
        "# leave them out for a new one; a saved mapping missing here is deleted)\n"
    )
    body = yaml.safe_dump(
        {"event_set": event_set.name, "mappings": entries},
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )
    return header + body


@dataclass
class ImportResult:
    created: list[Mapping] = field(default_factory=list)
    updated: list[Mapping] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)
    unchanged: list[Mapping] = field(default_factory=list)
    # Saved, with something to say: `mappings.2.event: 'SubmitForm' is a legacy name ...`
    warnings: list[FieldError] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deleted)

    def summary(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.deleted)} deleted, {len(self.unchanged)} unchanged"
        )


@dataclass
class MappingEntry:
    """One mapping as written in a file, a JSON body or the edit form, validated."""

    index: int
    mapping_id: int | None
    version: int | None
    trigger_type: str
    event_name: str
    enabled: bool
    conditions: list[dict[str, Any]]
    properties: dict[str, Any]

    def fields(self) -> dict[str, Any]:
        """The keyword arguments `add_mapping` / `update_mapping` take."""
        return {
            "trigger_type": self.trigger_type,
            "event_name": self.event_name,
            "conditions": self.conditions,
            "properties": self.properties,
            "enabled": self.enabled,
        }


def read_document(text: str) -> tuple[str | None, list[Any]]:
    if len(text) > MAX_FILE_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise InputRejected.one("file", f"is larger than {MAX_FILE_BYTES} bytes")
    try:
        document = load_bounded(text)
    except FileRefused as refused:
        where = f" (line {refused.line})" if refused.line is not None else ""
        raise InputRejected.one(refused.field, refused.reason + where) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputRejected.one("file", f"is not valid YAML{where}") from None
    if not isinstance(document, dict) or not isinstance(document.get("mappings"), list):
        raise InputRejected.one("file", "must be a mapping with a 'mappings' list")
    unknown = [key for key in document if key not in ("event_set", "mappings")]
    if unknown:
        names = ", ".join(sorted({_key_name(key) for key in unknown})[:10])
        raise InputRejected.one("file", f"unknown top-level keys: {names}")
    if len(document["mappings"]) > MAX_MAPPINGS:
        raise InputRejected.one("mappings", f"at most {MAX_MAPPINGS} mappings in one file")
    name = document.get("event_set")
    if name is not None and not isinstance(name, str):
        raise InputRejected.one("event_set", "must be the event set's name")
    return name, document["mappings"]


def _condition(item: Any) -> Condition:
    condition = parse_condition(item) if isinstance(item, str) else Condition.model_validate(item)
    if condition.op not in ("in", "not_in", "exists") and isinstance(condition.value, list):
        raise ValueError(f"'{condition.op}' compares one value; use 'in' for a list")
    # parse_condition ignores what follows 'exists'; a value there is a mistake to report.
    exists_text = isinstance(item, str) and not item.rstrip().endswith("exists")
    if condition.op == "exists" and (condition.value is not None or exists_text):
        raise ValueError("'exists' takes no value")
    if condition.op in ("eq", "ne") and condition.value is None:
        raise ValueError(f"'{condition.op}' needs a value (use 'exists' to test presence)")
    return condition


def _property_errors(properties: dict[str, Any], where: str) -> list[FieldError]:
    """Checks made before PropertyRules, whose own errors would not name the field."""
    errors = []
    currency = properties.get("currency")
    if currency is not None and (
        not isinstance(currency, str) or currency.upper() not in SUPPORTED_CURRENCIES
    ):
        # Named back only when it looks like a currency code: the field takes any text.
        shown = (
            f"{currency!r} "
            if isinstance(currency, str) and CURRENCY_SHAPED.fullmatch(currency)
            else ""
        )
        errors.append(
            FieldError(f"{where}properties.currency", f"{shown}is not a currency TikTok supports")
        )
    content_type = properties.get("content_type")
    if content_type is not None and (
        not isinstance(content_type, str) or content_type not in CONTENT_TYPES
    ):
        errors.append(
            FieldError(
                f"{where}properties.content_type",
                f"must be one of {', '.join(sorted(CONTENT_TYPES))}",
            )
        )
    return errors


def parse_mapping_entry(
    raw: Any, where: str = "", index: int = 0, *, kind: str | None
) -> tuple[MappingEntry | None, list[FieldError]]:
    """Validates one entry ({trigger, event, enabled, when, properties, id, version}) as
    saving on an event set of `kind` would (None: not known yet, the save checks the event
    name for its kind); errors name fields below `where` (e.g. "mappings.2." or "")."""
    errors: list[FieldError] = []
    entry = _parse_entry(raw, where, index, errors, kind)
    return (None if errors else entry), bounded(errors)


def _parse_entry(
    raw: Any,
    where: str,
    index: int,
    errors: list[FieldError],
    kind: str | None,
    saved_names: dict[int, str] | None = None,
) -> MappingEntry | None:
    """`saved_names`: the event names the event set's mappings have now, by id (an entry
    naming one keeps a name saved before its kind refused it: `checked_event_name`)."""
    if not isinstance(raw, dict):
        errors.append(
            FieldError(where.rstrip(".") or "body", "must be a mapping with trigger and event")
        )
        return None
    found_before = len(errors)
    for key in raw:
        if key not in ENTRY_FIELDS:
            errors.append(FieldError(f"{where}{_key_name(key)}", "is not a known field"))
    mapping_id, version = raw.get("id"), raw.get("version")
    for name, value in (("id", mapping_id), ("version", version)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            errors.append(FieldError(f"{where}{name}", "must be an integer"))
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        errors.append(FieldError(f"{where}enabled", "must be true or false"))
    conditions: list[dict[str, Any]] = []
    when = raw.get("when") or []
    if not isinstance(when, list):
        errors.append(FieldError(f"{where}when", "must be a list of conditions"))
        when = []
    elif len(when) > MAX_CONDITIONS:
        errors.append(
            FieldError(f"{where}when", f"at most {MAX_CONDITIONS} conditions in one mapping")
        )
        when = []
    for position, item in enumerate(when):
        try:
            conditions.append(_condition(item).model_dump())
        except ValidationError as error:
            message = "; ".join(
                dict.fromkeys(e["msg"].removeprefix("Value error, ") for e in error.errors())
            )
            errors.append(FieldError(f"{where}when.{position}", message))
        except ValueError as error:
            errors.append(FieldError(f"{where}when.{position}", str(error)))
    properties = raw.get("properties") or {}
    if not isinstance(properties, dict):
        errors.append(FieldError(f"{where}properties", "must be a mapping"))
        properties = {}
    for key in properties:
        if not isinstance(key, str):
            errors.append(FieldError(f"{where}properties.<redacted>", "is not a known field"))
            properties = {}
            break
    errors.extend(_property_errors(properties, where))
    trigger, event = raw.get("trigger"), raw.get("event")
    kept = (saved_names or {}).get(mapping_id) if isinstance(mapping_id, int) else None
    for name, value in (("trigger", trigger), ("event", event)):
        if not isinstance(value, str) or not value.strip():
            errors.append(FieldError(f"{where}{name}", "is required"))
            continue
        try:
            if name == "trigger":
                validate_trigger_type(value.strip())
            else:
                checked_event_name(value.strip(), kind, kept=kept)
        except MappingError as error:
            errors.append(FieldError(f"{where}{name}", error.reason))
        except InputRejected as rejected:
            errors.extend(FieldError(f"{where}{e.field}", e.message) for e in rejected.errors)
    if len(errors) > found_before or not isinstance(trigger, str) or not isinstance(event, str):
        return None
    try:
        trigger, event, conditions, properties = validate_mapping(
            trigger.strip(), event, conditions, properties, kind=kind, kept_name=kept
        )
    except InputRejected as rejected:
        for problem in rejected.errors:
            name = problem.field
            if name.split(".")[0] not in ("trigger", "event", "when", "properties"):
                name = "properties" if name == "body" else f"properties.{name}"
            errors.append(FieldError(f"{where}{name}", problem.message))
        return None
    return MappingEntry(index, mapping_id, version, trigger, event, enabled, conditions, properties)


def import_mappings(
    session: Any,
    event_set: EventSet,
    text: str,
    *,
    actor: str,
    dry_run: bool = False,
) -> ImportResult:
    """Validates the whole file, then applies it (unless dry_run). Raises InputRejected with
    every problem, named by its place in the file (mappings.2.event)."""
    name, raw_entries = read_document(text)
    if name is not None and name not in (event_set.name, event_set.source_id):
        raise InputRejected.one(
            "event_set",
            f"the file is for another event set than {event_set.name!r}; to copy mappings to "
            "another event set, change the event_set line and remove the ids and versions",
        )
    errors: list[FieldError] = []
    saved = {m.id: m for m in list_mappings(session, event_set)}
    saved_names = {m.id: m.event_name for m in saved.values()}
    entries = [
        _parse_entry(raw, f"mappings.{i}.", i, errors, event_set.kind, saved_names)
        for i, raw in enumerate(raw_entries)
    ]
    seen: set[int] = set()
    for entry in entries:
        if entry is None or entry.mapping_id is None:
            continue
        where = f"mappings.{entry.index}"
        if entry.mapping_id in seen:
            errors.append(
                FieldError(f"{where}.id", f"mapping {_shown(entry.mapping_id)} appears twice")
            )
        seen.add(entry.mapping_id)
        current = saved.get(entry.mapping_id)
        if current is None:
            errors.append(
                FieldError(
                    f"{where}.id",
                    f"event set {event_set.name!r} has no mapping {_shown(entry.mapping_id)} "
                    "(remove the id to create a new mapping)",
                )
            )
        elif entry.version is not None and entry.version != current.version:
            errors.append(
                FieldError(
                    f"{where}.version",
                    f"mapping {current.id} is at v{current.version} now, the file has "
                    f"{_version(entry.version)}: someone changed it since the export; "
                    "export again",
                )
            )
    if errors:
        raise InputRejected(bounded(errors))

    result = ImportResult()
    for entry in entries:
        assert entry is not None
        result.warnings.extend(
            FieldError(f"mappings.{entry.index}.{w.field}", w.message)
            for w in event_name_warnings(entry.event_name, event_set.kind)
        )
        current = saved.get(entry.mapping_id) if entry.mapping_id is not None else None
        if current is None:
            if not dry_run:
                created = add_mapping(
                    session,
                    event_set,
                    **entry.fields(),
                    actor=actor,
                )
                result.created.append(created)
            else:
                result.created.append(
                    Mapping(trigger_type=entry.trigger_type, event_name=entry.event_name)
                )
            continue
        same = (
            current.trigger_type == entry.trigger_type
            and current.event_name == entry.event_name
            and current.conditions == entry.conditions
            and current.properties == entry.properties
            and current.enabled == entry.enabled
        )
        if same:
            result.unchanged.append(current)
            continue
        if not dry_run:
            update_mapping(
                session,
                current,
                **entry.fields(),
                actor=actor,
            )
        result.updated.append(current)
    for mapping_id, mapping in saved.items():
        if mapping_id not in seen:
            if not dry_run:
                delete_mapping(session, mapping, actor=actor)
            result.deleted.append(mapping_id)
    return result
