"""Counting what a process sends to the database, through SQLAlchemy's engine events.

`statements` counts what the server executes: one per statement SQLAlchemy runs, one per page
of a multi-row INSERT, one per parameter set of an `executemany` (psycopg pipelines those in
one round trip). `cursor_calls` counts SQLAlchemy's cursor executes, close to round trips.
`transactions` counts commits and rollbacks. Pool pings and psycopg's implicit BEGIN are not
cursor executes and are not counted.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine


class StatementCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.statements = 0
        self.cursor_calls = 0
        self.transactions = 0
        self.tasks = 0
        self._installed = False

    def install(self) -> StatementCounter:
        """Listens on every engine of this process, including ones created later."""
        if not self._installed:
            event.listen(Engine, "before_cursor_execute", self._on_execute)
            event.listen(Engine, "commit", self._on_transaction_end)
            event.listen(Engine, "rollback", self._on_transaction_end)
            self._installed = True
        return self

    def reset(self) -> None:
        with self._lock:
            self.statements = self.cursor_calls = self.transactions = self.tasks = 0

    def add_task(self) -> None:
        with self._lock:
            self.tasks += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                "statements": self.statements,
                "cursor_calls": self.cursor_calls,
                "transactions": self.transactions,
                "tasks": self.tasks,
            }

    def write(self, folder: Path) -> None:
        """One file per process; written atomically so a reader never sees half of it."""
        path = folder / f"{os.getpid()}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.snapshot()))
        temporary.replace(path)

    def _on_execute(
        self,
        _conn: Any,
        _cursor: Any,
        _statement: str,
        parameters: Any,
        _context: Any,
        executemany: bool,
    ) -> None:
        many = executemany and isinstance(parameters, list | tuple)
        with self._lock:
            self.statements += len(parameters) if many else 1
            self.cursor_calls += 1

    def _on_transaction_end(self, *_: Any) -> None:
        with self._lock:
            self.transactions += 1


def read_counts(folder: Path) -> dict[str, int]:
    """The sum over every process file in `folder` (plus how many processes wrote one)."""
    keys = ("statements", "cursor_calls", "transactions", "tasks")
    total = dict.fromkeys((*keys, "processes"), 0)
    for path in folder.glob("*.json"):
        try:
            counts = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for key in keys:
            total[key] += int(counts.get(key, 0))
        total["processes"] += 1
    return total


def read_counts_by_pid(folder: Path) -> dict[int, dict[str, int]]:
    """Each process file in `folder` on its own, by the pid that wrote it."""
    found: dict[int, dict[str, int]] = {}
    for path in folder.glob("*.json"):
        try:
            found[int(path.stem)] = {k: int(v) for k, v in json.loads(path.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            continue
    return found
