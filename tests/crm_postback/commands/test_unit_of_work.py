"""One transaction per use case: commit, then publish; a rollback publishes nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from crm_postback.commands.unit_of_work import Actor, NotPermitted, unit_of_work
from crm_postback.configuration.workspaces import add_workspace
from models import DEFAULT_WORKSPACE_ID, AuditEntry, EventSet, Role
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES, scope_of


def audited_actions() -> list[str]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


def event_set_names() -> list[str]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return list(session.scalars(select(EventSet.name)))


def test_messages_go_out_after_the_commit(sqlite_db: str) -> None:
    seen: list[list[str]] = []
    with unit_of_work(
        Actor("cli:ops", DEFAULT_WORKSPACE_ID, Role.OWNER), requires=Role.EDITOR
    ) as uow:
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
    with (
        pytest.raises(RuntimeError),
        unit_of_work(
            Actor("cli:ops", DEFAULT_WORKSPACE_ID, Role.OWNER), requires=Role.EDITOR
        ) as uow,
    ):
        uow.audit("thing.done", entity_type="thing")
        uow.publish_after_commit(lambda: published.append(1), waiting="the thing")
        raise RuntimeError("the use case failed")
    assert published == [] and audited_actions() == []


def test_a_dry_run_writes_and_publishes_nothing(
    sqlite_db: str, make_event_set: Callable[..., int]
) -> None:
    set_id = make_event_set(mappings=())
    published: list[int] = []
    with unit_of_work(
        Actor("cli:ops", DEFAULT_WORKSPACE_ID, Role.OWNER), requires=Role.EDITOR, dry_run=True
    ) as uow:
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

    with unit_of_work(
        Actor("cli:ops", DEFAULT_WORKSPACE_ID, Role.OWNER), requires=Role.EDITOR
    ) as uow:
        uow.audit("thing.done", entity_type="thing")
        uow.publish_after_commit(broker_down, waiting="3 rows")
    assert uow.unsent == ["3 rows"] and audited_actions() == ["thing.done"]


def _workspace(name: str) -> int:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        workspace_id = add_workspace(session, name).id
        session.commit()
        return workspace_id


def test_the_session_is_scoped_to_the_actors_workspace(sqlite_db: str) -> None:
    other = _workspace("globex")
    with unit_of_work(Actor("web:ann", other, Role.EDITOR), requires=Role.EDITOR) as uow:
        assert scope_of(uow.session) == other
        uow.audit("thing.done", entity_type="thing")
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalars(select(AuditEntry.workspace_id)).all() == [other]


def test_the_role_is_checked_before_anything_is_opened(sqlite_db: str) -> None:
    opened: list[int] = []
    for actor, requires in [
        (Actor("web:vic", DEFAULT_WORKSPACE_ID, Role.VIEWER), Role.EDITOR),
        (Actor("web:ed", DEFAULT_WORKSPACE_ID, Role.EDITOR), Role.OWNER),
        (Actor("web:own", DEFAULT_WORKSPACE_ID, Role.OWNER), None),  # an instance change
    ]:
        with pytest.raises(NotPermitted) as refused, unit_of_work(actor, requires=requires):
            opened.append(1)
        assert [e.field for e in refused.value.errors] == ["role"]
    assert opened == [] and audited_actions() == []


def test_an_instance_change_spans_every_workspace_and_its_entry_is_the_instances(
    sqlite_db: str,
) -> None:
    other = _workspace("globex")
    with unit_of_work(Actor.cli(), requires=None) as uow:
        assert scope_of(uow.session) is ALL_WORKSPACES
        uow.audit("instance.thing", entity_type="thing")
        uow.audit("workspace.thing", entity_type="thing", workspace_id=other)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        rows = session.execute(
            select(AuditEntry.action, AuditEntry.workspace_id).order_by(AuditEntry.id)
        ).all()
    assert [tuple(r) for r in rows] == [("instance.thing", None), ("workspace.thing", other)]


def test_the_cli_is_an_instance_admin_and_the_operator_in_the_workspace_it_names() -> None:
    actor = Actor.cli(7)
    assert actor.name.startswith("cli:") and actor.workspace_id == 7
    assert actor.instance_admin and actor.operator and actor.may(Role.OWNER)
    assert Actor.cli().workspace_id == DEFAULT_WORKSPACE_ID
    assert not Actor(
        "web:ann", DEFAULT_WORKSPACE_ID, Role.OWNER, instance_admin=True
    ).operator  # the admin faces never are
