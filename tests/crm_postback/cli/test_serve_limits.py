"""`postback serve` against clients that hold connections (issue 13, item 12), tried with real
sockets on a real `postback serve` process: slow headers, a slow body, too many connections,
oversized headers; and /metrics is not served beyond loopback without METRICS_TOKEN."""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h11
import pytest
import requests
from typer.testing import CliRunner

from crm_postback.cli import app as cli_app
from crm_postback.cli.web_commands import is_loopback
from crm_postback.web.http_limits import BoundedH11Protocol
from tests.conftest import free_port  # type: ignore[import-not-found]

# Far longer than any deadline set below: what plain uvicorn lets a client hold.
PATIENCE = 20.0
# h11's own limit on a request head it has not read whole; uvicorn keeps it.
MAX_HEADER_BYTES: int = h11._connection.DEFAULT_MAX_INCOMPLETE_EVENT_SIZE


class Served:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process, self.port, self.log = process, port, log
        self.url = f"http://127.0.0.1:{port}"

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.setblocking(False)
        return sock


@pytest.fixture
def serve(sqlite_db: str, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, **env: str) -> Served:
        port = free_port()
        log = tmp_path / f"serve-{len(started)}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "crm_postback.cli", "serve", "--port", str(port), *args],
            env={**os.environ, **env},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(process)
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                    return Served(process, port, log)
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise AssertionError(f"postback serve did not start:\n{log.read_text()}")
            time.sleep(0.1)

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def trickle(
    sockets: list[socket.socket], first: bytes, within: float, answers: list[bytes] | None = None
) -> list[float]:
    """Sends `first`, then one byte a socket every 0.25 s; returns when each was closed by
    the server (seconds after the start), stopping at `within`. The status line of each
    answer the server sent goes to `answers`."""
    for sock in sockets:
        sock.sendall(first)
    closed: dict[int, float] = {}
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
    started = time.monotonic()
    while len(closed) < len(sockets) and time.monotonic() - started < within:
        for key, _ in selector.select(timeout=0.25):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, BlockingIOError):
                data = b""
            if data.startswith(b"HTTP/") and answers is not None:
                answers.append(data.split(b"\r\n", 1)[0])
            if not data:
                closed[sock.fileno()] = time.monotonic() - started
                selector.unregister(sock)
        for sock in sockets:
            if sock.fileno() not in closed:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError, BlockingIOError):
                    sock.send(b"a")
    for sock in sockets:
        sock.close()
    return sorted(closed.values())


def test_a_client_that_sends_its_headers_slowly_is_cut_off(serve: Callable[..., Served]) -> None:
    served = serve(API_HEADER_TIMEOUT_SECONDS="1")
    sockets = [served.connect() for _ in range(100)]
    first = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
    # Meanwhile an ordinary request is answered at once.
    assert requests.get(f"{served.url}/healthz", timeout=5).status_code == 200
    closed = trickle(sockets, first, PATIENCE)
    assert len(closed) == 100, "slow-header connections stayed open"
    assert requests.get(f"{served.url}/healthz", timeout=5).status_code == 200


def test_a_connection_that_sends_nothing_is_cut_off(serve: Callable[..., Served]) -> None:
    served = serve(API_HEADER_TIMEOUT_SECONDS="1")
    silent = served.connect()
    selector = selectors.DefaultSelector()
    selector.register(silent, selectors.EVENT_READ)
    assert selector.select(timeout=PATIENCE), "a silent connection stayed open"
    assert silent.recv(100) == b""


def test_a_body_sent_slowly_is_cut_off(serve: Callable[..., Served]) -> None:
    # Every socket logs in from 127.0.0.1: a limit none of them reaches, so each one waits
    # for its body (none is answered 429 before it).
    served = serve(API_BODY_TIMEOUT_SECONDS="1", ADMIN_LOGIN_RATE_LIMIT="1000 per minute")
    sockets = [served.connect() for _ in range(20)]
    first = (
        b"POST /admin/login HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\nu="
    )
    answers: list[bytes] = []
    closed = trickle(sockets, first, PATIENCE, answers)
    assert len(closed) == 20, "slow-body connections stayed open"
    assert answers == [], "answered before the body arrived"


