"""`py-spy record` on the worker processes during a run, and the top own-time functions."""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

_LINE_NUMBER = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    beside_python = Path(sys.executable).with_name("py-spy")
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("py-spy")


class Profiler:
    """Samples every worker main process and its pool children (--subprocesses), 100 Hz.

    --nonblocking: the workers are never paused, at the price of a few torn stacks.
    """

    def __init__(self, pids: list[int], output: Path, log: Path) -> None:
        binary = py_spy()
        if binary is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        self.output = output
        output.parent.mkdir(parents=True, exist_ok=True)
        self.processes = [
            subprocess.Popen(
                self._command(binary, pid), stdout=log.open("ab"), stderr=subprocess.STDOUT
            )
            for pid in pids
        ]

    def _command(self, binary: str, pid: int) -> list[str]:
        output = self.output.with_suffix(f".{pid}.raw")
        return [
            binary, "record", "--pid", str(pid), "--subprocesses", "--rate", "100",
            "--nonblocking", "--format", "raw", "--output", str(output),
        ]  # fmt: skip

    def stop(self) -> Path:
        """Stops sampling (SIGINT makes py-spy write its file) and merges the files."""
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        parts = sorted(self.output.parent.glob(f"{self.output.stem}.*.raw"))
        with self.output.open("w") as merged:
            for part in parts:
                merged.write(part.read_text())
                part.unlink()
        return self.output


def top_own_time(raw: Path, limit: int = 15) -> tuple[int, list[dict[str, object]]]:
    """How many busy samples there were, and the functions most often on top of one (own
    time) with their share."""
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_LINE_NUMBER.sub(")", frame) for frame in stack.rsplit(";", 2)[-2:]]
        name = frames[-1]
        if "(<" in name and len(frames) == 2:
            # Generated code (a namedtuple's __new__, a dataclass method...): say who called it.
            name = f"{name} <- {frames[0]}"
        own[name] += int(count)
        total += int(count)
    return total, [
        {"function": name, "samples": samples, "share": round(samples / total, 4)}
        for name, samples in own.most_common(limit)
    ]


def render_top(rows: list[dict[str, object]], samples: int, title: str) -> str:
    lines = [f"{title}: own time, share of {samples:,} busy samples at 100 Hz"]
    for rank, row in enumerate(rows, 1):
        share = float(str(row["share"])) * 100
        lines.append(f"  {rank:>2}. {share:5.1f}%  {row['function']}")
    return "\n".join(lines)
