"""Everything the simulator remembers: event sets, accepted events, dedup index, counters, faults.

All mutation happens under one lock, so the state can be shared by the server's threads.
"""

from __future__ import annotations

import itertools
import random
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from crm_postback.simulator.faults import FaultKind, Faults
from crm_postback.simulator.rate_limit import TokenRateLimit, token_label
from crm_postback.simulator.recorder import JsonlRecorder
from crm_postback.simulator.registered_sets import RegisteredEventSet

DEDUP_WINDOW_SECONDS = 48 * 3600
# Track requests remembered for `/_sim/requests` (arrival time, token fingerprint, refused).
REQUEST_LOG_SIZE = 100_000
_SERVER_ERROR_STATUSES = (500, 503, 502)

__all__ = [
    "DEDUP_WINDOW_SECONDS",
    "FaultDecision",
    "Faults",
    "ReceivedEvent",
    "RegisteredEventSet",
    "SimulatorState",
]


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    event_source_id: str
    event_source: str
    event: str
    event_id: str | None
    event_time: int
    received_at: float
    test_event_code: str | None
    request_id: str
    payload: Mapping[str, Any]
    # A later copy of an already-kept event: answered code 0 but dropped, like TikTok does.
    duplicate: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "event_source_id": self.event_source_id,
            "event_source": self.event_source,
            "event": self.event,
            "event_id": self.event_id,
            "event_time": self.event_time,
            "received_at": self.received_at,
            "test_event_code": self.test_event_code,
            "request_id": self.request_id,
            "duplicate": self.duplicate,
            "payload": self.payload,
        }


@dataclass(frozen=True, slots=True)
class FaultDecision:
    kind: FaultKind
    http_status: int | None = None
    delay_seconds: float = 0.0


_NO_FAULT = FaultDecision(FaultKind.NONE)


