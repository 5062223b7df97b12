"""Append-only JSON Lines log of what arrived, readable by a harness across simulator restarts."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


class JsonlRecorder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, records: Iterable[Mapping[str, Any]]) -> None:
        lines = "".join(json.dumps(record, separators=(",", ":")) + "\n" for record in records)
        if not lines:
            return
        # Opened per batch so nothing is left unflushed if the process is killed, and no
        # file handle outlives a stopped server.
        with self._lock, self.path.open("a", encoding="utf-8") as file:
            file.write(lines)
