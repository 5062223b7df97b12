from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

# How pydantic names a member of a union in an error's location (`str | list[str]` fails as
# `email.constrained-str` and `email.list[constrained-str]`): a core type, or a schema kind
# with its parameters in brackets. No backtracking: the bracket part runs to the end.
_UNION_MEMBER = re.compile(r"(?:str|int|float|bool|bytes|none|constrained-[a-z]+|[a-z-]+\[.*\])\Z")
_TYPE_MESSAGE = "Input should be a valid "


@dataclass(frozen=True)
class FieldError:
    field: str  # dotted path, e.g. "match_keys.phone" or "attributes.value"
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InputRejected(ValueError):
    """Bad input from a routing system. Messages name fields and never echo raw match keys."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors

    @classmethod
    def one(cls, field: str, message: str) -> InputRejected:
        return cls([FieldError(field, message)])

    @classmethod
    def from_validation(
        cls, error: ValidationError, prefix: str = "", document: Any = None
    ) -> InputRejected:
        """One error per field, named as the caller wrote it: pydantic's names for the members
        of a union are left out (with `document`, the one validated, a key that is in it is
        never taken for one). A value matching no member is one error, the members' limits
        before their types ("at most 254 characters", not also "a valid list")."""
        messages: dict[str, list[str]] = {}
        for item in error.errors(include_input=False, include_url=False):
            parts = _named_parts(tuple(item["loc"]), document)
            # A key name can itself be PII (an email sent as a key): never echo one with "@".
            path = ".".join("<redacted>" if "@" in str(p) else str(p) for p in parts)
            found = messages.setdefault(f"{prefix}{path}" or "body", [])
            message = item["msg"].removeprefix("Value error, ")
            if message not in found:
                found.append(message)
        return cls([FieldError(field, _one_sentence(found)) for field, found in messages.items()])


def _named_parts(loc: tuple[Any, ...], document: Any) -> list[Any]:
    parts: list[Any] = []
    node, in_document = document, document is not None
    for part in loc:
        if in_document and _has(node, part):
            node = node[part]
            parts.append(part)
            continue
        in_document = False
        if not (isinstance(part, str) and _UNION_MEMBER.match(part)):
            parts.append(part)
    return parts


def _has(node: Any, part: Any) -> bool:
    if isinstance(node, dict):
        return isinstance(part, str) and part in node
    if isinstance(node, list):
        return isinstance(part, int) and 0 <= part < len(node)
    return False


def _one_sentence(messages: list[str]) -> str:
    limits = [m for m in messages if not m.startswith(_TYPE_MESSAGE)]
    return "; ".join(limits or messages)
