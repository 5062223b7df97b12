"""The `workspace` label of a metric: the workspace's name, with a bounded number of values.

A workspace whose id is at most METRICS_MAX_WORKSPACES is labelled with its name; every later
one is `other`. The rule depends on the id alone, so every process labels a workspace the same
way and the series stay bounded however many workspaces are created.

Names are read once per process and kept (a workspace is never renamed): the default
workspace's is known, the first event of another workspace this process has not labelled yet
costs one query for every workspace's name (in its own short session), every later one a
dictionary lookup. A workspace created later is read at its first event, so its series carry
its name from the start; only while the database cannot be read is a name `other` (and the
next try waits RETRY_SECONDS). The worker asks for its batches' labels (`known_labels`)
between sending and recording, so recording itself reads nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from sqlalchemy import select

from crm_postback.core.settings import get_settings
from models import DEFAULT_WORKSPACE_ID, Workspace
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from models.workspaces import DEFAULT_WORKSPACE_NAME

log = logging.getLogger(__name__)

OTHER = "other"
# After a failed load (the database unreachable), the next one waits this long.
RETRY_SECONDS = 30.0

_lock = threading.Lock()
_names: dict[int, str] = {}
_failed_at: float | None = None


def workspace_label(workspace_id: int) -> str:
    """The label of one workspace (its name, or `other` beyond METRICS_MAX_WORKSPACES)."""
    if workspace_id > get_settings().metrics_max_workspaces:
        return OTHER
    if workspace_id == DEFAULT_WORKSPACE_ID:
        return DEFAULT_WORKSPACE_NAME  # created by the migration, never renamed
    name = _names.get(workspace_id)
    if name is not None:
        return name
    _load(workspace_id)
    return _names.get(workspace_id) or OTHER


def known_labels(workspace_ids: Iterable[int]) -> dict[int, str]:
    """The labels of these workspaces, loading the names once if one is not known yet."""
    return {workspace_id: workspace_label(workspace_id) for workspace_id in set(workspace_ids)}


def _load(missing: int) -> None:
    """Reads every name again: an id not known yet is of a workspace created since the last
    load (ids come from rows whose foreign key names an existing workspace)."""
    global _failed_at
    with _lock:
        if missing in _names:
            return  # another thread loaded it meanwhile
        if _failed_at is not None and time.monotonic() - _failed_at < RETRY_SECONDS:
            return
        limit = get_settings().metrics_max_workspaces
        try:
            with session_scope(workspace=ALL_WORKSPACES) as session:
                rows = session.execute(
                    select(Workspace.id, Workspace.name).where(Workspace.id <= limit)
                ).all()
        except Exception as error:
            log.warning("metrics: workspace names unavailable (%s)", type(error).__name__)
            _failed_at = time.monotonic()
            return
        _names.update({row.id: row.name for row in rows})
        _failed_at = None


def forget_labels() -> None:
    """Forget the names read (tests, whose databases differ from one test to the next)."""
    global _failed_at
    with _lock:
        _names.clear()
        _failed_at = None