class SimulatorState:
    def __init__(
        self,
        *,
        event_sets: Iterable[RegisteredEventSet] = (),
        faults: Faults | None = None,
        record_path: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._recorder = JsonlRecorder(record_path) if record_path is not None else None
        # Replaced wholesale on every change, so readers can use it without the lock.
        self._event_sets: Mapping[str, RegisteredEventSet] = MappingProxyType({})
        self._faults = faults if faults is not None else Faults()
        self._rng = random.Random(self._faults.seed)
        self._server_errors = itertools.cycle(_SERVER_ERROR_STATUSES)
        # Distinguishes request ids across simulator restarts within the same second.
        self._instance_tag = secrets.token_hex(3)
        self._request_numbers = itertools.count(1)
        self._events: list[ReceivedEvent] = []
        self._first_seen: dict[tuple[str, str, str], float] = {}
        self._requests_by_status: Counter[int] = Counter()
        self._requests_by_code: Counter[int] = Counter()
        self._events_unique = 0
        self._events_duplicate = 0
        self._rate_limit: TokenRateLimit | None = None
        self._rate_limited = 0
        self._request_log: deque[tuple[float, str, bool]] = deque(maxlen=REQUEST_LOG_SIZE)
        for event_set in event_sets:
            self.register_event_set(event_set)

    # Event sets

    @property
    def event_sets(self) -> Mapping[str, RegisteredEventSet]:
        return self._event_sets

    def register_event_set(self, event_set: RegisteredEventSet) -> RegisteredEventSet:
        """Add or replace an event set; replacing with a new token simulates token rotation."""
        with self._lock:
            existing = self._event_sets.get(event_set.event_set_id)
            if existing is not None:
                event_set = replace(event_set, create_time=existing.create_time)
            self._event_sets = MappingProxyType(
                {**self._event_sets, event_set.event_set_id: event_set}
            )
            return event_set

    # Faults

    @property
    def faults(self) -> Faults:
        return self._faults

    def update_faults(self, changes: Mapping[str, Any]) -> Faults:
        with self._lock:
            self._faults = self._faults.updated(changes)
            if "seed" in changes:
                self._rng.seed(self._faults.seed)
            return self._faults

    # The request limit per access token

    @property
    def rate_limit(self) -> TokenRateLimit | None:
        return self._rate_limit

    def set_rate_limit(self, rate_limit: TokenRateLimit | None) -> None:
        """Above `rate_limit` (per access token) a track request is answered 40100; None
        turns the limit off. A new limit starts with empty windows."""
        with self._lock:
            self._rate_limit = rate_limit

    # Requests

    def new_request_id(self) -> str:
        with self._lock:
            return self._next_request_id()

    def admit(self, access_token: str | None) -> bool:
        """Counts a track request against its token's request limit (and in the request
        log); False when the limit refuses it."""
        with self._lock:
            limited = self._rate_limit is not None and not self._rate_limit.admit(access_token)
            self._request_log.append((self._clock(), token_label(access_token), limited))
            if limited:
                self._rate_limited += 1
            return not limited

    def begin_request(self) -> tuple[str, FaultDecision]:
        """A request id and the single fault (if any) to apply to this request."""
        with self._lock:
            request_id = self._next_request_id()
            faults = self._faults
            if not faults.active:
                return request_id, _NO_FAULT
            kind = faults.pick(self._rng.random())
            if kind is FaultKind.SERVER_ERROR:
                return request_id, FaultDecision(kind, http_status=next(self._server_errors))
            if kind is FaultKind.SLOW:
                return request_id, FaultDecision(kind, delay_seconds=faults.slow_seconds)
            return request_id, FaultDecision(kind)

    def record_response(self, http_status: int, code: int | None) -> None:
        with self._lock:
            self._requests_by_status[http_status] += 1
            if code is not None:
                self._requests_by_code[code] += 1

    def _next_request_id(self) -> str:
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(self._clock()))
        return f"{stamp}{self._instance_tag}{next(self._request_numbers):08d}"

    # Events

    def accept(self, body: Mapping[str, Any], request_id: str) -> list[ReceivedEvent]:
        """Store the events of a validated track request; later copies are flagged duplicate."""
        source = body["event_source"]
        source_id = body["event_source_id"]
        test_event_code = body.get("test_event_code")
        with self._lock:
            now = self._clock()
            received = []
            for payload in body["data"]:
                event_id = payload.get("event_id")
                duplicate = False
                if event_id is not None:
                    key = (source_id, payload["event"], event_id)
                    first_seen = self._first_seen.get(key)
                    if first_seen is not None and now - first_seen < DEDUP_WINDOW_SECONDS:
                        duplicate = True
                    else:
                        self._first_seen[key] = now
                received.append(
                    ReceivedEvent(
                        event_source_id=source_id,
                        event_source=source,
                        event=payload["event"],
                        event_id=event_id,
                        event_time=payload["event_time"],
                        received_at=now,
                        test_event_code=test_event_code,
                        request_id=request_id,
                        payload=payload,
                        duplicate=duplicate,
                    )
                )
                if duplicate:
                    self._events_duplicate += 1
                else:
                    self._events_unique += 1
            self._events.extend(received)
            if self._recorder is not None:
                # Written under the state lock so the log's order matches the dedup decisions.
                self._recorder.write(event.to_json() for event in received)
        return received

    def events(
        self,
        *,
        event_source_id: str | None = None,
        event_id: str | None = None,
        event: str | None = None,
        include_duplicates: bool = False,
    ) -> list[ReceivedEvent]:
        with self._lock:
            snapshot = list(self._events)
        return [
            received
            for received in snapshot
            if (include_duplicates or not received.duplicate)
            and (event_source_id is None or received.event_source_id == event_source_id)
            and (event_id is None or received.event_id == event_id)
            and (event is None or received.event == event)
        ]

    def request_log(self) -> list[dict[str, Any]]:
        """The latest track requests: when each arrived, its token's fingerprint, and
        whether the request limit refused it."""
        with self._lock:
            log = list(self._request_log)
        return [{"at": at, "token": token, "rate_limited": limited} for at, token, limited in log]

    # Introspection and reset

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests_total": self._requests_by_status.total(),
                "requests_by_http_status": {
                    str(status): count for status, count in sorted(self._requests_by_status.items())
                },
                "requests_by_code": {
                    str(code): count for code, count in sorted(self._requests_by_code.items())
                },
                "events_accepted": self._events_unique + self._events_duplicate,
                "events_unique": self._events_unique,
                "events_duplicate": self._events_duplicate,
                "event_sets": len(self._event_sets),
                "faults": self._faults.to_json(),
                "rate_limit": self._rate_limit.to_json() if self._rate_limit else None,
                "rate_limited": self._rate_limited,
            }

    def reset(self, *, event_sets: bool = False) -> None:
        """Forget events, counters, faults and the request limit; also forget event sets if
        asked."""
        with self._lock:
            self._events = []
            self._first_seen = {}
            self._requests_by_status = Counter()
            self._requests_by_code = Counter()
            self._events_unique = 0
            self._events_duplicate = 0
            self._faults = Faults()
            self._rate_limit = None
            self._rate_limited = 0
            self._request_log.clear()
            self._rng = random.Random()
            self._server_errors = itertools.cycle(_SERVER_ERROR_STATUSES)
            if event_sets:
                self._event_sets = MappingProxyType({})
