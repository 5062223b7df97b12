"""What the run ran on, printed before any figure."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import celery


def _proc_field(path: str, prefix: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def describe(versions: dict[str, str]) -> dict[str, Any]:
    memory = _proc_field("/proc/meminfo", "MemTotal")
    memory_kib = int(memory.split()[0]) if memory else 0
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "cores": os.cpu_count(),
        "ram_gib": round(memory_kib / 1024 / 1024, 1),
        "cpu": _proc_field("/proc/cpuinfo", "model name") or platform.processor(),
        "python": platform.python_version(),
        "postgres": versions.get("postgres", "?"),
        "redis": versions.get("redis", "?"),
        "celery": celery.__version__,
        "platform": platform.platform(),
        "load_average_at_start": [round(value, 2) for value in load],
    }


def render(machine: dict[str, Any]) -> str:
    load = ", ".join(f"{value:g}" for value in machine["load_average_at_start"])
    return (
        f"machine: {machine['cores']} cores, {machine['ram_gib']} GiB RAM, {machine['cpu']}\n"
        f"         Python {machine['python']}, PostgreSQL {machine['postgres']}, "
        f"Redis {machine['redis']}, Celery {machine['celery']}; "
        f"load average at start {load}"
    )
