"""Hostile and odd answers from whatever sits at the Events API address, through the worker.

A real socket server in a thread stands in for TikTok (or for the proxy, the wrong host, the
broken edge in front of it) and answers each request with raw bytes: an HTML 404, a `code` of
2**70, a 5,000-character request_id, a body trickling a byte at a time, a 5 MB body, a JSON
list, bytes that are not UTF-8, an envelope missing its fields. Each case goes through the
worker's own send and record (`worker.tasks.deliver`) on SQLite, or the client itself, and
asserts what is stored, how many requests were made, and that each request ended by its
deadline (bytes read, never a tight wall-clock threshold).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import select

from crm_postback.api import enqueue_trigger
from crm_postback.core.settings import get_settings
from crm_postback.observability import metric_definitions
from crm_postback.tiktok import events_client
from crm_postback.tiktok.events_client import EventsApiClient
from crm_postback.tiktok.response_outcomes import (
    MAX_ANSWER_BYTES,
    MESSAGE_CHARS,
    REQUEST_ID_CHARS,
    Outcome,
)
from models import (
    DeliveryAttempt,
    EventSet,
    Postback,
    PostbackStatus,
    Trigger,
)
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import apply_env  # type: ignore[import-not-found]
from worker.processing import process_triggers
from worker.tasks import deliver

HTML_404 = (
    b"<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1>"
    b"<p>The requested URL was not found on this server.</p></body></html>"
)


def envelope(code: object = 0, message: object = "OK", request_id: object = "req-1") -> bytes:
    return json.dumps({"code": code, "message": message, "request_id": request_id}).encode()


@dataclass
class Reply:
    """One scripted answer: status line, headers, body; optionally trickled."""

    status: str = "200 OK"
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    # Seconds between single bytes of the body (or of the whole answer, with `trickle_head`).
    trickle_every: float = 0.0
    trickle_head: bool = False
    # No Content-Length, chunked transfer encoding.
    chunked: bool = False
    # A Content-Length other than the body's (the server hangs up early).
    declared_length: int | None = None

    def head(self) -> bytes:
        lines = [f"HTTP/1.1 {self.status}", f"Content-Type: {self.content_type}"]
        if self.chunked:
            lines.append("Transfer-Encoding: chunked")
        else:
            declared = len(self.body) if self.declared_length is None else self.declared_length
            lines.append(f"Content-Length: {declared}")
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


class ScriptedServer:
    """HTTP/1.1 on a real socket: reads each request whole, answers with `reply(request)`."""

    def __init__(self, reply: Callable[[bytes], Reply]) -> None:
        self.reply = reply
        self.requests: list[bytes] = []  # request bodies, in order
        self.body_bytes_sent = 0  # of trickled answers, before the client hung up
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def events_per_request(self) -> list[int]:
        return [len(json.loads(body)["data"]) for body in self.requests]

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            body = _read_request(conn)
            if body is None:
                return
            self.requests.append(body)
            reply = self.reply(body)
            payload = reply.body
            if reply.chunked:
                payload = (
                    b"".join(
                        f"{len(part):x}\r\n".encode() + part + b"\r\n"
                        for part in (payload[i : i + 1000] for i in range(0, len(payload), 1000))
                    )
                    + b"0\r\n\r\n"
                )
            try:
                if reply.trickle_head:
                    self._trickle(conn, reply.head() + payload, reply.trickle_every)
                    return
                conn.sendall(reply.head())
                if reply.trickle_every:
                    self._trickle(conn, payload, reply.trickle_every)
                else:
                    conn.sendall(payload)
            except OSError:
                return  # the client hung up

    def _trickle(self, conn: socket.socket, data: bytes, every: float) -> None:
        for index in range(len(data)):
            if self._stop.is_set():
                return
            conn.sendall(data[index : index + 1])
            self.body_bytes_sent += 1
            time.sleep(every)


def _read_request(conn: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return body


# --- through the worker ----------------------------------------------------------------------


def sold(lead: str) -> dict[str, Any]:
    return {
        "type": "lead.sold",
        "lead_id": lead,
        "event_set": "acme",
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        "attributes": {"value": 10},
        "match_keys": {"email": f"{lead.lower()}@example.com"},
    }


def rows() -> list[Postback]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return list(session.scalars(select(Postback).order_by(Postback.id)))


def attempts() -> list[DeliveryAttempt]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return list(session.scalars(select(DeliveryAttempt).order_by(DeliveryAttempt.id)))


def event_set() -> EventSet:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        found = session.scalars(select(EventSet)).one()
        session.expunge(found)
        return found


SendThrough = Callable[..., list[Postback]]


@pytest.fixture
def send_through(
    sqlite_db: str, monkeypatch: pytest.MonkeyPatch, make_event_set: Callable[..., int]
) -> SendThrough:
    """Stores `count` triggers, resolves them, and has the worker deliver them in one task
    to the scripted server (`prepare(ids)` may change the rows first); returns the outbox
    rows afterwards. On SQLite; `send_through_both` on PostgreSQL as well."""
    return _sender(monkeypatch, make_event_set)


@pytest.fixture(params=["sqlite_db", "pg_db"])
def send_through_both(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    make_event_set: Callable[..., int],
) -> SendThrough:
    """`send_through`, on SQLite and on PostgreSQL (whose columns refuse what is too long)."""
    request.getfixturevalue(request.param)
    return _sender(monkeypatch, make_event_set)


def _sender(monkeypatch: pytest.MonkeyPatch, make_event_set: Callable[..., int]) -> SendThrough:
    make_event_set()

    def run(
        server: ScriptedServer, count: int, prepare: Callable[[list[int]], None] | None = None
    ) -> list[Postback]:
        apply_env(monkeypatch, TIKTOK_API_BASE_URL=server.url)
        for n in range(count):
            enqueue_trigger(sold(f"L-{n}"))
        with session_scope(workspace=ALL_WORKSPACES) as session:
            ids = list(session.scalars(select(Trigger.id)))
            process_triggers(session, ids, get_settings(), datetime.now(UTC))
            session.commit()
        postback_ids = [row.id for row in rows()]
        if prepare is not None:
            prepare(postback_ids)
        deliver(postback_ids)
        return rows()

    return run


def requests_counted(outcome: str) -> float:
    value = metric_definitions.metrics().registry.get_sample_value(
        "postback_tiktok_requests_total",
        {"workspace": "default", "event_set": "acme", "outcome": outcome, "http_status": "404"},
    )
    return value or 0.0


def test_an_html_404_is_one_request_and_no_event_fails(
    send_through: SendThrough,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A wrong base URL or a proxy: 16 events were 31 requests (bisection) and 16 failures."""
    before = requests_counted(Outcome.NOT_TIKTOK.value)
    html_404 = Reply("404 Not Found", HTML_404, "text/html")
    with ScriptedServer(lambda _: html_404) as server, caplog.at_level(logging.WARNING):
        outbox = send_through(server, 16)
    assert server.events_per_request() == [16]
    assert {row.status for row in outbox} == {PostbackStatus.RETRYING}
    assert all(row.attempts == 1 and row.last_http_status == 404 for row in outbox)
    assert all(row.last_code is None for row in outbox)
    message = outbox[0].last_message or ""
    assert "HTTP 404" in message and "TikTok's response envelope" in message
    assert "text/html" in message
    paused = event_set()
    assert paused.status == "paused"
    assert "TIKTOK_API_BASE_URL" in (paused.paused_reason or "")
    assert {a.outcome for a in attempts()} == {Outcome.NOT_TIKTOK.value}
    assert requests_counted(Outcome.NOT_TIKTOK.value) == before + 1
    assert any("pausing event set" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("status", "paused", "outcome"),
    [
        ("400 Bad Request", True, Outcome.NOT_TIKTOK),
        ("413 Payload Too Large", True, Outcome.NOT_TIKTOK),
        ("401 Unauthorized", True, Outcome.NOT_TIKTOK),
        ("302 Found", True, Outcome.NOT_TIKTOK),
        ("200 OK", False, Outcome.TRANSIENT),  # maybe TikTok's, garbled: retried, no pause
        ("502 Bad Gateway", False, Outcome.TRANSIENT),  # TikTok's edge: retried as documented
        ("429 Too Many Requests", False, Outcome.THROTTLED),
    ],
)
def test_an_html_answer_never_rejects_events(
    send_through: SendThrough,
    status: str,
    paused: bool,
    outcome: Outcome,
) -> None:
    with ScriptedServer(lambda _: Reply(status, HTML_404, "text/html")) as server:
        outbox = send_through(server, 4)
    assert server.events_per_request() == [4]  # no bisection
    assert {row.status for row in outbox} == {PostbackStatus.RETRYING}
    assert {a.outcome for a in attempts()} == {outcome.value}
    assert (event_set().status == "paused") is paused


