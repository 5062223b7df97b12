"""The pool pings connections that sat idle, not ones just returned; a dead idle connection
is replaced before anyone uses it, and intake survives one that died inside the window.
All on a real PostgreSQL, whose backends are killed for real."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, select, text

import models.db
from models import Trigger
from models.db import get_engine, session_scope
from models.workspace_scope import ALL_WORKSPACES


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("select pg_backend_pid()")).scalar_one())


def _kill_backends(url: str) -> int:
    """Terminates every other session on the test database, as a server restart would."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as admin:
        killed = admin.execute(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity "
            "where datname = current_database() and pid <> pg_backend_pid()"
        ).fetchone()
    return int(killed[0]) if killed else 0


@pytest.fixture
def pings(pg_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    engine = get_engine()
    calls: list[int] = []
    real_ping = engine.dialect.do_ping

    def counting_ping(dbapi_connection: Any) -> bool:
        calls.append(1)
        return bool(real_ping(dbapi_connection))

    monkeypatch.setattr(engine.dialect, "do_ping", counting_ping)
    yield calls


def test_new_or_recently_returned_connection_is_not_pinged(
    pings: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models.db, "PING_AFTER_IDLE_SECONDS", 60.0)  # no timing in this test
    engine = get_engine()
    for _ in range(5):
        _backend_pid(engine)
    assert pings == []


def test_connection_idle_for_longer_is_pinged(
    pings: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = get_engine()
    _backend_pid(engine)
    monkeypatch.setattr(models.db, "PING_AFTER_IDLE_SECONDS", 0.0)
    before = len(pings)
    _backend_pid(engine)
    assert len(pings) == before + 1


def test_dead_idle_connection_is_replaced_before_use(
    pg_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = get_engine()
    old_pid = _backend_pid(engine)
    assert _kill_backends(pg_db) >= 1
    monkeypatch.setattr(models.db, "PING_AFTER_IDLE_SECONDS", 0.0)
    assert _backend_pid(engine) != old_pid  # no error reached the caller


def test_intake_retries_once_when_its_connection_died_unpinged(
    pg_db: str,
    make_event_set: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from crm_postback.api import enqueue_trigger
    from tests.conftest import apply_env  # type: ignore[import-not-found]

    apply_env(monkeypatch, BROKER_URL="redis://127.0.0.1:1/0")  # no wake-up needed here
    monkeypatch.setattr(models.db, "PING_AFTER_IDLE_SECONDS", 60.0)  # never pinged here
    make_event_set()
    first = enqueue_trigger(_trigger("k-1"))
    assert _kill_backends(pg_db) >= 1  # the pooled connection is now dead, and not pinged
    second = enqueue_trigger(_trigger("k-2"))
    assert "database connection lost" in caplog.text  # the first try failed, the retry won
    assert not second.duplicate and second.trigger_id != first.trigger_id
    with session_scope(workspace=ALL_WORKSPACES) as session:
        keys = session.scalars(select(Trigger.idempotency_key).order_by(Trigger.id)).all()
    assert keys == ["k-1", "k-2"]


def _trigger(key: str) -> dict[str, Any]:
    return {
        "type": "lead.sold",
        "lead_id": "L-1",
        "event_set": "acme",
        "occurred_at": "2026-11-21T10:00:00Z",
        "idempotency_key": key,
    }
