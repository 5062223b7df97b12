"""Ids of rows as callers give them: an int, or digits in a query, form or argument.

A number no column can hold names nothing, and is not looked up (the database would refuse to
compare it: OverflowError on SQLite, "out of range" on PostgreSQL).
"""

from __future__ import annotations

# The largest id a column holds: INTEGER for event sets, mappings, api keys and workspaces,
# BIGINT for triggers, postbacks and audit entries.
MAX_ID = 2**31 - 1
MAX_BIG_ID = 2**63 - 1


def is_row_id(value: object, maximum: int = MAX_ID) -> bool:
    """An int that can be the id of a row (1 to `maximum`); bools are not ids."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= maximum


def row_id(text: str, maximum: int = MAX_ID) -> int | None:
    """A query or form value as an id; None when it cannot be one (not digits, too large)."""
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    value = int(text)
    return value if is_row_id(value, maximum) else None
