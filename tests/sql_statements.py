"""The SQL statements a piece of code runs, recorded for tests that count or inspect them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine


@dataclass(frozen=True)
class Statement:
    sql: str
    parameters: dict[str, Any] = field(default_factory=dict)
    # SQLAlchemy's compiled-cache status: "cached since ...", "generated in ...", "[no key]".
    cache: str = ""

    @property
    def verb(self) -> str:
        """SELECT, INSERT, UPDATE, ... (the first word, upper case)."""
        return self.sql.split(None, 1)[0].upper()


@contextmanager
def recorded_statements(target: Engine | type[Engine] = Engine) -> Iterator[list[Statement]]:
    """Every statement sent through `target` (an engine, or `Engine`: all of them) while the
    block runs, in order. The list fills as they run."""
    seen: list[Statement] = []

    def record(
        _conn: Any, _cursor: Any, sql: str, parameters: Any, context: Any, _many: Any
    ) -> None:
        named = parameters if isinstance(parameters, dict) else {}
        cache = context._get_cache_stats() if context is not None else ""
        seen.append(Statement(sql, dict(named), cache))

    event.listen(target, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(target, "before_cursor_execute", record)
