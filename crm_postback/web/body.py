"""Reading request bodies: a size limit before anything is parsed, then strict JSON."""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_postback.core.settings import get_settings
from crm_postback.intake.trigger_schemas import Unrepresentable
from crm_postback.web.errors import (
    BodyTooLarge,
    RequestRejected,
    error_response,
    too_large,
)
from crm_postback.web.shapes import Problem


class BodySizeLimit:
    """413 for a body over MAX_REQUEST_BYTES: at once when Content-Length says so, otherwise
    as soon as the streamed body passes the limit (chunked uploads are never read whole)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = get_settings().max_request_bytes
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await error_response(413, [too_large(limit)])(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)


MAX_READ_DEPTH = 64  # deeper containers are cut out (only when the reader ran out of stack)
_TOO_DEEP = f"nests deeper than {MAX_READ_DEPTH} levels"
_NOT_A_NUMBER = "is not a JSON number (NaN and Infinity are not JSON)"
_TOO_LARGE = "is a number too large to store"
_TOO_LONG = f"is an integer of more than {sys.get_int_max_str_digits()} digits"
# What a cut-out container becomes while the text is read again: text that cannot be stored
# (a NUL and a lone surrogate), so no value a caller sends could be taken for it unseen.
_CUT_MARK = "\u0000\udfffcut"
_CUT_LITERAL = '"\\u0000\\udfffcut"'
_JSON_SPACE = " \t\n\r"
_STRUCTURE = re.compile(r'(?:[\[{][ \t\n\r]*+)++|(?:[\]}][ \t\n\r]*+)++|"')


def _strict_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError("a number too large to store")
    return number


def _strict_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _float_or_placeholder(text: str) -> float | Unrepresentable:
    number = float(text)
    return number if math.isfinite(number) else Unrepresentable(_TOO_LARGE)


def _int_or_placeholder(text: str) -> int | Unrepresentable:
    try:
        return int(text)
    except ValueError:  # more digits than sys.get_int_max_str_digits()
        return Unrepresentable(_TOO_LONG)


def _constant_placeholder(_: str) -> Unrepresentable:
    return Unrepresentable(_NOT_A_NUMBER)


def parse_json(raw: bytes, keep_bad_values: bool = False) -> Any:
    """Strict JSON. With `keep_bad_values`, a value that cannot be kept (NaN, Infinity, a
    float out of range, an integer too long to convert, a container nested too deep to read)
    becomes an Unrepresentable placeholder, so that the validator names its path and only its
    item fails; otherwise it fails the whole document (ValueError)."""
    if not keep_bad_values:
        return json.loads(raw, parse_float=_strict_float, parse_constant=_strict_constant)
    # Integers are read by the reader itself (a Python hook for each would cost every body);
    # only a body holding one that int() refuses is read again with the hook.
    hooks: dict[str, Any] = {
        "parse_float": _float_or_placeholder,
        "parse_constant": _constant_placeholder,
    }
    try:
        return json.loads(raw, **hooks)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise
    except RecursionError:
        too_deep = True
    except ValueError:  # an integer of more than sys.get_int_max_str_digits() digits
        too_deep = False
    hooks["parse_int"] = _int_or_placeholder
    if not too_deep:
        try:
            return json.loads(raw, **hooks)
        except RecursionError:
            pass
    # Only a document nested hundreds of levels deep gets here: read it again with its
    # too-deep containers cut out, each replaced by a mark that becomes a placeholder.
    text = raw.decode(json.detect_encoding(raw), "surrogatepass")
    document = json.loads(_cut_deep(text), **hooks)
    return _placeholders_for_cuts(document)


def _cut_deep(text: str) -> str:
    """`text` with every container opened below MAX_READ_DEPTH replaced by _CUT_LITERAL.
    One pass (a run of brackets is one step); strings are skipped whole. Text that is not
    JSON stays not JSON."""
    limit = MAX_READ_DEPTH
    parts: list[str] = []
    depth = kept_from = position = 0
    cut_at: int | None = None
    while (found := _STRUCTURE.search(text, position)) is not None:
        run, at = found.group(), found.start()
        position = found.end()
        if run == '"':
            position = _string_end(text, position)
            if position < 0:
                break
            continue
        brackets = 1 if len(run) == 1 else len(run) - sum(map(run.count, _JSON_SPACE))
        if run[0] in "[{":
            if cut_at is None and depth + brackets > limit:
                cut_at = at + _nth_bracket(run, limit - depth)  # opens level limit + 1
            depth += brackets
        else:
            if cut_at is not None and depth - brackets <= limit:
                closed = at + _nth_bracket(run, depth - limit - 1) + 1  # closes level limit + 1
                parts += [text[kept_from:cut_at], _CUT_LITERAL]
                kept_from, cut_at = closed, None
            depth -= brackets
    if cut_at is not None:  # never closed: the JSON reader reports where it ends
        parts.append(text[kept_from:cut_at] + _CUT_LITERAL)
        return "".join(parts)
    parts.append(text[kept_from:])
    return "".join(parts)


def _nth_bracket(run: str, index: int) -> int:
    """Where the bracket number `index` (from 0) of a run of brackets and spaces is."""
    for position, char in enumerate(run):
        if char not in _JSON_SPACE:
            if index == 0:
                return position
            index -= 1
    raise AssertionError("fewer brackets in the run than counted")


def _string_end(text: str, start: int) -> int:
    """The position after the quote closing a string whose content starts at `start`; -1
    when it is never closed."""
    while (quote := text.find('"', start)) >= 0:
        backslashes = 0
        while text[quote - 1 - backslashes] == "\\":
            backslashes += 1
        if backslashes % 2 == 0:
            return quote + 1
        start = quote + 1
    return -1


def _placeholders_for_cuts(document: Any) -> Any:
    if document == _CUT_MARK:
        return Unrepresentable(_TOO_DEEP)
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            items: Any = node.items()
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            continue
        for key, value in list(items):
            if isinstance(value, str) and value == _CUT_MARK:
                node[key] = Unrepresentable(_TOO_DEEP)
            elif isinstance(value, dict | list):
                stack.append(value)
    return document


async def read_json(request: Request, keep_bad_values: bool = False) -> Any:
    """The parsed body; 422 for anything that is not strict JSON (see parse_json)."""
    # Any Content-Type is read as JSON: `curl -d` without -H is a common first try.
    return parse_body(await request.body(), keep_bad_values)


def parse_body(raw: bytes, keep_bad_values: bool = False) -> Any:
    """parse_json, with a 422 naming the body for text that is not JSON."""
    try:
        return parse_json(raw, keep_bad_values)
    except json.JSONDecodeError as error:
        message = f"is not valid JSON ({error.msg} at line {error.lineno} column {error.colno})"
    except (ValueError, RecursionError) as error:
        message = f"is not valid JSON ({error if isinstance(error, ValueError) else 'too deep'})"
    raise RequestRejected(422, [Problem(pointer="", field="body", message=message)])
