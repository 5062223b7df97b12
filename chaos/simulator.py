"""The TikTok simulator in the harness process, counting the requests it holds past the timeout."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from crm_postback.simulator import Faults, SimulatorServer, SimulatorState
from crm_postback.simulator.faults import FaultKind
from crm_postback.simulator.state import FaultDecision


class CountingState(SimulatorState):
    """SimulatorState that also counts (and timestamps) the requests it decided to hold."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._held_lock = threading.Lock()
        self.held_requests = 0
        self.last_held_at = 0.0

    def begin_request(self) -> tuple[str, FaultDecision]:
        request_id, decision = super().begin_request()
        if decision.kind is FaultKind.SLOW:
            with self._held_lock:
                self.held_requests += 1
                self.last_held_at = time.monotonic()
        return request_id, decision

    def wait_for_held_request(self, since: int, timeout: float) -> bool:
        """True once more than `since` requests have been held, False after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.held_requests > since:
                return True
            time.sleep(0.02)
        return False


def start_simulator(seed: int, record_path: Path) -> tuple[SimulatorServer, CountingState]:
    state = CountingState(faults=Faults(seed=seed), record_path=record_path)
    server = SimulatorServer(port=0, state=state).start()
    return server, state
