"""HTTP plumbing: a threaded keep-alive server that routes to the TikTok and control endpoints."""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from crm_postback.simulator.control_api import CONTROL_PREFIX, handle_control
from crm_postback.simulator.faults import Faults
from crm_postback.simulator.registered_sets import RegisteredEventSet
from crm_postback.simulator.responses import Response, control_error
from crm_postback.simulator.state import SimulatorState
from crm_postback.simulator.tiktok_api import (
    CRM_LIST_PATH,
    TRACK_PATH,
    handle_crm_list,
    handle_track,
)

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024 * 1024

_Request = socket.socket | tuple[bytes, socket.socket]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm on, the body waits for
    # the client's (delayed) ACK of the headers.
    disable_nagle_algorithm = True
    server: _SimulatorHTTPServer

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default one-line-per-request log on stderr."""

    def _dispatch(self, method: str) -> None:
        raw_body = self._read_body()
        if raw_body is None:
            return
        try:
            response = self._route(method, raw_body)
        except Exception:
            logger.exception("simulator failed on %s %s", method, self.path)
            response = control_error("simulator internal error", 500)
        self._send(response)

    def _route(self, method: str, raw_body: bytes) -> Response:
        url = urlsplit(self.path)
        state = self.server.state
        token = self.headers.get("Access-Token")
        if url.path == TRACK_PATH:
            if method != "POST":
                return control_error(f"{method} not allowed on {url.path}", 405)
            return handle_track(state, token, raw_body)
        query = parse_qs(url.query, keep_blank_values=True)
        if url.path == CRM_LIST_PATH:
            if method != "GET":
                return control_error(f"{method} not allowed on {url.path}", 405)
            return handle_crm_list(state, token, query)
        if url.path.startswith(CONTROL_PREFIX):
            return handle_control(state, method, url.path, query, raw_body)
        return control_error(f"not found: {url.path}", 404)

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering a request whose body cannot be framed."""
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            if self.headers.get("Transfer-Encoding"):
                # Chunked bodies are not supported; the connection cannot be reused after this.
                self.close_connection = True
                self._send(control_error("Content-Length required", 411))
                return None
            return b""
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True
            self._send(control_error("invalid Content-Length", 400))
            return None
        return self.rfile.read(length)

    def _send(self, response: Response) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(response.body)
        except (ConnectionError, TimeoutError):
            # The client gave up (e.g. its timeout fired during a slow fault).
            self.close_connection = True


class _SimulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: SimulatorState) -> None:
        super().__init__(address, _Handler)
        self.state = state
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def server_bind(self) -> None:
        # HTTPServer.server_bind also resolves the host with getfqdn(), a reverse DNS lookup
        # that can stall for seconds in sandboxes and CI; the name is unused here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: _Request, client_address: Any) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: _Request) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Drop open keep-alive connections so a stopped simulator stops answering."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: _Request, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class SimulatorServer:
    """A local stand-in for TikTok's Events API, listening as soon as it is constructed."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, state: SimulatorState | None = None
    ) -> None:
        self.state = state if state is not None else SimulatorState()
        self._httpd = _SimulatorHTTPServer((host, port), self.state)
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SimulatorServer:
        if self._closed:
            raise RuntimeError("a stopped simulator cannot be restarted; create a new one")
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                # A short poll keeps stop() fast; shutdown() waits for the loop to notice.
                kwargs={"poll_interval": 0.02},
                name=f"tiktok-simulator-{self.url}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.close_connections()
        self._httpd.server_close()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def run(
    host: str,
    port: int,
    *,
    event_sets: Sequence[RegisteredEventSet] = (),
    faults: Faults | None = None,
    record_path: Path | None = None,
) -> None:
    """Serve until interrupted (Ctrl-C). Backs the `postback simulate-tiktok` command."""
    state = SimulatorState(event_sets=event_sets, faults=faults, record_path=record_path)
    with SimulatorServer(host, port, state) as server:
        print(  # noqa: T201
            f"TikTok Events API simulator listening on {server.url} "
            f"({len(event_sets)} event set(s); control at {server.url}/_sim/health)",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
