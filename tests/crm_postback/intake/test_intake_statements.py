"""What one call of the Python API sends to the database, and the answers of the statement that
resolves event sets while it inserts (PostgreSQL) or after a lookup (SQLite): unknown and
not-permitted event sets store nothing, keys included; duplicates within a call and across
calls; both references of one event set."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select

from crm_postback.api import IntakeScope, enqueue_trigger, enqueue_triggers
from crm_postback.core.errors import InputRejected
from crm_postback.intake.trigger_intake import UNKNOWN_EVENT_SET
from models import DEFAULT_WORKSPACE_ID, Lead, Trigger
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import EVENT_SET_ID  # type: ignore[import-not-found]


@pytest.fixture(params=["sqlite_db", "pg_db"])
def database(
    request: pytest.FixtureRequest, eager: None, make_event_set: Callable[..., int]
) -> tuple[str, int]:
    request.getfixturevalue(request.param)
    return request.param, make_event_set()


def body(
    lead: str, key: str | None = None, event_set: str = "acme", **extra: Any
) -> dict[str, Any]:
    occurred = datetime.now(UTC) - timedelta(minutes=5)
    trigger: dict[str, Any] = {
        "type": "lead.submitted",
        "lead_id": lead,
        "event_set": event_set,
        "occurred_at": occurred.isoformat(),
        **extra,
    }
    if key is not None:
        trigger["idempotency_key"] = key
    return trigger


@contextmanager
def counted() -> Iterator[dict[str, int]]:
    counts = {"statements": 0, "commits": 0}

    def statement(*_: Any) -> None:
        counts["statements"] += 1

    def commit(*_: Any) -> None:
        counts["commits"] += 1

    event.listen(Engine, "before_cursor_execute", statement)
    event.listen(Engine, "commit", commit)
    try:
        yield counts
    finally:
        event.remove(Engine, "before_cursor_execute", statement)
        event.remove(Engine, "commit", commit)


def stored_triggers() -> list[tuple[str, str]]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return [
            (t.lead_ref, t.idempotency_key)
            for t in session.scalars(select(Trigger).order_by(Trigger.id))
        ]


def leads() -> int:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return int(session.scalar(select(func.count()).select_from(Lead)) or 0)


def test_one_trigger_with_keys_is_two_statements_and_one_commit_on_postgres(
    pg_db: str, make_event_set: Callable[..., int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The wake-up is not what is counted here.
    monkeypatch.setattr("crm_postback.api._dispatch", lambda _ids: None)
    make_event_set()
    enqueue_trigger(body("L-warm", "warm"))  # the workspace and the pool are ready
    with counted() as counts:
        enqueue_trigger(body("L-1", "k-1", match_keys={"email": "a@example.com"}))
    # The trigger INSERT resolving its event set, the lead's INSERT; no event-set SELECT.
    assert counts == {"statements": 2, "commits": 1}
    with counted() as counts:
        enqueue_trigger(body("L-2", "k-2"))
    assert counts == {"statements": 1, "commits": 1}


def test_unknown_or_not_permitted_event_set_stores_nothing(database: tuple[str, int]) -> None:
    _, event_set_id = database
    keys = {"email": "jane@example.com"}
    items = enqueue_triggers(
        [
            body("L-1", "a", match_keys=keys),
            body("L-2", "b", event_set="nobody", match_keys=keys),
            body("L-3", "c", event_set=EVENT_SET_ID),  # the TikTok ID of the same set
        ]
    )
    assert [item.accepted is not None for item in items] == [True, False, True]
    assert [(e.field, e.message) for e in items[1].errors] == [("event_set", UNKNOWN_EVENT_SET)]
    assert stored_triggers() == [("L-1", "a"), ("L-3", "c")]
    assert leads() == 1  # L-2's keys were not kept
    scope = IntakeScope(DEFAULT_WORKSPACE_ID, event_set_ids=[event_set_id + 1])
    with pytest.raises(InputRejected) as refused:
        enqueue_trigger(body("L-4", "d", match_keys=keys), workspace=scope)
    assert [(e.field, e.message) for e in refused.value.errors] == [
        ("event_set", UNKNOWN_EVENT_SET)
    ]
    assert leads() == 1
    allowed = IntakeScope(DEFAULT_WORKSPACE_ID, event_set_ids=[event_set_id])
    assert not enqueue_trigger(body("L-4", "d"), workspace=allowed).duplicate


def test_duplicates_within_a_call_and_across_calls(database: tuple[str, int]) -> None:
    first = enqueue_triggers(
        [body("L-1", "same"), body("L-1", "same", event_set=EVENT_SET_ID), body("L-2", "other")]
    )
    answers = [item.accepted for item in first]
    assert all(answer is not None for answer in answers)
    one, two, three = (answer for answer in answers if answer is not None)
    assert (one.duplicate, two.duplicate, three.duplicate) == (False, True, False)
    assert one.trigger_id == two.trigger_id != three.trigger_id
    again = enqueue_trigger(body("L-1", "same"))
    assert again.duplicate and again.trigger_id == one.trigger_id
    assert stored_triggers() == [("L-1", "same"), ("L-2", "other")]


def test_strict_keys_of_an_unknown_event_set_answer_the_event_set(
    database: tuple[str, int],
) -> None:
    bad_keys = {"email": "not an address"}
    with pytest.raises(InputRejected) as refused:
        enqueue_trigger(body("L-1", "a", event_set="nobody", match_keys=bad_keys), strict=True)
    assert [e.field for e in refused.value.errors] == ["event_set"]
    with pytest.raises(InputRejected) as refused:
        enqueue_trigger(body("L-1", "a", match_keys=bad_keys), strict=True)
    assert [e.field for e in refused.value.errors] == ["match_keys.email"]
    assert stored_triggers() == [] and leads() == 0
