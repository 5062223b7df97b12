"""The Events API client's total deadline: one thread keeps them all, and a connection back in
the pool is never shut by the exchange that used it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from crm_postback.tiktok import events_client
from crm_postback.tiktok.events_client import EventsApiClient
from crm_postback.tiktok.response_outcomes import Outcome


class KeepAliveServer:
    """HTTP/1.1 with keep-alive, answering TikTok's OK; records each client address."""

    def __init__(self) -> None:
        self.connections: list[tuple[str, int]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                owner.connections.append(self.client_address)
                body = json.dumps({"code": 0, "message": "OK", "request_id": "r"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> KeepAliveServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def server() -> Iterator[KeepAliveServer]:
    with KeepAliveServer() as running:
        yield running


def track(api: EventsApiClient) -> Outcome:
    return api.track("token", {"data": []}).outcome


def test_no_thread_is_started_per_request(
    server: KeepAliveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A threading.Timer per request started a thread for every Events API call."""
    api = EventsApiClient(server.url, (1.0, 5.0), total_timeout=30)
    assert track(api) is Outcome.DELIVERED  # the connection and the deadline thread exist now
    before = threading.active_count()
    started: list[threading.Thread] = []
    start = threading.Thread.start

    def counted(thread: threading.Thread) -> None:
        started.append(thread)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counted)
    outcomes = [track(api) for _ in range(50)]
    monkeypatch.undo()
    assert set(outcomes) == {Outcome.DELIVERED}
    assert started == []
    assert threading.active_count() == before
    assert [t.name for t in threading.enumerate()].count("events-api-deadlines") == 1
    assert len(set(server.connections)) == 1


def test_a_connection_back_in_the_pool_is_not_shut_when_the_deadline_passes(
    server: KeepAliveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """urllib3 puts the connection back in the pool at the body's end, inside the read; a
    deadline passing after that shut the socket another thread may have taken meanwhile."""
    read_body = events_client._read_body

    def read_then_expire(*args: Any) -> tuple[bytes, bool]:
        result = read_body(*args)
        watchdog = events_client._current.watchdog
        expire = getattr(watchdog, "expire", None) or watchdog._expire
        expire()  # the deadline passes now, the body read and its connection back in the pool
        return result

    api = EventsApiClient(server.url, (1.0, 5.0), total_timeout=30)
    assert track(api) is Outcome.DELIVERED  # a connection in the pool
    monkeypatch.setattr(events_client, "_read_body", read_then_expire)
    late = api.track("token", {"data": []})
    monkeypatch.undo()
    assert late.outcome is Outcome.TRANSIENT and "deadline" in late.message
    assert track(api) is Outcome.DELIVERED
    assert len(server.connections) == 3
    assert len(set(server.connections)) == 1  # the pooled connection was still good


def test_a_later_exchange_with_an_earlier_deadline_is_not_kept_waiting() -> None:
    deadlines = events_client._deadlines()
    far, near = events_client._Watchdog(3600), events_client._Watchdog(0.05)
    deadlines.add(time.monotonic() + 3600, far)
    deadlines.add(time.monotonic() + 0.05, near)
    for _ in range(1000):
        if near.expired:
            break
        time.sleep(0.01)
    assert near.expired and not far.expired
    far.__exit__(None, None, None)


def test_the_urllib3_the_client_needs_is_declared() -> None:
    """The body is read with HTTPResponse.read1, which urllib3 1.26 (allowed by requests)
    lacks."""
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement
    from urllib3.response import HTTPResponse

    pyproject = Path(__file__).parents[3] / "pyproject.toml"
    declared = [
        Requirement(line)
        for line in tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    ]
    urllib3 = next(r for r in declared if r.name == "urllib3")
    assert not urllib3.specifier.contains("1.26.20") and urllib3.specifier.contains("2.8.0")
    assert hasattr(HTTPResponse, "read1")
