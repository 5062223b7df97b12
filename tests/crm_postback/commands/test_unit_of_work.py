"""One transaction per use case: commit, then publish; a rollback publishes nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from crm_postback.commands.unit_of_work import Actor, unit_of_work
from models import AuditEntry, EventSet
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES


def audited_actions() -> list[str]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


def event_set_names() -> list[str]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return list(session.scalars(select(EventSet.name)))


def test_messages_go_out_after_the_commit(sqlite_db: str) -> None:
    seen: list[list[str]] = []
    with unit_of_work(Actor("cli:ops")) as uow:
        uow.audit("thing.done", entity_type="thing", entity_id=1, after={"n": 1}, note="why")
        uow.publish_after_commit(lambda: seen.append(audited_actions()), waiting="the thing")
        assert seen == []  # nothing is sent inside the transaction
    assert seen == [["thing.done"]]  # the publisher's own session sees the committed row
    assert uow.unsent == []
    with session_scope(workspace=ALL_WORKSPACES) as session:
        entry = session.scalars(select(AuditEntry)).one()
        assert (entry.actor, entry.note) == ("cli:ops", "why")


def test_an_error_rolls_back_and_publishes_nothing(sqlite_db: str) -> None:
    published: list[int] = []
    with pytest.raises(RuntimeError), unit_of_work(Actor("cli:ops")) as uow:
        uow.audit("thing.done", entity_type="thing")
        uow.publish_after_commit(lambda: published.append(1), waiting="the thing")
        raise RuntimeError("the use case failed")
    assert published == [] and audited_actions() == []


def test_a_dry_run_writes_and_publishes_nothing(
    sqlite_db: str, make_event_set: Callable[..., int]
) -> None:
    set_id = make_event_set(mappings=())
    published: list[int] = []
    with unit_of_work(Actor("cli:ops"), dry_run=True) as uow:
        event_set = uow.session.get(EventSet, set_id)
        assert event_set is not None
        event_set.name = "renamed"
        uow.audit("event_set.update", entity_type="event_set", entity_id=set_id)
        uow.session.flush()
        uow.publish_after_commit(lambda: published.append(1), waiting="the thing")
    assert published == [] and event_set_names() == ["acme"]
    assert audited_actions() == ["event_set.create"]


def test_a_broker_that_is_down_keeps_the_commit(sqlite_db: str) -> None:
    def broker_down() -> None:
        raise ConnectionError("broker down")

    with unit_of_work(Actor("cli:ops")) as uow:
        uow.audit("thing.done", entity_type="thing")
        uow.publish_after_commit(broker_down, waiting="3 rows")
    assert uow.unsent == ["3 rows"] and audited_actions() == ["thing.done"]
