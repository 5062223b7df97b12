"""The status indexes hold open rows only on PostgreSQL (migration 0011), so making a row final
adds nothing to them. A partial index serves a query only if the planner sees the statuses:
these tests plan each hot query the way psycopg runs it once prepared (a generic plan, its
parameters unknown) and check that it still reaches its index."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from enum import StrEnum
from typing import Any

import pytest
from psycopg import sql
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from crm_postback.core.settings import get_settings
from crm_postback.observability.database_gauges import OutboxCollector
from crm_postback.operations.delivery_overview import dead_counts
from crm_postback.operations.diagnostics_queries import unmapped_triggers
from crm_postback.operations.replay import ReplaySelection, count_replayable
from models import (
    NOT_DELIVERED_STATUSES,
    OPEN_STATUSES,
    OPEN_TRIGGER_STATUSES,
    PostbackStatus,
    status_is_one_of,
    utcnow,
)
from models.db import get_engine, session_scope
from models.postbacks import Postback
from models.workspace_scope import ALL_WORKSPACES
from tests.sql_statements import recorded_statements  # type: ignore[import-not-found]
from worker.delivery import reserve_due
from worker.processing import stale_trigger_ids

OPEN_POSTBACKS = "ix_postbacks_status_next_attempt_at"
OPEN_TRIGGERS = "ix_triggers_status_received_at"
NOT_DELIVERED = "ix_postbacks_not_delivered_event_set_id"


def index_definitions(session: Session) -> dict[str, str]:
    if session.get_bind().dialect.name == "postgresql":
        rows = session.execute(text("SELECT indexname, indexdef FROM pg_indexes"))
    else:
        rows = session.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index'"))
    return {name: definition or "" for name, definition in rows}


def predicate_statuses(definition: str) -> set[str] | None:
    """The statuses named in an index's WHERE, or None for a full index."""
    where = re.search(r"\bWHERE\b(.*)", definition, re.IGNORECASE | re.DOTALL)
    return set(re.findall(r"'(\w+)'", where.group(1))) if where else None


def test_open_rows_only_on_postgresql_and_undelivered_final_rows_on_both(any_db: str) -> None:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        definitions = index_definitions(session)
        postgres = session.get_bind().dialect.name == "postgresql"
    assert predicate_statuses(definitions[NOT_DELIVERED]) == set(NOT_DELIVERED_STATUSES)
    assert set(NOT_DELIVERED_STATUSES) == set(PostbackStatus) - {"delivered", *OPEN_STATUSES}
    if postgres:
        assert predicate_statuses(definitions[OPEN_POSTBACKS]) == set(OPEN_STATUSES)
        assert predicate_statuses(definitions[OPEN_TRIGGERS]) == set(OPEN_TRIGGER_STATUSES)
    else:  # SQLite cannot prove `status = 'sending'` inside a partial index's IN list
        assert predicate_statuses(definitions[OPEN_POSTBACKS]) is None
        assert predicate_statuses(definitions[OPEN_TRIGGERS]) is None


def generic_plan(session: Session, statement: str, parameters: dict[str, Any]) -> str:
    """EXPLAIN of the statement prepared and planned without its parameters' values, with
    sequential scans priced out: an index its WHERE cannot be proven to fit stays unused."""
    names: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    prepared = re.sub(r"%\((\w+)\)s", placeholder, statement).replace("%%", "%")
    driver = session.connection().connection.driver_connection
    with driver.cursor() as cursor:  # type: ignore[union-attr]
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE status_probe AS {prepared}")
        values = sql.SQL(", ").join(sql.Literal(parameters[name]) for name in names)
        arguments = sql.SQL(" ({})").format(values) if names else sql.SQL("")
        cursor.execute(sql.SQL("EXPLAIN EXECUTE status_probe{}").format(arguments))
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("DEALLOCATE status_probe")
    return plan


def plans_of(run: Callable[[Session], Any]) -> list[tuple[str, str]]:
    """(statement, generic plan) of each statement `run` sends that filters on a status."""
    with session_scope(workspace=ALL_WORKSPACES) as session:
        with recorded_statements(get_engine()) as seen:
            run(session)
        plans = [
            (statement.sql, generic_plan(session, statement.sql, statement.parameters))
            for statement in seen
            if re.search(r"\.status IN \('", statement.sql)
        ]
        session.rollback()
    return plans


HOT_QUERIES: dict[str, tuple[Callable[[Session], Any], str]] = {
    "the sweeper's due rows": (
        lambda session: reserve_due(session, get_settings(), utcnow()),
        OPEN_POSTBACKS,
    ),
    "the sweeper's stale triggers": (
        lambda session: stale_trigger_ids(session, utcnow(), timedelta(seconds=60), 100),
        OPEN_TRIGGERS,
    ),
    "the dashboard's replayable counts": (dead_counts, NOT_DELIVERED),
    "replay's selection": (
        lambda session: count_replayable(session, ReplaySelection()),
        NOT_DELIVERED,
    ),
    "the diagnostics of unmapped triggers": (
        lambda session: unmapped_triggers(session, 1, utcnow(), frozenset()),
        NOT_DELIVERED,
    ),
}


