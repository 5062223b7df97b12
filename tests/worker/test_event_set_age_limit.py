"""An event set's own maximum event age, end to end: trigger in, worker, simulator over HTTP.

The same 10-day-old sale expires unsent on a set limited to 5 days and is delivered on one
limited to 28; a Pixel without a limit of its own takes the web default (7 days), and a
limit changed through the command applies to the next event.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from crm_postback.api import enqueue_trigger
from crm_postback.commands.manage_event_sets import UpdateEventSet, update_event_set
from crm_postback.commands.unit_of_work import Actor
from crm_postback.simulator import SimulatorControl
from models import DEFAULT_WORKSPACE_ID, EventSet, Postback, PostbackStatus, Role
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import TOKEN  # type: ignore[import-not-found]

SALE = (
    {"trigger_type": "lead.sold", "event_name": "lead_sold", "properties": {"currency": "USD"}},
)


def sold(event_set: str, lead: str, days_ago: float) -> dict[str, Any]:
    return {
        "type": "lead.sold",
        "lead_id": lead,
        "event_set": event_set,
        "occurred_at": (datetime.now(UTC) - timedelta(days=days_ago)).isoformat(),
        "attributes": {"value": 10},
        "match_keys": {"email": f"{lead.lower()}@example.com", "ttclid": "E.C.P.abc"},
    }


def status_by_set() -> dict[str, list[str]]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        rows = session.execute(
            select(EventSet.name, Postback.status)
            .join(EventSet, EventSet.id == Postback.event_set_id)
            .order_by(Postback.id)
        ).all()
    found: dict[str, list[str]] = {}
    for name, status in rows:
        found.setdefault(name, []).append(str(status))
    return found


@pytest.fixture
def sets(
    sqlite_db: str, simulator: SimulatorControl, eager: None, make_event_set: Callable[..., int]
) -> SimulatorControl:
    for name, source_id, kind, days in (
        ("short", "7300000000000000005", "crm", 5),
        ("long", "7300000000000000028", "crm", 28),
        ("pixel", "CPIXEL0000000007", "web", None),
        ("pixel-28", "CPIXEL0000000028", "web", 28),
    ):
        simulator.register_event_set(source_id, TOKEN, kind=kind)
        make_event_set(name, source_id, mappings=SALE, kind=kind, max_event_age_days=days)
    return simulator


def test_a_ten_day_old_event_expires_on_a_five_day_set_and_is_delivered_on_a_28_day_one(
    sets: SimulatorControl,
) -> None:
    for name in ("short", "long", "pixel", "pixel-28"):
        enqueue_trigger(sold(name, f"L-{name}", days_ago=10))
    assert status_by_set() == {
        "short": [PostbackStatus.EXPIRED],
        "long": [PostbackStatus.DELIVERED],
        "pixel": [PostbackStatus.EXPIRED],  # web default: 7 days
        "pixel-28": [PostbackStatus.DELIVERED],
    }
    sent = sorted(event["event_source_id"] for event in sets.events())
    assert sent == ["7300000000000000028", "CPIXEL0000000028"]


def test_a_limit_changed_by_the_command_applies_to_the_next_event(sets: SimulatorControl) -> None:
    owner = Actor("cli:ops", DEFAULT_WORKSPACE_ID, Role.OWNER, operator=True)
    update_event_set(UpdateEventSet("short", max_event_age_days=12), owner)
    enqueue_trigger(sold("short", "L-1", days_ago=10))
    update_event_set(UpdateEventSet("short", max_event_age_days=None), owner)  # crm default: 28
    enqueue_trigger(sold("short", "L-2", days_ago=20))
    update_event_set(UpdateEventSet("short", max_event_age_days=0.5), owner)
    enqueue_trigger(sold("short", "L-3", days_ago=1))
    assert status_by_set()["short"] == [
        PostbackStatus.DELIVERED,
        PostbackStatus.DELIVERED,
        PostbackStatus.EXPIRED,
    ]