POISON = "0" * 64


def test_tiktoks_own_rejection_is_still_bisected(send_through: SendThrough) -> None:
    """The envelope check does not blunt the real thing: a 40002 in TikTok's envelope."""

    def reply(body: bytes) -> Reply:
        events = json.loads(body)["data"]
        if any(event["user"]["email"] == [POISON] for event in events):
            return Reply(body=envelope(40002, "Batch.0.user.email: Not a valid string.", "r-1"))
        return Reply(body=envelope(0, "OK", "r-2"))

    def poison(ids: list[int]) -> None:
        with session_scope(workspace=ALL_WORKSPACES) as session:
            row = session.get(Postback, ids[1])
            assert row is not None and row.payload is not None
            row.payload = {**row.payload, "user": {"email": [POISON]}}
            session.commit()

    with ScriptedServer(reply) as server:
        outbox = send_through(server, 4, poison)
    assert [row.status for row in outbox].count(PostbackStatus.FAILED) == 1
    assert [row.status for row in outbox].count(PostbackStatus.DELIVERED) == 3
    assert server.events_per_request() == [4, 2, 1, 1, 2]  # depth first


NO_ENVELOPE = [
    (envelope(code=2**70), "code beyond the INTEGER column"),
    (envelope(code=-(2**70)), "negative code beyond the INTEGER column"),
    (envelope(code=1e3), "code not an integer"),
    (envelope(code=True), "code a boolean"),
    (json.dumps({"message": "OK"}).encode(), "code missing"),
    (json.dumps([{"code": 0, "message": "OK"}]).encode(), "a JSON list"),
    (b"\xff\xfe{\x00\x80 not utf-8", "not UTF-8"),
    (b"[" * 100_000, "nesting deeper than the parser goes"),
    (b'{"code": ' + b"9" * 5000 + b', "message": "OK"}', "5,000 digits"),
    (b"", "an empty body"),
    (b"NaN", "NaN"),
]


