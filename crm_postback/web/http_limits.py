"""uvicorn's HTTP/1.1 protocol (h11) with deadlines for reading each request.

uvicorn closes an idle keep-alive connection (`timeout_keep_alive`) but sets no deadline while
a request is being read: a client that sends its headers one byte every few seconds holds its
connection, and 300 of them hold 300, for as long as they like. Here each request must bring
its line and headers within API_HEADER_TIMEOUT_SECONDS of the connection opening (or of the
answer to the request before it), and its body within API_BODY_TIMEOUT_SECONDS after that;
otherwise the connection is closed. A deadline is set when a phase begins, not renewed
by each byte, so a trickle cannot extend it.

Built on uvicorn's H11Protocol (its constructor, `conn` and hooks): tests/crm_postback/cli/
test_serve_limits.py runs `postback serve` and tries it with real sockets.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from crm_postback.core.settings import get_settings


class BoundedH11Protocol(H11Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.deadlines = {
            "headers": settings.api_header_timeout_seconds,
            "body": settings.api_body_timeout_seconds,
        }
        self.phase: str | None = None
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._follow()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._set_phase(None)
        super().connection_lost(exc)

    def _follow(self) -> None:
        """The phase the client is in: sending headers, sending a body, or neither."""
        state = self.conn.their_state
        if state is h11.IDLE:
            self._set_phase("headers")
        elif state is h11.SEND_BODY:
            self._set_phase("body")
        else:  # the request is in (the app may take its time), or the connection is ending
            self._set_phase(None)

    def _set_phase(self, phase: str | None) -> None:
        if phase == self.phase:
            return
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self.phase = phase
        if phase is not None and not self.transport.is_closing():
            self.deadline = self.loop.call_later(self.deadlines[phase], self._too_slow)

    def _too_slow(self) -> None:
        self.deadline = None
        if not self.transport.is_closing():
            self.logger.info("closing a connection: its request was not read in time")
            self.transport.close()
