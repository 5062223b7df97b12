"""Celery worker processes (through bench.worker_entry) and, for the product, one beat."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.rss import descendants

STOP_TIMEOUT_SECONDS = 45.0


class CeleryProcess:
    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> float:
        """Warm shutdown (SIGTERM), SIGKILL of the group after `timeout`; returns seconds."""
        started = time.monotonic()
        if self.alive:
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        self.signal_group(signal.SIGKILL)
        self.process.wait()
        return time.monotonic() - started


class WorkerGroup:
    """`count` worker main processes of `kind` (ours|naive), each a prefork pool."""

    def __init__(
        self,
        kind: str,
        label: str,
        *,
        count: int,
        concurrency: int,
        env: dict[str, str],
        workdir: Path,
        beat: bool,
    ) -> None:
        self.kind = kind
        self.label = label
        self.count = count
        self.concurrency = concurrency
        self.env = env
        self.workdir = workdir
        self.stats_dir = workdir / "counts"
        self.beat = beat
        self.workers: list[CeleryProcess] = []
        self.beat_process: CeleryProcess | None = None

    def start(self, timeout: float = 90.0) -> None:
        self.stats_dir.mkdir(parents=True, exist_ok=True)
        for index in range(self.count):
            command = [
                sys.executable,
                "-m",
                "bench.worker_entry",
                self.kind,
                str(self.stats_dir),
                "--pool=prefork",
                f"--concurrency={self.concurrency}",
                "--loglevel=WARNING",
                f"--hostname={self.node_name(index)}",
                "--without-gossip",
                "--without-mingle",
            ]
            log = self.workdir / f"worker-{index}.log"
            self.workers.append(
                CeleryProcess(f"worker-{index}", command, self.node_env(index), log)
            )
        if self.beat:
            command = [
                sys.executable, "-m", "celery", "-A", "worker.app", "beat",
                "--loglevel=WARNING", f"--schedule={self.workdir / 'celerybeat-schedule'}",
            ]  # fmt: skip
            self.beat_process = CeleryProcess("beat", command, self.env, self.workdir / "beat.log")
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            marker = self.stats_dir / f"ready-{worker.pid}"
            while not marker.exists():
                if not worker.alive or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.label} {worker.name} did not start:\n{worker.tail()}"
                    )
                time.sleep(0.1)

    def node_name(self, index: int) -> str:
        return f"bench-{self.label}-{index}@%h"

    def node_env(self, index: int) -> dict[str, str]:
        """Like a host of its own: the node's own data dir (the product keeps its local files
        there: a token key when no TOKEN_ENCRYPTION_KEY, the filesystem broker); the broker,
        queue and database are the same for every node."""
        env = dict(self.env)
        if "POSTBACK_DATA_DIR" in env:
            env["POSTBACK_DATA_DIR"] = str(self.workdir / f"node-{index}-data")
        return env

    def describe(self) -> list[dict[str, Any]]:
        """Each node: its name (%h expanded), main pid and pool pids, now."""
        host = socket.gethostname()
        return [
            {
                "name": self.node_name(index).replace("%h", host),
                "pid": worker.pid,
                "pool_pids": [pid for pid in descendants(worker.pid) if pid != worker.pid],
            }
            for index, worker in enumerate(self.workers)
            if worker.alive
        ]

    def beat_pids(self) -> list[int]:
        if self.beat_process is not None and self.beat_process.alive:
            return [self.beat_process.pid]
        return []

    def main_pids(self) -> list[int]:
        return [worker.pid for worker in self.workers if worker.alive]

    def check_alive(self) -> None:
        for process in [*self.workers, self.beat_process]:
            if process is not None and not process.alive:
                raise RuntimeError(f"{self.label} {process.name} exited:\n{process.tail()}")

    def stop(self) -> float:
        """Stops every process; returns the slowest worker's shutdown time in seconds."""
        for process in [*self.workers, self.beat_process]:
            if process is not None and process.alive:
                process.signal_group(signal.SIGTERM)
        slowest = 0.0
        for process in [*self.workers, self.beat_process]:
            if process is not None:
                slowest = max(slowest, process.stop())
        return slowest