@pytest.mark.parametrize(("body", "why"), NO_ENVELOPE)
def test_a_2xx_without_tiktoks_envelope_is_recorded_and_retried(
    send_through_both: SendThrough, body: bytes, why: str
) -> None:
    """A code of 2**70 raised OverflowError while recording: the row stayed `sending`. A 2xx
    without the envelope may be TikTok's answer garbled: retried, the event set not paused."""
    with ScriptedServer(lambda _: Reply(body=body)) as server:
        outbox = send_through_both(server, 2)
    assert len(server.requests) == 1, why
    assert {row.status for row in outbox} == {PostbackStatus.RETRYING}, why
    assert all(row.last_code is None and row.last_request_id is None for row in outbox)
    assert {a.outcome for a in attempts()} == {Outcome.TRANSIENT.value}
    assert event_set().status == "active", why


@pytest.mark.parametrize(("body", "why"), NO_ENVELOPE[:3])
def test_a_4xx_without_tiktoks_envelope_is_retried_and_pauses(
    send_through: SendThrough, body: bytes, why: str
) -> None:
    with ScriptedServer(lambda _: Reply("404 Not Found", body)) as server:
        outbox = send_through(server, 2)
    assert len(server.requests) == 1, why
    assert {row.status for row in outbox} == {PostbackStatus.RETRYING}, why
    assert {a.outcome for a in attempts()} == {Outcome.NOT_TIKTOK.value}
    assert event_set().status == "paused", why


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (envelope(message=None), ""),
        (json.dumps({"code": 0}).encode(), ""),
        (json.dumps({"code": 0, "message": 7, "request_id": "r-7"}).encode(), "7"),
    ],
)
def test_an_envelope_without_a_string_message_is_tiktoks(
    send_through_both: SendThrough, body: bytes, message: str
) -> None:
    """{"code": 0, "message": null} was taken for no envelope: resent, and the set paused."""
    with ScriptedServer(lambda _: Reply(body=body)) as server:
        outbox = send_through_both(server, 2)
    assert len(server.requests) == 1
    assert {row.status for row in outbox} == {PostbackStatus.DELIVERED}
    assert all(row.last_code == 0 and row.last_message == message for row in outbox)
    assert event_set().status == "active"


