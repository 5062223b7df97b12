"""Pacing in the worker, on SQLite against the simulator over HTTP: a spent budget defers a
request (no attempt counted, never an error) and never holds up another token's request."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from crm_postback.api import enqueue_trigger
from crm_postback.core.pacing import RequestPacer, reset_pacers
from crm_postback.simulator import SimulatorControl
from crm_postback.tiktok.response_outcomes import Answer, Outcome
from models import DeliveryAttempt, Postback, PostbackStatus
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import TOKEN, apply_env, trigger_body  # type: ignore[import-not-found]
from worker import delivery
from worker.claim_planning import Item, OutgoingBatch
from worker.tasks import sweep_due_postbacks

OTHER_SET_ID = "7300000000000000002"
OTHER_TOKEN = "test-token-other-654321"


def sold(lead: str, event_set: str = "acme") -> dict[str, Any]:
    return trigger_body(
        "lead.sold",
        lead,
        event_set,
        attributes={"value": 10},
        match_keys={"email": f"{lead.lower()}@example.com"},
    )


def rows() -> list[Postback]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return list(session.scalars(select(Postback).order_by(Postback.id)))


def attempt_rows() -> int:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return int(session.scalar(select(func.count()).select_from(DeliveryAttempt)) or 0)


@pytest.fixture(autouse=True)
def fresh_pacers() -> Iterator[None]:
    reset_pacers()
    yield
    reset_pacers()


@pytest.fixture
def paced(
    sqlite_db: str,
    simulator: SimulatorControl,
    eager: None,
    make_event_set: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
) -> SimulatorControl:
    apply_env(
        monkeypatch,
        TIKTOK_REQUEST_RATE="1 per 10 seconds",
        TIKTOK_PACING_MAX_WAIT_SECONDS="0.2",
    )
    make_event_set()
    return simulator


def test_a_spent_budget_defers_the_request_without_counting_an_attempt(
    paced: SimulatorControl, caplog: pytest.LogCaptureFixture
) -> None:
    enqueue_trigger(sold("L-1"))
    enqueue_trigger(sold("L-2"))

    first, second = rows()
    assert first.status == PostbackStatus.DELIVERED and first.attempts == 1
    assert second.status == PostbackStatus.RETRYING and second.attempts == 0
    assert second.lease_until is None and second.last_code is None
    assert (second.last_message or "").startswith("paced: ")
    assert "1 per 10 seconds" in (second.last_message or "")
    assert second.next_attempt_at is not None
    wait = second.next_attempt_at.replace(tzinfo=UTC) - datetime.now(UTC)
    assert timedelta(seconds=8) < wait <= timedelta(seconds=10.1)  # the pacer adds 50 ms
    assert paced.stats()["requests_total"] == 1
    assert attempt_rows() == 1  # nothing was sent for the paced row
    assert TOKEN not in caplog.text

    # Not due before its window frees: the sweeper leaves it alone.
    sweep_due_postbacks()
    assert rows()[1].status == PostbackStatus.RETRYING

    # Once the window has freed, sent once, its attempt the first.
    reset_pacers()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        row = session.get(Postback, second.id)
        assert row is not None
        row.next_attempt_at = datetime.now(UTC) - timedelta(seconds=1)
        session.commit()
    sweep_due_postbacks()
    sweep_due_postbacks()
    _, second = rows()
    assert second.status == PostbackStatus.DELIVERED and second.attempts == 1
    assert paced.count_events(event_id=second.event_id or "") == 1
    assert paced.count_events(include_duplicates=True) == 2
    assert attempt_rows() == 2


def test_another_token_is_not_held_up_by_a_spent_one(
    paced: SimulatorControl, make_event_set: Callable[..., int]
) -> None:
    paced.register_event_set(OTHER_SET_ID, OTHER_TOKEN, kind="crm")
    make_event_set(name="other", source_id=OTHER_SET_ID, token=OTHER_TOKEN)
    enqueue_trigger(sold("L-1"))  # takes acme's only slot
    enqueue_trigger(sold("L-2"))
    enqueue_trigger(sold("L-3", event_set="other"))

    statuses = [row.status for row in rows()]
    assert statuses == [PostbackStatus.DELIVERED, PostbackStatus.RETRYING, PostbackStatus.DELIVERED]


def test_without_a_rate_nothing_is_paced(
    sqlite_db: str, simulator: SimulatorControl, eager: None, make_event_set: Callable[..., int]
) -> None:
    make_event_set()
    for n in range(5):
        enqueue_trigger(sold(f"L-{n}"))
    assert {row.status for row in rows()} == {PostbackStatus.DELIVERED}


class _Client:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def track(self, access_token: str, body: dict[str, Any]) -> Answer:
        self.sent.append(access_token)
        return Answer(Outcome.DELIVERED, 200, 0, "OK", f"r-{len(self.sent)}")


class _Pacer:
    """Token `a` frees a slot after 0.5 s; `b` always has one; `c` frees after 30 s."""

    def __init__(self) -> None:
        self.now = 0.0

    def try_acquire(self, access_token: str) -> float:
        if access_token == "b":
            return 0.0
        free_at = 0.5 if access_token == "a" else 30.0
        return 0.0 if self.now >= free_at else free_at - self.now

    def acquire(self, access_token: str, max_wait: float, *, sleep: Any) -> float:
        return self.try_acquire(access_token)


def _batch(token: str, set_id: int) -> OutgoingBatch:
    return OutgoingBatch(
        event_set_id=set_id,
        workspace_id=1,
        event_set_name=f"set-{token}",
        event_source="crm",
        source_id=str(set_id),
        test_event_code=None,
        access_token=token,
        items=[Item(set_id * 10, {"event": "Lead", "event_id": f"e{set_id}"}, 1)],
    )


def test_other_batches_go_first_the_wait_is_bounded_and_the_rest_deferred() -> None:
    client, pacer = _Client(), _Pacer()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        pacer.now += seconds

    sent = delivery.send_all(
        client,  # type: ignore[arg-type]
        [_batch("a", 1), _batch("c", 2), _batch("b", 3)],
        pacer,  # type: ignore[arg-type]
        1.0,
        sleep=sleep,
    )

    assert client.sent == ["b", "a"]  # b before a's wait; c never
    assert slept == [0.5]
    assert [result.postback_id for result in sent.results] == [30, 10]
    assert [(d.batch.access_token, d.retry_in) for d in sent.deferred] == [("c", 30.0)]


def test_the_pacing_key_is_not_the_token() -> None:
    assert TOKEN not in RequestPacer.key(TOKEN)
    assert RequestPacer.key(TOKEN) == RequestPacer.key(TOKEN) != RequestPacer.key(OTHER_TOKEN)


def test_rows_due_soon_get_their_follow_up_even_when_another_token_waits_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Token `a` frees in 0.3 s, `c` in 30 s: `a`'s rows get a follow-up task due then, and
    `c`'s are left to the sweeper. (Waiting for the longest of all would have sent none.)"""
    from worker import tasks

    published: list[tuple[Any, float]] = []

    def apply_async(args: Any, countdown: float) -> None:
        published.append((args, countdown))

    monkeypatch.setattr(tasks.deliver_postbacks, "apply_async", apply_async)
    tasks._deliver_when_free(
        [delivery.Deferred(_batch("a", 1), 0.3), delivery.Deferred(_batch("c", 2), 30.0)]
    )
    assert published == [(([10],), pytest.approx(0.3 + tasks.PACED_MARGIN))]
    published.clear()
    tasks._deliver_when_free([delivery.Deferred(_batch("c", 2), 30.0)])
    assert published == []
