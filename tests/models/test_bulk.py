"""Set-based statements give the same rows on SQLite and PostgreSQL, in both of PostgreSQL's
forms (short lists as plain parameters, long ones as binary arrays)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg.adapt import PyFormat
from psycopg.types.array import ListBinaryDumper
from sqlalchemy import any_, select, text

from models import DEFAULT_WORKSPACE_ID, Lead, Trigger
from models.bulk import (
    ARRAY_FORM_FROM_ROWS,
    ARRAY_FORM_FROM_VALUES,
    BinaryList,
    array_param,
    bulk_insert,
    matches_any,
    planned_for_its_parameters,
)
from models.db import get_engine, session_scope
from models.workspace_scope import ALL_WORKSPACES

AWKWARD_TEXTS = ['quote " and \\ backslash', "comma, {brace} and 'apostrophe'", "naïve ✓", ""]


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> str:
    name = "sqlite_db" if request.param == "sqlite" else "pg_db"
    return str(request.getfixturevalue(name))


def _event_set(make_event_set: Any) -> int:
    return int(make_event_set())


def _trigger_rows(event_set_id: int, count: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC).replace(microsecond=0)
    return [
        {
            "event_set_id": event_set_id,
            "workspace_id": DEFAULT_WORKSPACE_ID,
            "lead_ref": f"L-{n}",
            "trigger_type": "lead.sold",
            "occurred_at": now - timedelta(seconds=n),
            "attributes": {
                "text": AWKWARD_TEXTS[n % len(AWKWARD_TEXTS)],
                "nested": {"list": [n, None, True]},
                "big": 2**40 + n,
            },
            "idempotency_key": f"key-{n}",
            "status": "received",
            "attempts": 0,
            "received_at": now,
        }
        for n in range(count)
    ]


@pytest.mark.parametrize("count", [3, ARRAY_FORM_FROM_ROWS, 1_000])
def test_bulk_insert_round_trips_every_value(
    database: str, make_event_set: Any, count: int
) -> None:
    rows = _trigger_rows(_event_set(make_event_set), count)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        returned = bulk_insert(
            session,
            Trigger.__table__,
            rows,
            returning=(Trigger.id, Trigger.idempotency_key),
            ignore_conflicts=True,
        )
        session.commit()
    assert sorted(r.idempotency_key for r in returned) == sorted(r["idempotency_key"] for r in rows)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        stored = {t.idempotency_key: t for t in session.scalars(select(Trigger))}
    for row in rows:
        trigger = stored[row["idempotency_key"]]
        assert trigger.attributes == row["attributes"]
        assert trigger.occurred_at == row["occurred_at"]
        assert trigger.lead_ref == row["lead_ref"]


def test_conflicting_rows_are_skipped_and_not_returned(database: str, make_event_set: Any) -> None:
    rows = _trigger_rows(_event_set(make_event_set), 200)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        bulk_insert(session, Trigger.__table__, rows[:100])
        again = bulk_insert(
            session,
            Trigger.__table__,
            rows,
            returning=(Trigger.idempotency_key,),
            ignore_conflicts=True,
        )
        session.commit()
    assert sorted(r.idempotency_key for r in again) == sorted(
        r["idempotency_key"] for r in rows[100:]
    )


def test_json_lists_and_missing_values_in_a_long_insert(database: str) -> None:
    now = datetime.now(UTC)
    rows = [
        {
            "workspace_id": DEFAULT_WORKSPACE_ID,
            "lead_ref": f"L-{n}",
            "created_at": now,
            "updated_at": now,
            "ttclid": None if n % 3 else f"E.C.P.{n}",
            "email_hashes": [f"{n:064x}"] if n % 2 else [],
        }
        for n in range(120)
    ]
    with session_scope(workspace=ALL_WORKSPACES) as session:
        bulk_insert(session, Lead.__table__, rows)
        session.commit()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        stored = {lead.lead_ref: lead for lead in session.scalars(select(Lead))}
    for row in rows:
        assert stored[row["lead_ref"]].ttclid == row["ttclid"]
        assert stored[row["lead_ref"]].email_hashes == row["email_hashes"]


@pytest.mark.parametrize("count", [1, 49, 1_000])
def test_matches_any_finds_exactly_the_given_values(
    database: str, make_event_set: Any, count: int
) -> None:
    rows = _trigger_rows(_event_set(make_event_set), 1_000)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        bulk_insert(session, Trigger.__table__, rows)
        session.commit()
        wanted = [f"L-{n}" for n in range(0, 2 * count, 2)]
        found = session.scalars(
            select(Trigger.lead_ref).where(matches_any(session, Trigger.lead_ref, wanted))
        ).all()
    assert sorted(found) == sorted(w for w in wanted if int(w[2:]) < 1_000)


def test_postgres_connections_send_binary_lists_in_binary(pg_db: str) -> None:
    with get_engine().connect() as connection:
        raw = connection.connection.dbapi_connection
        assert raw is not None
        dumper = raw.adapters.get_dumper(BinaryList, PyFormat.AUTO)
    assert issubclass(dumper, ListBinaryDumper)


def _prepared_lead_lookups(session: Any) -> int:
    return int(
        session.execute(
            text(
                "select count(*) from pg_prepared_statements "
                "where statement like '%WHERE leads.lead_ref = ANY%'"
            )
        ).scalar_one()
    )


def test_lookups_planned_for_their_parameters_are_never_prepared(pg_db: str) -> None:
    """psycopg prepares a statement on its fifth run; inside the block it must not, so a plan
    made while the table was young is never reused (see `planned_for_its_parameters`)."""
    refs = [f"L-{n}" for n in range(ARRAY_FORM_FROM_VALUES)]
    lookup = select(Lead.lead_ref).where(
        Lead.lead_ref == any_(array_param(refs, Lead.lead_ref.type))
    )
    with session_scope(workspace=ALL_WORKSPACES) as session:
        with planned_for_its_parameters(session):
            for _ in range(10):
                session.execute(lookup).all()
        assert _prepared_lead_lookups(session) == 0
        for _ in range(10):  # the same statement outside the block: prepared, as usual
            session.execute(lookup).all()
        assert _prepared_lead_lookups(session) == 1
        assert session.connection().connection.driver_connection.prepare_threshold == 5


def test_planned_for_its_parameters_is_a_no_op_on_sqlite(sqlite_db: str) -> None:
    with (
        session_scope(workspace=ALL_WORKSPACES) as session,
        planned_for_its_parameters(session),
    ):
        assert session.execute(select(Lead.lead_ref)).all() == []