def test_a_huge_request_id_and_message_are_cut_to_their_columns(
    send_through_both: SendThrough,
    caplog: pytest.LogCaptureFixture,
) -> None:
    huge_id, huge_message = "R" * 5000, "M" * 50_000
    reply = Reply(body=envelope(50000, huge_message, huge_id))
    with ScriptedServer(lambda _: reply) as server, caplog.at_level(logging.DEBUG):
        outbox = send_through_both(server, 2)
    assert {row.status for row in outbox} == {PostbackStatus.RETRYING}
    for row in outbox:
        assert row.last_code == 50000
        assert row.last_request_id == "R" * REQUEST_ID_CHARS
        assert row.last_message == "M" * MESSAGE_CHARS
    assert all(a.request_id == "R" * REQUEST_ID_CHARS for a in attempts())
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "R" * REQUEST_ID_CHARS in logged and "R" * (REQUEST_ID_CHARS + 1) not in logged


def test_a_huge_body_is_read_no_further_than_the_cap(
    send_through: SendThrough,
) -> None:
    body = b'{"code": 0, "message": "' + b"x" * 5_000_000 + b'"}'
    with ScriptedServer(lambda _: Reply(body=body)) as server:
        outbox = send_through(server, 2)
    assert {row.status for row in outbox} == {PostbackStatus.RETRYING}
    assert "not read further" in (outbox[0].last_message or "")


