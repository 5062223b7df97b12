"""The check that an HTTP refusal echoes nothing that was sent (docs/http-api.md: "No answer,
log line or table ever holds a value you sent"), for the property-based API tests.

Names may be named back (an unknown event set is `unknown event set 'x'`), unless they look
like an email address or a phone number; so may keys that are plain names (an unknown field is
named). Strings shorter than SHORTEST_CHECKED are too common to tell an echo from chance, and
so is a sent string that is part of our own wording (the key `a string` is in "must be a
string"): the string constants of the code are that wording.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

# Names given to event sets, triggers and events; references to them.
NAME_FIELDS = {"reference", "event_set", "name", "trigger", "type", "event"}
SHORTEST_CHECKED = 8
_EMAIL_SHAPE = re.compile(r"[^@\s]@[^@\s]+\.[A-Za-z]{2}")
_PHONE_CHARACTERS = frozenset("0123456789 +-.()/")
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")


ROOT = Path(__file__).resolve().parents[3]


@cache
def own_wording() -> str:
    """Every string constant in the shipped code, one per line."""
    texts = []
    for package in ("crm_postback", "mappings", "models", "worker"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    texts.append(node.value)
    return "\n".join(texts)


def _our_words(value: str) -> bool:
    # Short, impersonal and part of our wording (examples in the code hold emails: never those).
    return len(value) <= 32 and not looks_personal(value) and value in own_wording()


def looks_personal(text: str) -> bool:
    """An email address, or a phone number as people write one (bare digits are an id)."""
    if _EMAIL_SHAPE.search(text):
        return True
    text = text.strip()
    digits = sum(c.isdigit() for c in text)
    return (
        set(text) <= _PHONE_CHARACTERS
        and 7 <= digits <= 15
        and (text.startswith("+") or bool(set(text) & set(" -.()/")))
    )


def sent_strings(value: Any, field: str = "") -> Iterator[tuple[str, str]]:
    """(field, text) for every string in what was sent, keys included unless they are plain
    names (an unknown field is named back; a key that could be anything is <redacted>)."""
    if isinstance(value, str):
        yield field, value
    elif isinstance(value, dict):
        for key, item in value.items():
            if not _PLAIN_NAME.fullmatch(str(key)):
                yield from sent_strings(key, "a key")
            yield from sent_strings(item, str(key))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from sent_strings(item, field)


def answer_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from answer_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from answer_strings(item)


def assert_refusal_echoes_nothing(status: int, text: str, sent: Any) -> None:
    """A 4xx answer is `{"errors": [{"field", "message", …}]}` holding no value that was sent
    (a name may be named back, unless it looks like an email or a phone number)."""
    if status < 400:
        return
    document = json.loads(text)
    assert isinstance(document, dict) and isinstance(document.get("errors"), list), text[:300]
    assert all(isinstance(e, dict) and "message" in e for e in document["errors"]), text[:300]
    assert_echoes_nothing(status, document, sent)


def assert_echoes_nothing(status: int, document: Any, sent: Any) -> None:
    """No string of the answer holds a value that was sent (names aside)."""
    said = list(answer_strings(document))
    strings = list(sent_strings(sent))
    names = {
        value
        for field, value in strings
        if field in NAME_FIELDS and not looks_personal(value) and len(value) <= 64
    }
    for field, value in strings:
        if len(value.strip()) < SHORTEST_CHECKED or value in names or _our_words(value):
            continue
        for line in said:
            assert value not in line, f"{status} answer holds the {field!r} that was sent"
