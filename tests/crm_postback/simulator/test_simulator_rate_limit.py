"""The simulator's request limit per access token: above N per window it answers 40100."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from crm_postback.simulator import RegisteredEventSet, SimulatorControl, SimulatorState
from crm_postback.simulator.rate_limit import TokenRateLimit, token_label

BodyFactory = Callable[..., dict[str, Any]]
Track = Callable[..., requests.Response]


def test_off_by_default(track: Track, control: SimulatorControl, crm_body: BodyFactory) -> None:
    replies = [track(crm_body(first=n)).json()["code"] for n in range(30)]

    assert replies == [0] * 30
    stats = control.stats()
    assert stats["rate_limit"] is None and stats["rate_limited"] == 0


def test_above_the_limit_answers_40100_and_counts_it(
    track: Track, control: SimulatorControl, crm_body: BodyFactory
) -> None:
    assert control.set_rate_limit("3 per 10 seconds") == {
        "rate": "3 per 10 seconds",
        "strategy": "moving",
        "requests": 3,
        "per_seconds": 10,
    }

    replies = [track(crm_body(first=n)).json() for n in range(5)]

    assert [reply["code"] for reply in replies] == [0, 0, 0, 40100, 40100]
    assert replies[3]["message"] == "Too many requests. Please retry in some time."
    assert replies[3]["request_id"]
    stats = control.stats()
    assert stats["rate_limited"] == 2
    assert stats["requests_by_code"] == {"0": 3, "40100": 2}
    assert control.count_events() == 3
    log = control.requests()
    assert [entry["rate_limited"] for entry in log] == [False, False, False, True, True]


def test_the_limit_is_per_access_token(
    simulator: Any,
    control: SimulatorControl,
    crm_body: BodyFactory,
    other_crm_set: RegisteredEventSet,
    track: Track,
) -> None:
    control.set_rate_limit("2 per 10 seconds")
    first = [track(crm_body(first=n)).json()["code"] for n in range(3)]
    body = crm_body(first=10)
    body["event_source_id"] = other_crm_set.event_set_id
    other = [track(body, token=other_crm_set.access_token).json()["code"] for _ in range(2)]

    assert first == [0, 0, 40100]
    assert other == [0, 0]


def test_the_window_frees_and_the_limit_turns_off(
    track: Track, control: SimulatorControl, crm_body: BodyFactory
) -> None:
    control.set_rate_limit("2/second")
    assert [track(crm_body(first=n)).json()["code"] for n in range(3)] == [0, 0, 40100]
    time.sleep(1.05)
    assert track(crm_body(first=5)).json()["code"] == 0

    assert control.set_rate_limit(None) is None
    assert [track(crm_body(first=10 + n)).json()["code"] for n in range(5)] == [0] * 5


def test_reset_turns_the_limit_off(
    track: Track, control: SimulatorControl, crm_body: BodyFactory
) -> None:
    control.set_rate_limit("1 per minute", strategy="fixed")
    control.reset()
    assert [track(crm_body(first=n)).json()["code"] for n in range(3)] == [0, 0, 0]
    assert control.stats()["rate_limit"] is None


@pytest.mark.parametrize(
    "body",
    [{"rate": "often"}, {"rate": 5}, {"rate": "5/second", "strategy": "sliding"}, {"n": 1}],
)
def test_bad_limits_are_refused(simulator: Any, body: dict[str, Any]) -> None:
    reply = requests.post(f"{simulator.url}/_sim/rate-limit", json=body, timeout=5)
    assert reply.status_code == 400
    assert requests.get(f"{simulator.url}/_sim/rate-limit", timeout=5).json() == {
        "rate_limit": None
    }


def test_moving_window_never_admits_more_than_n_in_any_window() -> None:
    limit = TokenRateLimit("5/second")
    admitted: list[float] = []
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        if limit.admit("token-a"):
            admitted.append(time.monotonic())
        time.sleep(0.005)
    assert len(admitted) >= 10
    for index, at in enumerate(admitted):
        in_window = [t for t in admitted[index:] if t - at < 0.99]
        assert len(in_window) <= 5


def test_the_log_names_tokens_by_fingerprint_only(crm_set: RegisteredEventSet) -> None:
    state = SimulatorState(event_sets=[crm_set])
    state.admit(crm_set.access_token)
    (entry,) = state.request_log()
    assert entry["token"] == token_label(crm_set.access_token)
    assert crm_set.access_token not in str(state.request_log()) + str(state.stats())
