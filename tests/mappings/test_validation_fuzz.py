"""Property-based fuzzing of the trigger-type and event-name checks, up to the body limit.

Each returns or refuses with MappingError, in work growing about linearly with the name
(tests/bounded_work.py), and a refusal never carries a long name back.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
from hypothesis import example, given, settings

from mappings.validation import MappingError, validate_event_name, validate_trigger_type
from tests.bounded_work import (  # type: ignore[import-not-found]
    Scaled,
    assert_bounded_work,
    returns_or_refuses,
    scaled,
)

CHECKS: dict[str, Callable[[str], str]] = {
    "validate_trigger_type": validate_trigger_type,
    "validate_event_name (crm)": partial(validate_event_name, kind="crm"),
    "validate_event_name (web)": partial(validate_event_name, kind="web"),
}


def refusal_is_short(check: Callable[[str], str]) -> Callable[[str], str]:
    def checked(name: str) -> str:
        try:
            return check(name)
        except MappingError as error:
            assert len(str(error)) < 500, "the refusal carries the name back"
            raise

    return checked


@pytest.mark.parametrize("check", sorted(CHECKS))
@given(shape=scaled(tokens=["lead", ".", "_", "-", "sold", "Purchase", "purchase", " "]))
@example(shape=Scaled("a", ".", "A"))
@example(shape=Scaled("", "a", ""))
@example(shape=Scaled(" ", "x", "\x00"))
@example(shape=Scaled("Complete", " ", "Payment"))
@settings(max_examples=15, deadline=None)
def test_returns_or_refuses_in_bounded_work(check: str, shape: Scaled) -> None:
    checked = returns_or_refuses(refusal_is_short(CHECKS[check]), (MappingError,))
    small, large = shape.small(), shape.large()
    checked(small)
    checked(large)
    assert_bounded_work(checked, small, large, f"{check}({shape})")
    checked(shape.full())
