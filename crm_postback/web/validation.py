"""Validating one body (or batch item) with pydantic and answering in JSON pointers."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from crm_postback.intake.trigger_schemas import UNSTORABLE_MESSAGE, unstorable_paths
from crm_postback.web.errors import dotted, pointer
from crm_postback.web.shapes import Problem

Model = TypeVar("Model", bound=BaseModel)

_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
}
_EXPECTED = {
    "string_type": "a string",
    "list_type": "a list",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "a boolean",
    "bool_parsing": "a boolean",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def validate(model: type[Model], document: Any, base: str) -> tuple[Model | None, list[Problem]]:
    """The model, or the problems found; values that could not be stored count as problems."""
    problems = unstorable_problems(document, base)
    try:
        parsed = model.model_validate(document)
    except ValidationError as error:
        problems += [
            p for p in problems_from_validation(error, document, base) if p not in problems
        ]
        return None, problems
    return (None, problems) if problems else (parsed, [])


def problems_from_validation(error: ValidationError, document: Any, base: str) -> list[Problem]:
    # Pydantic reports a value matching no member of a union (`str | list[str]`) once per
    # member, with the member's name in the location. Only the errors that reach deepest into
    # the document are kept (a list with one bad element is about that element), and errors
    # at the same place are merged into one sentence.
    found: list[tuple[tuple[Any, ...], list[str | int], tuple[str, str]]] = []
    for item in error.errors(include_input=False, include_url=False, include_context=False):
        loc = tuple(item["loc"])
        path, union_at = _document_path(loc, document, item["type"] == "missing")
        found.append((loc[:union_at], path, (item["type"], item["msg"])))
    deepest: dict[tuple[Any, ...], int] = {}
    for union, path, _ in found:
        deepest[union] = max(deepest.get(union, 0), len(path))
    by_place: dict[tuple[str | int, ...], list[tuple[str, str]]] = {}
    for union, path, kind in found:
        if len(path) == deepest[union]:
            kinds = by_place.setdefault(tuple(path), [])
            if kind not in kinds:
                kinds.append(kind)
    return [
        Problem(pointer=pointer(base, path), field=dotted(path), message=_sentence(kinds))
        for path, kinds in by_place.items()
    ]


def _sentence(kinds: list[tuple[str, str]]) -> str:
    types = [error_type for error_type, _ in kinds]
    if all(t in _EXPECTED for t in types):
        expected = list(dict.fromkeys(_EXPECTED[t] for t in types))
        if len(expected) == 1:
            return f"must be {expected[0]}"
        return f"must be {', '.join(expected[:-1])} or {expected[-1]}"
    messages = []
    for error_type, message in kinds:
        messages.append(_MESSAGES.get(error_type, message.removeprefix("Value error, ")))
    return "; ".join(dict.fromkeys(messages))


def _has(node: Any, part: str | int) -> bool:
    if isinstance(node, dict):
        return isinstance(part, str) and part in node
    if isinstance(node, list):
        return isinstance(part, int) and 0 <= part < len(node)
    return False


def _document_path(
    loc: tuple[Any, ...], document: Any, missing: bool
) -> tuple[list[str | int], int]:
    """The part of a pydantic location that exists in the document, and where the first
    segment that is not in the document (a union member's name) sits in `loc`."""
    path: list[str | int] = []
    union_at = len(loc)
    node = document
    for position, part in enumerate(loc):
        if _has(node, part):
            node = node[part]
            path.append(part)
        elif missing and position == len(loc) - 1 and isinstance(node, dict):
            path.append(part)
        else:
            union_at = min(union_at, position)
    return path, union_at


def unstorable_problems(document: Any, base: str) -> list[Problem]:
    return [
        Problem(
            pointer=pointer(base, path),
            field=dotted(path),
            message=UNSTORABLE_MESSAGE,
        )
        for path in unstorable_paths(document)
    ]
