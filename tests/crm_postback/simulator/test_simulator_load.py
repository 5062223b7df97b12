"""Concurrency, the JSON Lines record, and the blocking `run` entry point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from crm_postback.simulator import (
    RegisteredEventSet,
    SimulatorControl,
    SimulatorServer,
    SimulatorState,
)

BodyFactory = Callable[..., dict[str, Any]]
Track = Callable[..., requests.Response]
TRACK_PATH = "/open_api/v1.3/event/track/"
ROOT = Path(__file__).resolve().parents[3]

THREADS = 8
REQUESTS_PER_THREAD = 50
EVENTS_PER_REQUEST = 100


def test_concurrent_clients_lose_no_updates(
    simulator: SimulatorServer, control: SimulatorControl, crm_body: BodyFactory
) -> None:
    def client(worker: int) -> list[int]:
        with requests.Session() as session:
            codes = []
            for number in range(REQUESTS_PER_THREAD):
                first = (worker * REQUESTS_PER_THREAD + number) * EVENTS_PER_REQUEST
                response = session.post(
                    simulator.url + TRACK_PATH,
                    json=crm_body(EVENTS_PER_REQUEST, first=first),
                    headers={"Access-Token": "crm-token-1"},
                    timeout=10,
                )
                codes.append(response.json()["code"])
            return codes

    with ThreadPoolExecutor(THREADS) as pool:
        codes = [code for result in pool.map(client, range(THREADS)) for code in result]

    total = THREADS * REQUESTS_PER_THREAD * EVENTS_PER_REQUEST
    assert set(codes) == {0}
    stats = control.stats()
    assert stats["requests_total"] == THREADS * REQUESTS_PER_THREAD
    assert stats["requests_by_code"] == {"0": THREADS * REQUESTS_PER_THREAD}
    assert (stats["events_unique"], stats["events_duplicate"]) == (total, 0)
    assert control.count_events() == total
    assert len({e["event_id"] for e in control.events()}) == total


def test_accepted_events_are_appended_to_the_record_across_restarts(
    tmp_path: Path, registry: dict[str, RegisteredEventSet], crm_body: BodyFactory
) -> None:
    record = tmp_path / "record" / "events.jsonl"
    body = crm_body(2)
    request_ids = []

    for posts in (2, 1):
        state = SimulatorState(event_sets=registry.values(), record_path=record)
        with SimulatorServer(state=state) as server:
            for _ in range(posts):
                reply = requests.post(
                    server.url + TRACK_PATH,
                    json=body,
                    headers={"Access-Token": "crm-token-1"},
                    timeout=5,
                ).json()
                request_ids += [reply["request_id"]] * len(body["data"])

    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert [line["payload"] for line in lines] == body["data"] * 3
    assert [line["request_id"] for line in lines] == request_ids
    # Dedup memory does not survive a restart; the record shows what each process decided.
    assert [line["duplicate"] for line in lines] == [False, False, True, True, False, False]


def test_run_serves_until_interrupted(tmp_path: Path) -> None:
    script = (
        "from crm_postback.simulator import RegisteredEventSet, run\n"
        "run('127.0.0.1', 0, event_sets=[RegisteredEventSet('7300000000000000001', 'tok')])\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        # Ctrl-C as in a terminal: a runner started in the background (`cmd &` in a script)
        # ignores SIGINT, its children inherit that, and Python then installs no handler.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = next(word for word in line.split() if word.startswith("http://"))
        assert SimulatorControl(url).stats()["event_sets"] == 1
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
