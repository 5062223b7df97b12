"""Status columns hold their enum's values in plain VARCHARs, written by the ORM and by the
set-based statements alike, and read back as enum members."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import StatementError

from models import (
    EventSet,
    EventSetKind,
    EventSetStatus,
    Trigger,
    TriggerStatus,
)
from models.bulk import ARRAY_FORM_FROM_ROWS, bulk_insert, matches_any
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> str:
    name = "sqlite_db" if request.param == "sqlite" else "pg_db"
    return str(request.getfixturevalue(name))


def _event_set() -> int:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        event_set = EventSet(name="acme", source_id="ES1", sealed_token="env:TOKEN", workspace_id=1)
        session.add(event_set)
        session.commit()
        return event_set.id


def _trigger_rows(event_set_id: int, count: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    statuses = list(TriggerStatus)
    return [
        {
            "event_set_id": event_set_id,
            "workspace_id": 1,
            "lead_ref": f"L-{n}",
            "trigger_type": "lead.sold",
            "occurred_at": now,
            "attributes": {},
            "idempotency_key": f"key-{n}",
            # Members and their plain values are the same to the column.
            "status": statuses[n % len(statuses)] if n % 2 else statuses[n % len(statuses)].value,
            "attempts": 0,
            "received_at": now,
        }
        for n in range(count)
    ]


@pytest.mark.parametrize("count", [3, ARRAY_FORM_FROM_ROWS * 2])
def test_bulk_inserted_statuses_are_stored_as_their_values(database: str, count: int) -> None:
    rows = _trigger_rows(_event_set(), count)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        bulk_insert(session, Trigger.__table__, rows)
        session.commit()
    expected = {row["idempotency_key"]: str(row["status"]) for row in rows}
    with session_scope(workspace=ALL_WORKSPACES) as session:
        stored = dict(session.execute(text("select idempotency_key, status from triggers")).all())
        read = {t.idempotency_key: t.status for t in session.scalars(select(Trigger))}
        waiting = session.scalars(
            select(Trigger.idempotency_key).where(
                matches_any(session, Trigger.status, [TriggerStatus.WAITING_FOR_LEAD] * count)
            )
        ).all()
    assert stored == expected
    assert all(type(value) is str for value in stored.values())
    assert read == expected
    assert all(isinstance(status, TriggerStatus) for status in read.values())
    assert sorted(waiting) == sorted(
        key for key, status in expected.items() if status == "waiting_for_lead"
    )


def test_orm_defaults_and_reads_are_members(database: str) -> None:
    event_set_id = _event_set()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        event_set = session.get_one(EventSet, event_set_id)
        assert event_set.kind is EventSetKind.CRM
        assert event_set.status is EventSetStatus.ACTIVE
        assert session.execute(text("select kind, status from event_sets")).one() == (
            "crm",
            "active",
        )


def test_a_value_outside_the_enum_is_refused(database: str) -> None:
    event_set_id = _event_set()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        session.get_one(EventSet, event_set_id).status = "asleep"
        with pytest.raises(StatementError, match="'asleep' is not a value of EventSetStatus"):
            session.flush()
    row = _trigger_rows(event_set_id, 1)[0] | {"status": "lost"}
    with (
        session_scope(workspace=ALL_WORKSPACES) as session,
        pytest.raises(StatementError, match="'lost' is not a value of TriggerStatus"),
    ):
        session.execute(insert(Trigger), [row])
