from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    TextClause,
    TypeDecorator,
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments INTEGER PRIMARY KEY columns.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


def _quoted(statuses: Iterable[StrEnum]) -> list[str]:
    values = sorted({status.value for status in statuses})
    if not all(value.isascii() and value.replace("_", "").isalpha() for value in values):
        raise ValueError(f"not a status: {values!r}")
    return [f"'{value}'" for value in values]


def status_index_where(statuses: Iterable[StrEnum]) -> TextClause:
    """The predicate of a partial index over rows in these statuses."""
    return text(f"status IN ({', '.join(_quoted(statuses))})")


def status_is_one_of(column: Any, statuses: Iterable[StrEnum]) -> ColumnElement[bool]:
    """`column IN (...)` with the statuses written into the SQL instead of bound: PostgreSQL
    uses a partial index (`status_index_where`) only for a plan that sees the values, and a
    statement psycopg has prepared is planned without them."""
    return column.in_([literal_column(value) for value in _quoted(statuses)])


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


_Member = TypeVar("_Member", bound=StrEnum)


class StrEnumText(TypeDecorator[_Member]):
    """A StrEnum column stored as its value in a plain VARCHAR(length), without a database enum
    type or CHECK constraint, so the schema is the one the migrations made. Rows read back
    as members; writing a value outside the enum raises."""

    impl = String
    cache_ok = True

    def __init__(self, enum_type: type[_Member], length: int) -> None:
        super().__init__(length)
        self.enum_type = enum_type
        self.length = length
        # Dict look-ups: calling the enum by value costs several times more per row.
        self._members = {member.value: member for member in enum_type}

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        try:
            return self._members[value].value
        except KeyError:
            raise ValueError(f"{value!r} is not a value of {self.enum_type.__name__}") from None

    def process_result_value(self, value: Any, dialect: Dialect) -> _Member | None:
        if value is None:
            return None
        try:
            return self._members[value]
        except KeyError:
            raise ValueError(
                f"stored {value!r} is not a value of {self.enum_type.__name__}"
            ) from None


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # Every model is mapped to a Table (DeclarativeBase types it as any FromClause), which
    # the Core statements (`update(Postback.__table__)`, `bulk_insert`) need.
    __table__: ClassVar[Table]
