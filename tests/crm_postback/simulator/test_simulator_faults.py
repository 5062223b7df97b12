"""Injected faults: throttling, 5xx (with and without a JSON body), auth errors, slowness."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from crm_postback.simulator import Faults, SimulatorControl
from crm_postback.simulator.faults import FaultKind

BodyFactory = Callable[..., dict[str, Any]]
Track = Callable[..., requests.Response]


def test_throttle_answers_40100_with_http_200(
    track: Track, control: SimulatorControl, crm_body: BodyFactory
) -> None:
    control.set_faults(throttle_rate=1)

    replies = [track(crm_body(first=n)) for n in range(5)]

    assert {r.status_code for r in replies} == {200}
    assert {r.json()["code"] for r in replies} == {40100}
    assert replies[0].json()["message"] == "Too many requests. Please retry in some time."
    assert control.events() == []
    assert control.stats()["requests_by_code"] == {"40100": 5}


def test_server_errors_alternate_500_503_and_html_502(
    track: Track, control: SimulatorControl, crm_body: BodyFactory
) -> None:
    control.set_faults(http_5xx_rate=1)

    replies = [track(crm_body(first=n)) for n in range(6)]

    assert [r.status_code for r in replies] == [500, 503, 502, 500, 503, 502]
    assert replies[0].json()["code"] == 50000
    assert replies[0].json()["message"] == "System error"
    assert len(replies[0].json()["request_id"]) >= 20
    assert replies[1].json()["code"] == 50002
    assert replies[2].headers["Content-Type"].startswith("text/html")
    with pytest.raises(ValueError):
        replies[2].json()
    assert control.events() == []
    stats = control.stats()
    assert stats["requests_by_http_status"] == {"500": 2, "502": 2, "503": 2}
    assert stats["requests_by_code"] == {"50000": 2, "50002": 2}


def test_auth_error_fault(track: Track, control: SimulatorControl, crm_body: BodyFactory) -> None:
    control.set_faults(auth_error_rate=1)
    reply = track(crm_body()).json()
    assert (reply["code"], reply["message"]) == (40105, "Access token is invalid.")


def test_slow_answer_times_out_the_client_but_events_still_land(
    track: Track, control: SimulatorControl, crm_body: BodyFactory
) -> None:
    control.set_faults(slow_rate=1, slow_seconds=1)
    body = crm_body(2)

    with pytest.raises(requests.Timeout):
        track(body, timeout=0.3)

    arrived = control.wait_for_events(2, timeout=5)
    assert [e["payload"] for e in arrived] == body["data"]


def test_a_seed_makes_faults_reproducible(
    track: Track, control: SimulatorControl, crm_body: BodyFactory
) -> None:
    def pattern() -> list[int]:
        control.reset()
        control.set_faults(throttle_rate=0.5, seed=7)
        return [track(crm_body(first=n)).json()["code"] for n in range(20)]

    first = pattern()
    assert set(first) == {0, 40100}
    assert pattern() == first


def test_partial_update_keeps_other_settings(control: SimulatorControl) -> None:
    control.set_faults(throttle_rate=0.25, slow_seconds=0.5)
    current = control.set_faults(http_5xx_rate=0.1)
    assert current["throttle_rate"] == 0.25
    assert current["slow_seconds"] == 0.5
    assert current["http_5xx_rate"] == 0.1


@pytest.mark.parametrize(
    ("roll", "kind"),
    [
        (0.05, FaultKind.SERVER_ERROR),
        (0.15, FaultKind.THROTTLE),
        (0.25, FaultKind.AUTH_ERROR),
        (0.35, FaultKind.SLOW),
        (0.45, FaultKind.NONE),
    ],
)
def test_rates_stack_in_a_fixed_order(roll: float, kind: FaultKind) -> None:
    faults = Faults(http_5xx_rate=0.1, throttle_rate=0.1, auth_error_rate=0.1, slow_rate=0.1)
    assert faults.pick(roll) is kind


@pytest.mark.parametrize(
    "changes",
    [
        {"throttle_rate": -0.1},
        {"throttle_rate": 1.5},
        {"throttle_rate": True},
        {"throttle_rate": "0.5"},
        {"slow_seconds": -1},
        {"slow_seconds": float("inf")},
        {"seed": 1.5},
        {"typo_rate": 0.1},
    ],
)
def test_invalid_fault_settings_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Faults().updated(changes)
