"""Property-based fuzzing of the match-key normalisers and hashers, up to the body limit.

Each one either returns or refuses with MatchKeyError (never another exception; the
looks_like_* checks never refuse), and its work grows about linearly with the input
(tests/bounded_work.py).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import example, given, settings

from crm_postback.core import privacy
from crm_postback.core.privacy import MatchKeyError
from tests.bounded_work import (  # type: ignore[import-not-found]
    Scaled,
    assert_bounded_work,
    returns_or_refuses,
    scaled,
)

VALIDATORS: dict[str, Callable[[str], object]] = {
    # The hashers normalise first, so they cover normalize_email and normalize_external_id.
    "hash_email": privacy.hash_email,
    "hash_phone": lambda raw: privacy.hash_phone(raw, "US"),
    "normalize_phone": lambda raw: privacy.normalize_phone(raw, "DE"),
    "hash_external_id": privacy.hash_external_id,
    "is_sha256_hex": privacy.is_sha256_hex,
    # What identifier fields are checked with, so that no email or phone hides in them.
    "looks_like_email": privacy.looks_like_email,
    "looks_like_phone": lambda text: privacy.looks_like_phone(text, "US"),
}


@pytest.mark.parametrize("name", sorted(VALIDATORS))
@given(shape=scaled())
@example(shape=Scaled("a@", ".", "@"))  # backtracking between the domain and its last dot
@example(shape=Scaled("a@b", ".", ""))
@example(shape=Scaled("", "a@", ""))
@example(shape=Scaled("+1", "2", ""))
@example(shape=Scaled("00", "1 ", "x"))
@example(shape=Scaled(" ", " ", "a"))
@example(shape=Scaled("", "f", "g"))  # almost a SHA-256
@example(shape=Scaled("a", "@a", ".co"))
@example(shape=Scaled("+", "1 ", ""))
@settings(max_examples=15, deadline=None)
def test_returns_or_refuses_in_bounded_work(name: str, shape: Scaled) -> None:
    checked = returns_or_refuses(VALIDATORS[name], (MatchKeyError,))
    small, large = shape.small(), shape.large()
    checked(small)
    checked(large)
    assert_bounded_work(checked, small, large, f"{name}({shape})")
    checked(shape.full())
