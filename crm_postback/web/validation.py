"""Validating one body (or batch item) with pydantic and answering in JSON pointers."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from crm_postback.intake.trigger_schemas import unstorable_values
from crm_postback.web.errors import dotted, pointer
from crm_postback.web.shapes import Problem

Model = TypeVar("Model", bound=BaseModel)
log = logging.getLogger(__name__)

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


MAX_PROBLEMS = 20  # per body or batch item: an answer never grows with the input


def validate(model: type[Model], document: Any, base: str) -> tuple[Model | None, list[Problem]]:
    """The model, or the problems found; values that could not be stored count as problems.

    Whatever goes wrong while checking the document is its problem: an unexpected error
    refuses it (at `base`), it never fails the request or the batch it is in."""
    try:
        problems = unstorable_problems(document, base)
        try:
            parsed = model.model_validate(document)
        except ValidationError as error:
            checked = problems_from_validation(error, document, base)
            return None, _merged(problems, checked)[:MAX_PROBLEMS]
    except Exception as error:
        log.warning("%s while validating a document", type(error).__name__)
        field = dotted([])
        return None, [Problem(pointer=base, field=field, message="could not be validated")]
    return (None, problems[:MAX_PROBLEMS]) if problems else (parsed, [])


def _merged(unstorable: list[Problem], checked: list[Problem]) -> list[Problem]:
    """One problem per place. A value that cannot be stored is not also "must be a string";
    one nested inside a field refused whole for its type or name (a list 5,000 levels deep as
    attributes.value) is reported at that field, with the reason it cannot be kept."""
    merged: list[Problem] = []
    used: set[str | None] = set()
    for problem in unstorable:
        outer = next(
            (
                c
                for c in checked
                if _refused_whole(c) and problem.pointer and _inside(problem.pointer, c.pointer)
            ),
            None,
        )
        if outer is not None:
            used.add(outer.pointer)
            problem = Problem(pointer=outer.pointer, field=outer.field, message=problem.message)
        used.add(problem.pointer)
        if problem not in merged:
            merged.append(problem)
    return merged + [c for c in checked if c.pointer not in used]


def _refused_whole(problem: Problem) -> bool:
    return problem.message.startswith("must be ") or problem.message == _MESSAGES["extra_forbidden"]


def _inside(inner: str, outer: str | None) -> bool:
    return outer is not None and inner.startswith(outer + "/")


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
    # A value of the right type for one member of a union that breaks that member's limit
    # ("at most 254 characters") is about the limit, not the other members' types.
    constraints = [kind for kind in kinds if kind[0] not in _EXPECTED]
    if constraints and len(constraints) < len(kinds):
        kinds = constraints
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
    """Text that cannot be stored, and values the body reader could not keep."""
    return [
        Problem(pointer=pointer(base, path), field=dotted(path), message=message)
        for path, message in unstorable_values(document)
    ]
