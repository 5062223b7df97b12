"""Celery worker and beat subprocesses: start, SIGKILL (whole or one child), restart, log."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path


def child_pids(pid: int) -> list[int]:
    """Live direct children of `pid`, from /proc (no psutil needed); zombies left out."""
    return [child for child in _children(pid) if _state(child) not in ("Z", "X", None)]


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _children(pid: int) -> list[int]:
    children: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        for task in task_dir.iterdir():
            with contextlib.suppress(OSError):
                children.extend(int(p) for p in (task / "children").read_text().split())
        return sorted(set(children))
    except OSError:
        pass
    # Kernels without CONFIG_PROC_CHILDREN: read every process's parent from /proc/*/stat.
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
    return sorted(children)


class CeleryProcess:
    """One `python -m celery -A worker.app worker|beat` in its own session (process group)."""

    def __init__(
        self,
        name: str,
        role: str,
        env: dict[str, str],
        cwd: Path,
        log_path: Path,
        concurrency: int = 2,
    ) -> None:
        self.name = name
        self.role = role
        self.env = env
        self.cwd = cwd
        self.log_path = log_path
        self.concurrency = concurrency
        self.starts = 0
        self.unexpected_exits = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._expected_down = False

    def command(self) -> list[str]:
        base = [sys.executable, "-m", "celery", "-A", "worker.app"]
        if self.role == "beat":
            return [*base, "beat", "--loglevel=INFO"]
        return [
            *base,
            "worker",
            "--pool=prefork",
            f"--concurrency={self.concurrency}",
            "--loglevel=INFO",
            f"--hostname={self.name}-{self.starts}@%h",
            # Gossip and mingle only talk to other workers; without them a restart is faster.
            "--without-gossip",
            "--without-mingle",
        ]

    def start(self) -> None:
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n=== chaos: start #{self.starts} at {time.time():.3f}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                self.command(),
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._expected_down = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def check(self) -> bool:
        """True if it died without us killing it (then it is counted, and left for a restart)."""
        if self._process is None or self._expected_down or self.alive:
            return False
        self.unexpected_exits += 1
        self._expected_down = True
        return True

    def wait_ready(self, timeout: float = 60.0) -> None:
        marker = "beat: Starting" if self.role == "beat" else " ready."
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.log_since_last_start():
                return
            if not self.alive:
                break
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start:\n{self.tail(40)}")

    def children(self) -> list[int]:
        return child_pids(self._process.pid) if self.alive and self._process else []

    def kill_child(self, rng: random.Random, *, every: bool = False) -> int | None:
        """SIGKILLs one pool child (or `every` one); the main process forks replacements.

        Returns the (first) pid killed, or None when there was no child to kill.
        """
        children = self.children()
        if not children:
            return None
        victims = children if every else [rng.choice(children)]
        killed: list[int] = []
        for victim in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)
        return killed[0] if killed else None

    def kill(self) -> None:
        """SIGKILL of the main process and every child: what a container kill looks like."""
        self._expected_down = True
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()

    def stop(self, timeout: float = 20.0) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL of whatever is left of the group."""
        self._expected_down = True
        if self._process is None:
            return
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_since_last_start(self) -> str:
        text = self.log_text()
        marker = f"=== chaos: start #{self.starts} "
        index = text.rfind(marker)
        return text[index:] if index >= 0 else text

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])