def test_a_bug_in_the_client_is_a_transient_failure_not_a_crashed_task(
    send_through: SendThrough,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Anything but a requests error ended the task with its rows `sending` until the lease
    ran out. It is retried like a network error, logged by its type, never its text."""

    def broken(*args: object) -> tuple[bytes, bool]:
        raise KeyError("jane@example.com")

    monkeypatch.setattr(events_client, "_read_body", broken)
    with ScriptedServer(lambda _: Reply(body=envelope(0))) as server, caplog.at_level(logging.INFO):
        outbox = send_through(server, 2)
    assert len(server.requests) == 1
    assert {row.status for row in outbox} == {PostbackStatus.RETRYING}
    assert all("KeyError" in (row.last_message or "") for row in outbox)
    assert {a.outcome for a in attempts()} == {Outcome.TRANSIENT.value}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "failed unexpectedly: KeyError" in logged
    assert "jane" not in logged and all("jane" not in (r.last_message or "") for r in outbox)


# --- the client alone, against the real socket server -----------------------------------------


def client(total: float, read: float = 1.0) -> EventsApiClient:
    return EventsApiClient("http://placeholder", (1.0, read), total_timeout=total)


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("limit", [10, 1000, MAX_ANSWER_BYTES])
def test_the_client_reads_at_most_the_cap(limit: int, chunked: bool) -> None:
    reply = Reply(body=b"x" * 3_000_000, chunked=chunked)
    with ScriptedServer(lambda _: reply) as server:
        api = client(total=20)
        api.base_url = server.url
        answer = api.exchange("POST", "/open_api/v1.3/event/track/", data=b"{}", limit=limit)
    assert len(answer.body) == limit and not answer.complete


DEADLINE = 1.5
# At 20 bytes a second, 1,200 bytes take a minute: code that reads the whole trickle is far
# beyond DEADLINE + 10 s, a bound no loaded machine comes near with the deadline kept.
PADDING = 1200
SLACK = 10


@pytest.mark.parametrize(
    ("where", "reply"),
    [
        ("body", Reply(body=envelope(0) + b" " * PADDING, trickle_every=0.05)),
        (
            "chunked body",
            Reply(body=envelope(0) + b" " * PADDING, trickle_every=0.05, chunked=True),
        ),
        (
            "status line and headers",
            Reply(
                body=envelope(0),
                headers={"X-Padding": "p" * PADDING},
                trickle_every=0.05,
                trickle_head=True,
            ),
        ),
    ],
)
def test_a_trickling_answer_ends_at_the_total_deadline(where: str, reply: Reply) -> None:
    """One byte every 2 s held a request 41 s with a 3 s read timeout: every single read was
    within the read timeout. The total deadline ends it, wherever the answer trickles."""
    with ScriptedServer(lambda _: reply) as server:
        api = client(total=DEADLINE, read=1.0)
        api.base_url = server.url
        started = time.monotonic()
        answer = api.track("token", {"data": []})
        elapsed = time.monotonic() - started
        sent = server.body_bytes_sent
    assert answer.outcome is Outcome.TRANSIENT, where
    assert "deadline" in answer.message, where
    assert answer.code is None
    # At 20 bytes a second the whole answer takes over a minute; it ends after about 30 bytes.
    whole = len(reply.head()) * reply.trickle_head + len(reply.body)
    assert sent < whole / 4, (where, sent)
    assert elapsed < DEADLINE + SLACK, where


class ForwardProxy:
    """A tiny HTTP proxy on a real socket: forwards an absolute-URL request to its host, or
    answers CONNECT and tunnels; with `trickle_connect`, its CONNECT answer comes a byte every
    `trickle_every` seconds (every byte within the read timeout, the whole far beyond)."""

    def __init__(self, trickle_connect: bool = False, trickle_every: float = 0.05) -> None:
        self.trickle_connect = trickle_connect
        self.trickle_every = trickle_every
        self.connects = 0
        self.forwarded = 0
        self.connect_bytes_sent = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> ForwardProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        with client:
            client.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = client.recv(65536)
                if not chunk:
                    return
                data += chunk
            method, target, _ = data.split(b"\r\n", 1)[0].split(b" ", 2)
            try:
                if method == b"CONNECT":
                    self.connects += 1
                    answer = b"HTTP/1.1 200 Connection established\r\n"
                    if self.trickle_connect:
                        answer += b"X-Padding: " + b"p" * PADDING + b"\r\n"
                        for index in range(len(answer)):
                            if self._stop.is_set():
                                return
                            client.sendall(answer[index : index + 1])
                            self.connect_bytes_sent += 1
                            time.sleep(self.trickle_every)
                    client.sendall(answer + b"\r\n")
                    host, _, port = target.decode().rpartition(":")
                    upstream, rest = socket.create_connection((host, int(port)), timeout=10), b""
                else:
                    self.forwarded += 1
                    address = target.decode().split("/")[2]
                    host, _, port = address.rpartition(":")
                    upstream, rest = socket.create_connection((host, int(port)), timeout=10), data
            except OSError:
                return
            with upstream:
                upstream.sendall(rest)
                pump = threading.Thread(target=_pipe, args=(client, upstream), daemon=True)
                pump.start()
                _pipe(upstream, client)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def _through_proxy(monkeypatch: pytest.MonkeyPatch, proxy: ForwardProxy) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, proxy.url)


def test_through_a_proxy_a_trickling_answer_ends_at_the_total_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With HTTP_PROXY set, requests takes its pools from the proxy manager, which were
    urllib3's own: nobody watched the connection, and trickled headers ran their course."""
    reply = Reply(
        body=envelope(0),
        headers={"X-Padding": "p" * PADDING},
        trickle_every=0.05,
        trickle_head=True,
    )
    with ScriptedServer(lambda _: reply) as server, ForwardProxy() as proxy:
        _through_proxy(monkeypatch, proxy)
        api = client(total=DEADLINE, read=1.0)
        api.base_url = server.url
        started = time.monotonic()
        answer = api.track("token", {"data": []})
        elapsed = time.monotonic() - started
        sent = server.body_bytes_sent
    assert proxy.forwarded == 1  # it did go through the proxy
    assert answer.outcome is Outcome.TRANSIENT and "deadline" in answer.message
    whole = len(reply.head()) + len(reply.body)  # over a minute at 20 bytes a second
    assert sent < whole / 4, sent
    assert elapsed < DEADLINE + SLACK


def test_a_proxys_trickling_connect_answer_ends_at_the_total_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """For HTTPS the proxy's CONNECT answer and the TLS handshake come in connect(), before
    request(): unwatched, a CONNECT answer trickling a byte at a time held the request."""
    with ForwardProxy(trickle_connect=True) as proxy:
        _through_proxy(monkeypatch, proxy)
        api = client(total=DEADLINE, read=1.0)
        api.base_url = "https://127.0.0.1:9"  # never reached: the tunnel does not open in time
        started = time.monotonic()
        answer = api.track("token", {"data": []})
        elapsed = time.monotonic() - started
        sent = proxy.connect_bytes_sent
    assert proxy.connects == 1
    assert answer.outcome is Outcome.TRANSIENT and "deadline" in answer.message, answer.message
    assert sent < PADDING / 4, sent  # the whole answer takes over a minute
    assert elapsed < DEADLINE + SLACK


def test_an_answer_cut_short_is_a_network_error_for_every_caller() -> None:
    """The body is read raw, so urllib3's IncompleteRead must still come out as requests'."""
    reply = Reply(body=envelope(0), declared_length=10_000)
    with ScriptedServer(lambda _: reply) as server:
        api = client(total=10)
        api.base_url = server.url
        answer = api.track("token", {"data": []})
        with pytest.raises(requests.ConnectionError):
            api.list_crm_event_sets("token", "7000000001")
    assert answer.outcome is Outcome.TRANSIENT and answer.code is None
    assert "ConnectionError" in answer.message


@pytest.mark.parametrize(
    "reply",
    [Reply(body=b"[]"), Reply(body=b"<html></html>", content_type="text/html")],
)
def test_the_crm_list_call_refuses_what_is_not_a_json_object(reply: Reply) -> None:
    with ScriptedServer(lambda _: reply) as server:
        api = client(total=10)
        api.base_url = server.url
        with pytest.raises(ValueError):
            api.list_crm_event_sets("token", "7000000001")


def test_the_deadline_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    apply_env(monkeypatch, HTTP_TOTAL_TIMEOUT_SECONDS="7.5")
    assert EventsApiClient("http://x", (1.0, 1.0)).total_timeout == 7.5


def test_a_complete_answer_keeps_the_connection_for_the_next_request() -> None:
    """Reading the body in chunks must not cost keep-alive: the pool reuses the connection."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    connections: set[tuple[str, int]] = set()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            connections.add(self.client_address)
            body = envelope(0)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        api = client(total=10)
        api.base_url = f"http://127.0.0.1:{server.server_address[1]}"
        answers = [api.track("token", {"data": []}) for _ in range(5)]
    finally:
        server.shutdown()
        server.server_close()
    assert {a.outcome for a in answers} == {Outcome.DELIVERED}
    assert len(connections) == 1
