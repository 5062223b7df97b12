"""Shared fixtures for the TikTok simulator tests: event sets, payload builders, a live server."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from crm_postback.simulator import (
    RegisteredEventSet,
    SimulatorControl,
    SimulatorServer,
    SimulatorState,
)

TRACK_PATH = "/open_api/v1.3/event/track/"
ADVERTISER_ID = "6900000000000000001"

Body = dict[str, Any]
BodyFactory = Callable[..., Body]
Track = Callable[..., requests.Response]


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.fixture
def crm_set() -> RegisteredEventSet:
    return RegisteredEventSet(
        "7300000000000000001", "crm-token-1", "crm", "AcmeCRM leads", ADVERTISER_ID
    )


@pytest.fixture
def web_set() -> RegisteredEventSet:
    return RegisteredEventSet(
        "CPIXEL00000000000001", "web-token-1", "web", "Landing pixel", ADVERTISER_ID
    )


@pytest.fixture
def other_crm_set() -> RegisteredEventSet:
    return RegisteredEventSet(
        "7300000000000000002", "crm-token-2", "crm", "Other account", "6900000000000000002"
    )


@pytest.fixture
def registry(
    crm_set: RegisteredEventSet, web_set: RegisteredEventSet, other_crm_set: RegisteredEventSet
) -> dict[str, RegisteredEventSet]:
    return {s.event_set_id: s for s in (crm_set, web_set, other_crm_set)}


@pytest.fixture
def crm_body(crm_set: RegisteredEventSet) -> BodyFactory:
    """CRM requests shaped like the contract's §8 reference payload, one lead per event."""

    def build(count: int = 1, *, first: int = 0, event: str = "lead_sold") -> Body:
        now = int(time.time())
        data = []
        for number in range(first, first + count):
            lead_id = f"73{number:017d}"
            data.append(
                {
                    "event": event,
                    "event_time": now - 60,
                    "event_id": f"{lead_id}:{event}",
                    "lead": {"lead_id": lead_id, "lead_event_source": "AcmeCRM"},
                    "user": {
                        "email": [sha256(f"lead{number}@example.com")],
                        "phone": [sha256("+12133734253")],
                        "external_id": [sha256(f"uuid-{number}")],
                    },
                    "properties": {
                        "value": 42.5,
                        "currency": "USD",
                        "order_id": f"offer-{number}",
                        "description": "sold to buyer X",
                    },
                }
            )
        return {
            "event_source": "crm",
            "event_source_id": crm_set.event_set_id,
            "test_event_code": "TEST12345",
            "data": data,
        }

    return build


@pytest.fixture
def web_body(web_set: RegisteredEventSet) -> BodyFactory:
    def build() -> Body:
        return {
            "event_source": "web",
            "event_source_id": web_set.event_set_id,
            "data": [
                {
                    "event": "Lead",
                    "event_time": int(time.time()),
                    "event_id": "web-1",
                    "user": {
                        "email": [sha256("visitor@example.com")],
                        "ttclid": "E.C.P.abc123",
                        "ttp": "2Kx8b3L0F1nTq",
                        "ip": "203.0.113.7",
                        "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
                    },
                    "page": {"url": "https://example.com/form"},
                }
            ],
        }

    return build


@pytest.fixture
def simulator(registry: dict[str, RegisteredEventSet]) -> Iterator[SimulatorServer]:
    with SimulatorServer(state=SimulatorState(event_sets=registry.values())) as server:
        yield server


@pytest.fixture
def control(simulator: SimulatorServer) -> Iterator[SimulatorControl]:
    client = SimulatorControl(simulator.url)
    yield client
    client.close()


@pytest.fixture
def track(simulator: SimulatorServer, crm_set: RegisteredEventSet) -> Iterator[Track]:
    """POST a body to the simulator's track endpoint as a TikTok client would."""
    session = requests.Session()

    def post(
        body: object, *, token: str | None = crm_set.access_token, timeout: float = 5.0
    ) -> requests.Response:
        headers = {"Access-Token": token} if token is not None else {}
        return session.post(simulator.url + TRACK_PATH, json=body, headers=headers, timeout=timeout)

    yield post
    session.close()
