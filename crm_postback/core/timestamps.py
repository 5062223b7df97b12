"""Datetimes without a zone: every one we store or accept is UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def naive_means_utc(value: datetime | None) -> datetime | None:
    """`value` with UTC as its zone if it had none (SQLite returns aggregates naive; a time
    typed on the command line may have no zone); an aware value as it is."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
