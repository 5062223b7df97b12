"""Per-key rate limits of the ingest API: 429 with Retry-After, honoured by the Python client,
counted per key, shared through Redis by several app instances, never on the event loop."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from crm_postback.core.rate_limits import RateLimit
from crm_postback.http_client import PostbackClient
from crm_postback.simulator import SimulatorControl
from crm_postback.web.app import create_app
from crm_postback.web.auth import INGEST_RATE_LIMIT
from models import ApiKey
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import app_in_thread, apply_env  # type: ignore[import-not-found]
from tests.crm_postback.web.conftest import (  # type: ignore[import-not-found]
    bearer,
    new_key,
    submitted,
)

LEAD_KEYS = {"match_keys": {"ttclid": "E.C.P.x"}}


def key_id(key: str) -> int:
    from crm_postback.configuration.api_keys import key_digest

    with session_scope(workspace=ALL_WORKSPACES) as session:
        found = session.scalar(select(ApiKey.id).where(ApiKey.key_sha256 == key_digest(key)))
        assert found is not None
        return found


def requests_until_refused(client: TestClient, key: str, most: int = 20) -> tuple[int, Any]:
    """How many requests (alternating the routes) were answered before the first 429."""
    calls: list[Callable[[], Any]] = [
        lambda: client.get("/v1/leads/L-1/postbacks", headers=bearer(key)),
        lambda: client.put("/v1/leads/L-1", json=LEAD_KEYS, headers=bearer(key)),
    ]
    for count in range(most):
        response = calls[count % 2]()
        if response.status_code == 429:
            return count, response
    return most, None


def test_over_its_limit_a_key_gets_429_with_retry_after(client: TestClient) -> None:
    key = new_key("chatty", rate_limit="3/minute")
    count, refused = requests_until_refused(client, key)
    assert count == 3
    assert refused.json() == {
        "errors": [
            {
                "pointer": None,
                "field": "Authorization",
                "message": refused.json()["errors"][0]["message"],
            }
        ]
    }
    assert "rate limit" in refused.json()["errors"][0]["message"]
    retry_after = refused.headers["retry-after"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 60
    # Every other key counts on its own.
    assert requests_until_refused(client, new_key("quiet", rate_limit="3/minute"))[0] == 3


def test_the_setting_is_the_default_and_none_turns_it_off(
    sqlite_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, INGEST_KEY_RATE_LIMIT="2 per minute")
    by_setting, unlimited = new_key("a"), new_key("b", rate_limit="none")
    with TestClient(create_app()) as client:
        assert requests_until_refused(client, by_setting)[0] == 2
        assert requests_until_refused(client, unlimited, most=30)[0] == 30
    apply_env(monkeypatch, INGEST_KEY_RATE_LIMIT="none")
    with TestClient(create_app()) as client:
        assert requests_until_refused(client, new_key("c"), most=30)[0] == 30


def test_unauthenticated_requests_count_against_no_key(anonymous: TestClient) -> None:
    key = new_key("k", rate_limit="2/minute")
    for _ in range(5):
        assert anonymous.get("/v1/leads/L-1/postbacks").status_code == 401
        wrong = anonymous.get("/v1/leads/L-1/postbacks", headers=bearer(key + "x"))
        assert wrong.status_code == 401
    assert requests_until_refused(anonymous, key)[0] == 2


def test_the_python_client_waits_retry_after_and_then_succeeds(
    ready: SimulatorControl, live_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_key("client", rate_limit="1/second")
    slept: list[float] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr("crm_postback.http_client.time.sleep", sleep)
    client = PostbackClient(live_server, key, retries=3, backoff_seconds=0.01)
    first = client.send_trigger(submitted("L-1"))
    second = client.send_trigger(submitted("L-2"))  # within the second: 429, then a retry
    assert first.status == second.status == "accepted"
    assert slept and slept[0] >= 1  # Retry-After, not the 10 ms backoff
    assert ready.stats()["events_accepted"] == 2


def test_two_app_instances_share_the_count_through_redis(
    sqlite_db: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_key("shared", rate_limit="4/minute")
    apply_env(monkeypatch, RATE_LIMIT_STORAGE_URL=redis_url)
    # Key ids repeat from one test database to the next: forget this id's earlier counts.
    RateLimit(INGEST_RATE_LIMIT, "4/minute", redis_url).clear(str(key_id(key)))
    with TestClient(create_app()) as one, TestClient(create_app()) as two:
        for client in (one, two, one, two):
            assert client.get("/v1/leads/L-1/postbacks", headers=bearer(key)).status_code == 404
        for client in (one, two):
            refused = client.get("/v1/leads/L-1/postbacks", headers=bearer(key))
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1


def test_without_redis_each_process_counts_its_own(sqlite_db: str) -> None:
    key = new_key("apart", rate_limit="2/minute")
    with TestClient(create_app()) as one, TestClient(create_app()) as two:
        assert requests_until_refused(one, key)[0] == 2
        assert requests_until_refused(two, key)[0] == 2


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A port that accepts connections and never answers: each limit check waits for the
    storage's timeout, then counts in the process."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


def test_a_slow_limit_storage_does_not_hold_up_other_requests(
    sqlite_db: str, silent_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, RATE_LIMIT_STORAGE_URL=silent_redis)
    key = new_key("slow")
    with app_in_thread(create_app()) as url:
        results: dict[str, float] = {}

        def limited() -> None:
            started = time.monotonic()
            httpx.get(f"{url}/v1/leads/L-1/postbacks", headers=bearer(key), timeout=10)
            results["limited"] = time.monotonic() - started

        thread = threading.Thread(target=limited)
        thread.start()
        time.sleep(0.1)  # the limited request is waiting on the silent storage now
        started = time.monotonic()
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        results["health"] = time.monotonic() - started
        thread.join()
    assert results["limited"] >= 0.4  # it did wait for the storage's timeout
    assert results["health"] < 0.3
