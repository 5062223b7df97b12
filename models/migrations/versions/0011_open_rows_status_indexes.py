"""status indexes of open rows only: on PostgreSQL the (status, ...) indexes of `postbacks`
and `triggers` hold only the rows a worker or the sweeper may still pick up, so the update
that makes a row final (delivered, resolved) adds no entry to them; and a partial index of
the final rows that were not delivered, by event set, replaces the status index for replay,
the admin's dashboard and the diagnostics of unmapped triggers. SQLite keeps its full status
indexes: its planner cannot use such a partial index for `status = 'sending'`.

On PostgreSQL the indexes are built CONCURRENTLY, outside the migration's transaction, so
intake and workers go on writing meanwhile; each replaces its predecessor by name.
On SQLite the last index is of no use to the planner yet (it only matches the exact list of
statuses) and costs only the few rows that end undelivered; it is there so both schemas agree.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_OPEN_POSTBACKS = "status IN ('pending', 'retrying', 'sending')"
_OPEN_TRIGGERS = "status IN ('received', 'waiting_for_lead')"
_NOT_DELIVERED = (
    "status IN ('consent_withdrawn', 'dead', 'expired', 'failed', 'no_match_key', 'unmapped')"
)
# (table, index name, columns); the predicate each gets on PostgreSQL.
_REBUILT = (
    (
        "postbacks",
        "ix_postbacks_status_next_attempt_at",
        "status, next_attempt_at",
        _OPEN_POSTBACKS,
    ),
    ("triggers", "ix_triggers_status_received_at", "status, received_at", _OPEN_TRIGGERS),
)
_NOT_DELIVERED_INDEX = "ix_postbacks_not_delivered_event_set_id"
_NOT_DELIVERED_COLUMNS = "event_set_id, status"


def _on_postgresql() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


@contextmanager
def _outside_the_transaction() -> Iterator[None]:
    """CONCURRENTLY runs outside a transaction, for as long as the table takes to read: a
    role's statement or lock timeout (docs/operations.md suggests one) must not cut it off."""
    with op.get_context().autocommit_block():
        op.execute("SET statement_timeout = 0")
        op.execute("SET lock_timeout = 0")
        try:
            yield
        finally:
            op.execute("RESET statement_timeout")
            op.execute("RESET lock_timeout")


def _build(table: str, name: str, columns: str, where: str | None) -> None:
    """PostgreSQL: builds the index as `name` beside the one of that name, if any, then swaps
    them. A run cut off after dropping the old index finds the new one complete and only
    renames it."""
    building = f"{name}_building"
    with _outside_the_transaction():
        left = (
            op.get_bind()
            .execute(
                sa.text(
                    "SELECT to_regclass(:name) IS NULL AND EXISTS ("
                    " SELECT FROM pg_index WHERE indexrelid = to_regclass(:building)"
                    " AND indisvalid AND (indpred IS NOT NULL) = :partial)"
                ),
                {"name": name, "building": building, "partial": where is not None},
            )
            .scalar()
        )
        if not left:
            predicate = f" WHERE {where}" if where else ""
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {building}")
            op.execute(f"CREATE INDEX CONCURRENTLY {building} ON {table} ({columns}){predicate}")
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        op.execute(f"ALTER INDEX {building} RENAME TO {name}")


def upgrade() -> None:
    if _on_postgresql():
        for table, name, columns, where in _REBUILT:
            _build(table, name, columns, where)
        _build("postbacks", _NOT_DELIVERED_INDEX, _NOT_DELIVERED_COLUMNS, _NOT_DELIVERED)
        return
    op.create_index(
        _NOT_DELIVERED_INDEX,
        "postbacks",
        ["event_set_id", "status"],
        sqlite_where=sa.text(_NOT_DELIVERED),
    )


def downgrade() -> None:
    if _on_postgresql():
        with _outside_the_transaction():
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_NOT_DELIVERED_INDEX}")
        for table, name, columns, _ in _REBUILT:
            _build(table, name, columns, None)
        return
    op.drop_index(_NOT_DELIVERED_INDEX, table_name="postbacks")