@pytest.fixture
def outbox_of_a_day(pg_db: str, make_event_set: Callable[..., int]) -> None:
    """Rows as a working outbox holds them, analyzed, so that the planner weighs the indexes
    by what they hold: most triggers resolved and postbacks delivered, a few of every other
    status, some due, some stale."""
    set_id = make_event_set()
    statuses = [("resolved", "delivered")] * 40 + [
        ("received", "pending"),
        ("waiting_for_lead", "retrying"),
        ("resolved", "sending"),
        ("resolved", "failed"),
        ("unmapped", "unmapped"),
        ("resolved", "dead"),
    ]
    with session_scope(workspace=ALL_WORKSPACES) as session:
        for n in range(0, 4_600, len(statuses)):
            for offset, (trigger_status, postback_status) in enumerate(statuses):
                session.execute(
                    text(
                        "INSERT INTO triggers (id, event_set_id, workspace_id, lead_ref,"
                        " trigger_type, occurred_at, attributes, idempotency_key, status,"
                        " received_at, attempts) VALUES (:id, :set_id, 1, 'L-' || :id,"
                        " 'lead.sold', now(), '{}', 'k' || :id, :trigger_status,"
                        " now() - interval '1 hour', 0)"
                    ),
                    {"id": n + offset + 1, "set_id": set_id, "trigger_status": trigger_status},
                )
                session.execute(
                    text(
                        "INSERT INTO postbacks (trigger_id, event_set_id, workspace_id,"
                        " lead_ref, event_name, event_id, status, attempts, replays,"
                        " next_attempt_at, lease_until, created_at, updated_at) VALUES (:id,"
                        " :set_id, 1, 'L-' || :id, 'Purchase', 'e' || :id, :postback_status, 1,"
                        " 0, now() - interval '1 minute', now() - interval '1 minute', now(),"
                        " now())"
                    ),
                    {"id": n + offset + 1, "set_id": set_id, "postback_status": postback_status},
                )
        session.commit()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        session.execute(text("ANALYZE triggers"))
        session.execute(text("ANALYZE postbacks"))
        session.commit()


@pytest.mark.integration
@pytest.mark.usefixtures("outbox_of_a_day")
@pytest.mark.parametrize("query", sorted(HOT_QUERIES))
def test_a_prepared_hot_query_still_reaches_its_partial_index(query: str) -> None:
    run, index = HOT_QUERIES[query]
    plans = plans_of(run)
    assert plans, f"{query}: no statement filtered on a status"
    # A claim that follows the first statement may go by id instead; the scan that finds the
    # open rows must use the index.
    assert any(index in plan for _, plan in plans), f"{query} does not use {index}:\n{plans}"
    for statement, plan in plans:
        assert not re.search(r"Seq Scan on (postbacks|triggers)", plan), f"{statement}\n{plan}"


@pytest.mark.integration
@pytest.mark.usefixtures("outbox_of_a_day")
def test_the_gauges_read_open_rows_through_the_partial_indexes() -> None:
    plans = plans_of(lambda _session: list(OutboxCollector().collect()))
    assert len(plans) == 3, [statement for statement, _ in plans]
    for statement, plan in plans:
        assert OPEN_POSTBACKS in plan or OPEN_TRIGGERS in plan, f"{statement}\n{plan}"


@pytest.mark.integration
def test_the_probe_sees_a_bound_status_miss_the_partial_index(pg_db: str) -> None:
    """The check above can fail: the same filter with the statuses bound, as SQLAlchemy
    binds them by default, is planned without the partial index."""

    def bound(session: Session) -> None:
        session.execute(select(Postback.id).where(Postback.status.in_(OPEN_STATUSES)))

    def literal(session: Session) -> None:
        session.execute(select(Postback.id).where(status_is_one_of(Postback.status, OPEN_STATUSES)))

    with session_scope(workspace=ALL_WORKSPACES) as session:
        with recorded_statements(get_engine()) as seen:
            bound(session)
            literal(session)
        bound_statement, literal_statement = seen
        assert OPEN_POSTBACKS not in generic_plan(
            session, bound_statement.sql, bound_statement.parameters
        )
        assert OPEN_POSTBACKS in generic_plan(
            session, literal_statement.sql, literal_statement.parameters
        )
        session.rollback()


class Hostile(StrEnum):
    QUOTE = "x') OR ('1' = '1"


def test_only_statuses_are_written_into_the_sql() -> None:
    with pytest.raises(ValueError, match="not a status"):
        status_is_one_of(Postback.status, [Hostile.QUOTE])
