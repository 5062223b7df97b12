"""Property-based fuzzing of the JSON body reader (web.body.read_json), up to the body limit.

Any body up to MAX_REQUEST_BYTES is parsed or refused with RequestRejected (422 naming the
body, a short message that quotes none of it), never RecursionError, OverflowError or another
exception; the work grows about linearly with the body (tests/bounded_work.py).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from hypothesis import example, given, settings

from crm_postback.web.body import read_json
from crm_postback.web.errors import RequestRejected
from tests.bounded_work import (  # type: ignore[import-not-found]
    Scaled,
    assert_bounded_work,
    scaled,
)

JSON_TOKENS = [
    "[",
    "]",
    "{",
    "}",
    '"a":',
    '"',
    ",",
    ":",
    " ",
    "\n",
    "1",
    "-",
    ".5",
    "e309",
    "1e309",
    "NaN",
    "Infinity",
    "-Infinity",
    "null",
    "true",
    "\\u0000",
    "\\ud800",
    "\\",
    "\xff",
    "9" * 40,
]


class Body:
    """What read_json uses of a Request."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    async def body(self) -> bytes:
        return self.raw


def run_to_end(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """The coroutine's result: it never waits (the body is at hand), so no event loop (whose
    fixed cost per call would flatten the work ratio)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise AssertionError("read_json waited for something")


def read(raw: bytes) -> str:
    try:
        run_to_end(read_json(Body(raw)))  # type: ignore[arg-type]
    except RequestRejected as rejected:
        assert rejected.status == 422
        for problem in rejected.problems:
            assert problem.field == "body" and len(problem.message) < 300
        return "refused"
    return "read"


def encoded(text: str) -> bytes:
    # "\xff" stands for a byte that is not UTF-8.
    return text.encode("utf-8", "surrogatepass").replace(b"\xc3\xbf", b"\xff")


@given(shape=scaled(tokens=JSON_TOKENS))
@example(shape=Scaled("", "[", ""))  # deep nesting: RecursionError in the reader
@example(shape=Scaled("", '{"a":', ""))
@example(shape=Scaled("", "9", ""))  # more digits than Python reads into an int
@example(shape=Scaled("0.", "9", "e400"))
@example(shape=Scaled("[", "1e309,", "1]"))
@example(shape=Scaled('"', "\\ud800", '"'))
@example(shape=Scaled("[", '"a",', '"a"]'))
@settings(max_examples=30, deadline=None)
def test_bodies_are_read_or_refused_in_bounded_work(shape: Scaled) -> None:
    small, large = encoded(shape.small()), encoded(shape.large())
    read(small)
    read(large)
    assert_bounded_work(read, small, large, f"body {shape}")
    read(encoded(shape.full()))