def test_requests_beyond_the_connection_limit_are_503(serve: Callable[..., Served]) -> None:
    served = serve(API_MAX_CONNECTIONS="5", API_HEADER_TIMEOUT_SECONDS="60")
    idle = [served.connect() for _ in range(5)]
    deadline = time.monotonic() + PATIENCE  # until the server has accepted them all
    while requests.get(f"{served.url}/healthz", timeout=5).status_code != 503:
        assert time.monotonic() < deadline, "no 503 with the connection limit taken"
        time.sleep(0.1)
    for sock in idle:
        sock.close()
    deadline = time.monotonic() + PATIENCE
    while requests.get(f"{served.url}/healthz", timeout=5).status_code == 503:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_a_request_head_over_the_limit_is_refused(serve: Callable[..., Served]) -> None:
    """h11 refuses to buffer more than its default 16 KiB of a head that is not complete (a
    head read whole in one chunk of up to 64 KiB is parsed as it is); a head just under it
    is answered."""
    served = serve()
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=10)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    try:
        for _ in range(MAX_HEADER_BYTES // 1000 + 2):
            sock.sendall(b"X-Big: " + b"a" * 1000 + b"\r\n")
            time.sleep(0.02)
    except (BrokenPipeError, ConnectionResetError):
        pass
    answer = sock.recv(1000)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    under = {f"X-Big-{i}": "a" * 1000 for i in range(MAX_HEADER_BYTES // 1100)}
    assert requests.get(f"{served.url}/healthz", headers=under, timeout=5).status_code == 200


# --- /metrics beyond loopback -----------------------------------------------------------


def test_serve_refuses_to_listen_beyond_loopback_without_metrics_token(
    sqlite_db: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "METRICS_TOKEN"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "crm_postback.cli",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
        ],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert b"METRICS_TOKEN" in done.stderr and b"/metrics" in done.stderr


def test_beyond_loopback_metrics_need_the_token(serve: Callable[..., Served]) -> None:
    served = serve("--host", "0.0.0.0", METRICS_TOKEN="scrape-secret-1")
    assert requests.get(f"{served.url}/metrics", timeout=5).status_code == 401
    scraped = requests.get(
        f"{served.url}/metrics", headers={"Authorization": "Bearer scrape-secret-1"}, timeout=5
    )
    assert scraped.status_code == 200 and "postback_triggers_received_total" in scraped.text


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.5", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.com", False),
    ],
)
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_serve_gives_uvicorn_its_limits(sqlite_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from tests.conftest import apply_env  # type: ignore[import-not-found]

    given: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: given.update(kwargs))
    apply_env(monkeypatch, API_KEEP_ALIVE_SECONDS="3", API_MAX_CONNECTIONS="77")
    result = CliRunner().invoke(cli_app, ["serve"])
    assert result.exit_code == 0, result.output
    assert given["http"] is BoundedH11Protocol
    assert given["timeout_keep_alive"] == 3
    assert given["limit_concurrency"] == 77
    assert given["ws"] == "none"  # no websocket upgrade around BoundedH11Protocol's timers
    assert given["proxy_headers"] is True
    assert given["forwarded_allow_ips"] == "127.0.0.1,::1"


# --- the client address behind a reverse proxy -------------------------------------------


def _login_answers(served: Served, forwarded_for: str, times: int) -> list[int]:
    return [
        requests.post(
            f"{served.url}/admin/login",
            data={"username": "nobody", "password": "wrong"},
            headers={"X-Forwarded-For": forwarded_for},
            allow_redirects=False,
            timeout=10,
        ).status_code
        for _ in range(times)
    ]


def test_login_limits_count_the_client_a_trusted_proxy_names(
    serve: Callable[..., Served],
) -> None:
    """From a proxy in FORWARDED_ALLOW_IPS (here loopback, the default), each address in
    X-Forwarded-For has its own count: one client over its limit keeps no one else out."""
    served = serve(ADMIN_LOGIN_RATE_LIMIT="3 per minute")
    assert 429 not in _login_answers(served, "203.0.113.1", 3)
    assert _login_answers(served, "203.0.113.1", 1) == [429]
    assert 429 not in _login_answers(served, "203.0.113.2", 3)


def test_x_forwarded_for_from_anyone_else_is_not_believed(serve: Callable[..., Served]) -> None:
    served = serve(ADMIN_LOGIN_RATE_LIMIT="3 per minute", FORWARDED_ALLOW_IPS="10.9.9.9")
    assert 429 not in _login_answers(served, "203.0.113.1", 3)
    assert _login_answers(served, "203.0.113.2", 1) == [429]  # one client: 127.0.0.1
