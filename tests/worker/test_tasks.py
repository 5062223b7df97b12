"""The tasks' handling of what a wake-up message carries, and of a repeated run."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from crm_postback.api import enqueue_trigger
from crm_postback.core.settings import MAX_BATCH_LINGER_MS, get_settings
from models import Trigger, TriggerStatus
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import apply_env, trigger_body  # type: ignore[import-not-found]
from worker.tasks import _linger_seconds, process_triggers


@pytest.mark.parametrize(
    ("carried", "seconds"),
    [
        (None, 0.25),  # a publisher that did not say: this worker's BATCH_LINGER_MS
        (0, 0.0),
        (40, 0.04),
        (10**12, MAX_BATCH_LINGER_MS / 1000),  # never longer than a setting may say
        (-5, 0.0),
        (True, 0.0),
        ("100", 0.0),
        (1.5e9, 0.0),
        ([100], 0.0),
    ],
)
def test_a_wake_up_lingers_as_its_message_says_within_the_setting_s_bounds(
    carried: object, seconds: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, BATCH_LINGER_MS="250")
    assert _linger_seconds(get_settings(), carried) == seconds


def _submitted(lead: str) -> dict[str, object]:
    return trigger_body("lead.submitted", lead, match_keys={"email": f"{lead.lower()}@example.com"})


def _run(trigger_ids: list[int], linger_ms: int, *, redelivered: bool = False) -> None:
    process_triggers.push_request(delivery_info={"redelivered": redelivered})
    try:
        process_triggers.run(trigger_ids, linger_ms)
    finally:
        process_triggers.pop_request()


def test_a_redelivered_wake_up_wakes_another_for_the_triggers_that_rode_on_it(
    on_redis: Callable[[], int], sqlite_db: str, make_event_set: Callable[..., int]
) -> None:
    """The second trigger published nothing: the first one's wake-up was pending. That
    message's worker died, and its repeated run takes only its own trigger: it must wake
    another task for the second, or only the sweeper would send it."""
    make_event_set()
    first = enqueue_trigger(_submitted("L-first"))
    second = enqueue_trigger(_submitted("L-second"))
    assert on_redis() == 1
    _run([first.trigger_id], 100, redelivered=True)
    assert on_redis() == 2  # a wake-up for what is still waiting
    with session_scope(workspace=ALL_WORKSPACES) as session:
        statuses = {t.id: t.status for t in session.scalars(select(Trigger))}
    assert statuses == {
        first.trigger_id: TriggerStatus.RESOLVED,
        second.trigger_id: TriggerStatus.RECEIVED,
    }


def test_only_a_first_wake_up_for_new_triggers_on_redis_lingers(
    on_redis: Callable[[], int],
    sqlite_db: str,
    make_event_set: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_event_set()
    slept: list[float] = []
    monkeypatch.setattr("worker.tasks.time.sleep", slept.append)
    ids = [enqueue_trigger(_submitted(f"L-{n}")).trigger_id for n in range(3)]
    _run([ids[0]], 300)
    assert slept == [0.3]
    _run([], 300)  # a full batch left more waiting: nothing to wait for
    _run([ids[1]], 300, redelivered=True)  # a worker died: no second linger
    apply_env(monkeypatch, BROKER_URL="memory://")
    _run([ids[2]], 300)  # only Redis brokers linger
    assert slept == [0.3]
