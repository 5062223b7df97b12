"""SimulatorState on its own: the 48-hour dedup window, request ids, event sets."""

from __future__ import annotations

from typing import Any

import pytest

from crm_postback.simulator import RegisteredEventSet, SimulatorState

HOUR = 3600.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_767_225_600.0

    def __call__(self) -> float:
        return self.now


def body(event_id: str | None = "lead-1:lead_sold") -> dict[str, Any]:
    event: dict[str, Any] = {"event": "lead_sold", "event_time": 1_767_225_000}
    if event_id is not None:
        event["event_id"] = event_id
    return {"event_source": "crm", "event_source_id": "7300000000000000001", "data": [event]}


def test_duplicates_are_dropped_within_48_hours_only() -> None:
    clock = FakeClock()
    state = SimulatorState(clock=clock)

    assert [e.duplicate for e in state.accept(body(), "r1")] == [False]
    clock.now += 47 * HOUR
    assert [e.duplicate for e in state.accept(body(), "r2")] == [True]
    clock.now += 2 * HOUR
    assert [e.duplicate for e in state.accept(body(), "r3")] == [False]

    stats = state.stats()
    assert (stats["events_unique"], stats["events_duplicate"]) == (2, 1)
    assert [e.request_id for e in state.events()] == ["r1", "r3"]


def test_events_without_event_id_are_never_duplicates() -> None:
    state = SimulatorState()
    state.accept(body(event_id=None), "r1")
    state.accept(body(event_id=None), "r2")
    assert state.stats()["events_unique"] == 2


def test_request_ids_are_long_and_unique() -> None:
    state = SimulatorState()
    ids = {state.new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert min(len(i) for i in ids) >= 20


def test_re_registering_replaces_the_token_but_keeps_create_time() -> None:
    original = RegisteredEventSet("7300000000000000001", "old", create_time="2025-01-01T00:00:00Z")
    state = SimulatorState(event_sets=[original])
    state.register_event_set(RegisteredEventSet("7300000000000000001", "new"))
    current = state.event_sets["7300000000000000001"]
    assert (current.access_token, current.create_time) == ("new", "2025-01-01T00:00:00Z")


@pytest.mark.parametrize(
    "fields",
    [
        {"event_set_id": "", "access_token": "t"},
        {"event_set_id": "1", "access_token": ""},
        {"event_set_id": "1", "access_token": "t", "kind": "app"},
    ],
)
def test_event_set_fields_are_checked(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RegisteredEventSet(**fields)
