"""The transaction a use case runs in: its changes, its audit entry, then its broker messages.

Every state-changing command opens one `UnitOfWork`: it checks the actor's role first (the
one write check of every face), then opens a session scoped to the actor's workspace, so
every query of the command sees that workspace's rows only (`models.workspace_scope`);
something of another workspace is not found, exactly like something that does not exist.
The services it calls change rows in `uow.session` and never commit. Audit entries are
written in the same transaction, as the command's actor: the event set and mapping services
record their own (the command passes `actor=actor.name`); the other commands (accounts,
keys, replay, erasure, purge) record theirs with `uow.audit(...)`. Broker messages are asked
for with `uow.publish_after_commit(...)`. Leaving the block commits once; only then are the
messages sent (as pypi/warehouse hooks task sends to the commit), so a worker never looks
for a row that is not there yet, and a rolled-back change sends nothing. A broker that is
down does not undo the commit: the rows are due in the database and the beat sweeper sends
them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from crm_postback.configuration import audit
from crm_postback.core.errors import FieldError, InputRejected
from models import DEFAULT_WORKSPACE_ID, Role
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES, WorkspaceScope
from worker.wakeups import publish_or_leave_for_sweeper


class NotPermitted(InputRejected):
    """The actor's role in the workspace does not allow this (403 on the web faces)."""


@dataclass(frozen=True)
class Actor:
    """Who asked, in which workspace, with which role.

    `name`: `cli:<os user>`, `web:<user>` (a logged-in browser, on a page or calling the JSON
    API with its session) or `api:<user>` (the JSON API with an admin token); the web faces
    take it from `Admin` and its membership of the request's workspace. `role` is the role in
    `workspace_id`; an `instance_admin` may do everything in every workspace.

    `operator`: runs on the host, with its environment: only the operator may point an event
    set's token at an environment variable (`env:POSTBACK_TOKEN_…`, one environment for every
    workspace) and hear a variable's name in an error. Whoever runs the CLI has the database,
    the environment and the token key in reach already: the CLI (`Actor.cli`) acts as an
    instance administrator and the operator, in the workspace it names (`--workspace`).
    """

    name: str
    workspace_id: int
    role: Role
    instance_admin: bool = False
    operator: bool = False

    @classmethod
    def cli(cls, workspace_id: int = DEFAULT_WORKSPACE_ID) -> Actor:
        """Whoever runs the command: `cli:<login name>`, in `workspace_id`."""
        return cls(audit.cli_actor(), workspace_id, Role.OWNER, instance_admin=True, operator=True)

    def may(self, role: Role) -> bool:
        return self.instance_admin or self.role.includes(role)

    def require(self, role: Role) -> None:
        """The one check of every state-changing use case (`unit_of_work(requires=...)`)."""
        if not self.may(role):
            raise NotPermitted(
                [FieldError("role", f"this needs the {role.value} role in this workspace")]
            )

    def require_instance_admin(self) -> None:
        if not self.instance_admin:
            raise NotPermitted([FieldError("role", "this needs an instance administrator")])

    def __str__(self) -> str:
        return self.name


@dataclass
class UnitOfWork:
    session: Session
    actor: Actor
    _publishes: list[tuple[Callable[[], object], str]] = field(default_factory=list)
    # After the block: what a broker that was down did not get (left for the sweeper).
    unsent: list[str] = field(default_factory=list)

    def audit(
        self,
        action: str,
        *,
        entity_type: str,
        entity_id: int | None = None,
        event_set_id: int | None = None,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
        note: str | None = None,
        workspace_id: int | None = None,
    ) -> None:
        """In the session's workspace; in an instance-level unit of work (`requires=None`)
        the instance's own entry unless `workspace_id` names one."""
        audit.record(
            self.session,
            actor=self.actor.name,
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            event_set_id=event_set_id,
            before=before,
            after=after,
            note=note,
            workspace_id=workspace_id,
        )

    def publish_after_commit(self, publish: Callable[[], object], *, waiting: str) -> None:
        """`publish()` runs once the commit succeeded; `waiting` names the rows for the log
        line written when the broker is unavailable."""
        self._publishes.append((publish, waiting))

    def _send_published(self) -> None:
        for publish, waiting in self._publishes:
            if not publish_or_leave_for_sweeper(publish, waiting):
                self.unsent.append(waiting)
        self._publishes.clear()


@contextmanager
def unit_of_work(
    actor: Actor, *, requires: Role | None, dry_run: bool = False
) -> Iterator[UnitOfWork]:
    """Commits when the block ends without an error (rolls back otherwise), then publishes.
    With `dry_run` the block's changes are rolled back and nothing is published: build the
    result inside the block (a rollback expires the loaded rows).

    `requires`: the role the use case needs in the actor's workspace, checked before anything
    is read; the session is scoped to that workspace. `None`: a change of the instance itself
    (workspaces, admin users), for instance administrators only, in a session over every
    workspace.
    """
    scope: WorkspaceScope
    if requires is None:
        actor.require_instance_admin()
        scope = ALL_WORKSPACES
    else:
        actor.require(requires)
        scope = actor.workspace_id
    with session_scope(workspace=scope) as session:
        uow = UnitOfWork(session, actor)
        yield uow
        if dry_run:
            session.rollback()
            uow._publishes.clear()
            return
        session.commit()
    uow._send_published()
