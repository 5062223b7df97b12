"""The TikTok simulator the runs post to, recording only what the figures need.

The product's simulator keeps every event with its payload; over a long run that is
gigabytes. `CompactState` keeps the full contract checks and answers but remembers only
event_id -> received_at (or, with `count_only`, which ids were seen). It runs either in a
child process (`python -m bench.simulator`, the default, so its HTTP and JSON work does not
compete with the producers for the harness's GIL) or in a thread of the harness.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import requests

from bench.workload import EVENT_SETS
from crm_postback.simulator import RegisteredEventSet, SimulatorServer, SimulatorState
from crm_postback.simulator.state import ReceivedEvent


class CompactState(SimulatorState):
    def __init__(self, event_sets: Sequence[RegisteredEventSet], count_only: bool) -> None:
        super().__init__(event_sets=event_sets)
        self.count_only = count_only
        self.received: dict[str, float] = {}
        self.seen: set[int] = set()
        self.unique = 0
        self.unique_by_source: dict[str, int] = {}
        self.duplicates = 0
        self.last_received_at = 0.0

    def accept(self, body: Mapping[str, Any], request_id: str) -> list[ReceivedEvent]:
        source_id = str(body["event_source_id"])
        with self._lock:
            now = time.time()
            for payload in body["data"]:
                event_id = str(payload.get("event_id"))
                if self.count_only:
                    # 60 bits of the id as a small int: ~100 bytes per event instead of ~250.
                    key = int(event_id[:15], 16)
                    new = key not in self.seen
                    self.seen.add(key)
                else:
                    new = event_id not in self.received
                    if new:
                        self.received[event_id] = now
                if new:
                    self.unique += 1
                    self.unique_by_source[source_id] = self.unique_by_source.get(source_id, 0) + 1
                    self.last_received_at = now
                else:
                    self.duplicates += 1
        return []

    def stats(self) -> dict[str, Any]:
        stats = super().stats()
        with self._lock:
            stats.update(
                events_unique=self.unique,
                events_unique_by_source=dict(self.unique_by_source),
                events_duplicate=self.duplicates,
                events_accepted=self.unique + self.duplicates,
                last_received_at=self.last_received_at,
            )
        return stats

    def dump(self) -> dict[str, Any]:
        with self._lock:
            received = dict(self.received)
        return {"stats": self.stats(), "received": received}


def registered_event_sets() -> list[RegisteredEventSet]:
    return [
        RegisteredEventSet(s.source_id, s.token, kind="crm", name=s.name, advertiser_id="7000")
        for s in EVENT_SETS
    ]


class Simulator(Protocol):
    url: str
    where: str
    pid: int | None  # its own process, or None for a thread of the harness

    def stats(self) -> dict[str, Any]: ...

    def dump(self) -> dict[str, Any]: ...

    def stop(self) -> None: ...


class ThreadSimulator:
    """In the harness process: cheapest to read, but it shares the GIL with the producers."""

    where = "thread in the harness process"
    pid: int | None = None

    def __init__(self, count_only: bool = False) -> None:
        self.state = CompactState(registered_event_sets(), count_only)
        self.server = SimulatorServer(port=0, state=self.state).start()
        self.url = self.server.url

    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    def dump(self) -> dict[str, Any]:
        return self.state.dump()

    def stop(self) -> None:
        self.server.stop()


class ProcessSimulator:
    """`python -m bench.simulator` in its own process; stats over HTTP, dump over a pipe."""

    where = "separate process"

    def __init__(self, workdir: Path, count_only: bool = False) -> None:
        command = [sys.executable, "-m", "bench.simulator"]
        if count_only:
            command.append("--count-only")
        self.dump_path = workdir / "simulator-received.json"
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(workdir / "simulator.log").open("wb"),
            text=True,
            start_new_session=True,
        )
        self.session = requests.Session()
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"simulator process did not start: {line!r}")
        self.url = line.split(" ", 1)[1]
        self.pid: int | None = self.process.pid

    def stats(self) -> dict[str, Any]:
        response = self.session.get(f"{self.url}/_sim/stats", timeout=30)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def dump(self) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"dump {self.dump_path}\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().strip()
        if answer != "DUMPED":
            raise RuntimeError(f"simulator process did not dump: {answer!r}")
        result: dict[str, Any] = json.loads(self.dump_path.read_text())
        return result

    def stop(self) -> None:
        self.session.close()
        if self.process.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert self.process.stdin is not None
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(kind: str, workdir: Path, count_only: bool = False) -> Simulator:
    if kind == "thread":
        return ThreadSimulator(count_only)
    return ProcessSimulator(workdir, count_only)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.simulator")
    parser.add_argument("--count-only", action="store_true")
    args = parser.parse_args(argv)
    state = CompactState(registered_event_sets(), args.count_only)
    server = SimulatorServer(port=0, state=state).start()
    sys.stdout.write(f"READY {server.url}\n")
    sys.stdout.flush()
    try:
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            if command == "dump":
                Path(argument).write_text(json.dumps(state.dump()))
                sys.stdout.write("DUMPED\n")
                sys.stdout.flush()
            elif command == "quit":
                break
    finally:
        server.stop()


if __name__ == "__main__":
    main()
