"""The outbox rows and attempts the worker writes carry their trigger's workspace and event set.

No foreign key ties a postback's or an attempt's workspace to a workspace (models.workspaces,
WorkspaceOwnedThroughParent), and none ever tied it to its parent's: the workspace filter
trusts these columns, so this checks them after real deliveries in two workspaces, retries
included, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, select

from crm_postback.api import enqueue_triggers
from crm_postback.commands.manage_workspaces import AddWorkspace, add_workspace
from crm_postback.commands.unit_of_work import Actor
from crm_postback.simulator import SimulatorControl
from models import DeliveryAttempt, Postback, PostbackStatus, Trigger
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import TOKEN, trigger_body  # type: ignore[import-not-found]
from tests.worker.test_delivery import make_due  # type: ignore[import-not-found]
from worker.tasks import sweep_due_postbacks


def test_postbacks_and_attempts_carry_the_workspace_and_event_set_of_their_trigger(
    any_db: str,
    simulator: SimulatorControl,
    eager: None,
    make_event_set: Callable[..., int],
) -> None:
    globex = add_workspace(AddWorkspace("globex"), Actor.cli()).id
    make_event_set()
    for source_id in ("7300000000000000002", "7300000000000000003"):
        simulator.register_event_set(source_id, TOKEN, kind="crm")
    make_event_set(name="acme-2", source_id="7300000000000000002")
    make_event_set(name="globex", source_id="7300000000000000003", workspace_id=globex)

    def batch(event_set: str, leads: range) -> list[dict[str, object]]:
        return [
            trigger_body(kind, f"L-{event_set}-{n}", event_set, match_keys={"ttclid": f"E.{n}"})
            for n in leads
            for kind in ("lead.submitted", "lead.sold")
        ]

    simulator.set_faults(http_5xx_rate=1.0)  # every event an attempt that failed, then one more
    for items, workspace in (
        (batch("acme", range(5)) + batch("acme-2", range(5)), "default"),
        (batch("globex", range(5)), "globex"),
    ):
        assert all(item.accepted for item in enqueue_triggers(items, workspace=workspace))
    simulator.set_faults(http_5xx_rate=0.0)
    make_due()
    sweep_due_postbacks()

    with session_scope(workspace=ALL_WORKSPACES) as session:
        statuses = session.execute(
            select(Postback.workspace_id, Postback.status, func.count()).group_by(
                Postback.workspace_id, Postback.status
            )
        ).all()
        assert sorted(statuses) == [
            (1, PostbackStatus.DELIVERED, 20),
            (globex, PostbackStatus.DELIVERED, 10),
        ]
        mismatched = session.scalar(
            select(func.count())
            .select_from(Postback)
            .join(Trigger, Trigger.id == Postback.trigger_id)
            .where(
                (Postback.workspace_id != Trigger.workspace_id)
                | (Postback.event_set_id != Trigger.event_set_id)
            )
        )
        assert mismatched == 0
        attempts = session.execute(
            select(DeliveryAttempt.workspace_id, Postback.workspace_id).join(
                Postback, Postback.id == DeliveryAttempt.postback_id
            )
        ).all()
        assert len(attempts) == 60  # a failed and a delivered attempt per event
        assert all(own == parent for own, parent in attempts)
