"""Resident memory of worker process trees, sampled from /proc (no psutil needed)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                found.extend(int(p) for p in (task / "children").read_text().split())
    except OSError:
        pass
    return found


def descendants(pid: int) -> list[int]:
    result = [pid]
    index = 0
    while index < len(result):
        result.extend(children(result[index]))
        index += 1
    return result


def rss_kib(pid: int) -> int:
    """VmRSS of one process; 0 if it is gone (or a zombie without memory)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def pss_kib(pid: int) -> int:
    """Proportional set size: pages shared by the pool's forked processes counted once."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def tree_rss_kib(roots: Sequence[int]) -> tuple[int, int]:
    """Sum of VmRSS over every root and its descendants, and how many processes that was."""
    pids = {pid for root in roots for pid in descendants(root)}
    return sum(rss_kib(pid) for pid in pids), len(pids)


def tree_pss_kib(roots: Sequence[int]) -> int:
    return sum(pss_kib(pid) for root in roots for pid in set(descendants(root)))


@dataclass
class Sample:
    at: float
    rss_kib: int
    processes: int
    pss_kib: int = 0


@dataclass
class RssSampler:
    """Samples the trees under `roots()` every `interval` s in a thread; `on_sample` sees each."""

    roots: Callable[[], Sequence[int]]
    interval: float = 0.5
    on_sample: Callable[[Sample], None] | None = None
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> RssSampler:
        self._thread = threading.Thread(target=self._loop, name="bench-rss", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def peak_kib(self) -> int:
        return max((s.rss_kib for s in self.samples), default=0)

    @property
    def peak_pss_kib(self) -> int:
        return max((s.pss_kib for s in self.samples), default=0)

    def _loop(self) -> None:
        while True:
            roots = self.roots()
            total, count = tree_rss_kib(roots)
            sample = Sample(time.time(), total, count, tree_pss_kib(roots))
            self.samples.append(sample)
            if self.on_sample is not None:
                self.on_sample(sample)
            if self._stop.wait(self.interval):
                return
