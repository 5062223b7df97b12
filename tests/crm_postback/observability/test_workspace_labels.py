"""The `workspace` label: the workspace's name up to METRICS_MAX_WORKSPACES, `other` beyond,
read once per process (no query per event)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from crm_postback.configuration.workspaces import add_workspace
from crm_postback.observability import workspace_labels
from crm_postback.observability.workspace_labels import OTHER, known_labels, workspace_label
from models import DEFAULT_WORKSPACE_ID
from models.db import get_engine, session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import apply_env  # type: ignore[import-not-found]
from tests.sql_statements import recorded_statements  # type: ignore[import-not-found]


@pytest.fixture
def workspaces(sqlite_db: str) -> Iterator[list[int]]:
    workspace_labels.forget_labels()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        ids = [add_workspace(session, name).id for name in ("b", "c", "d")]
        session.commit()
    yield ids
    workspace_labels.forget_labels()


def statements_during(work: Callable[[], object]) -> int:
    with recorded_statements(get_engine()) as seen:
        work()
    return len(seen)


def test_names_up_to_the_limit_then_other(
    workspaces: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, METRICS_MAX_WORKSPACES="3")
    b, c, d = workspaces
    assert known_labels([DEFAULT_WORKSPACE_ID, b, c, d, b]) == {
        DEFAULT_WORKSPACE_ID: "default",
        b: "b",
        c: "c",
        d: OTHER,
    }


def test_names_are_read_once_per_process(workspaces: list[int]) -> None:
    b, c, _ = workspaces
    assert statements_during(lambda: workspace_label(b)) >= 1
    assert statements_during(lambda: [workspace_label(b) for _ in range(1000)]) == 0
    assert statements_during(lambda: workspace_label(c)) == 0  # every name came at once
    assert statements_during(lambda: workspace_label(DEFAULT_WORKSPACE_ID)) == 0


def test_a_workspace_created_after_the_first_load_is_named_at_its_first_event(
    workspaces: list[int],
) -> None:
    b, _, _ = workspaces
    assert workspace_label(b) == "b"  # the names are loaded
    with session_scope(workspace=ALL_WORKSPACES) as session:
        later = add_workspace(session, "later").id
        session.commit()
    assert workspace_label(later) == "later"
    assert statements_during(lambda: workspace_label(later)) == 0


def test_after_a_failed_load_the_next_waits(
    workspaces: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    b, c, _ = workspaces

    def unreachable(**_: object) -> object:
        raise ConnectionError

    reachable = workspace_labels.session_scope
    monkeypatch.setattr(workspace_labels, "session_scope", unreachable)
    assert workspace_label(b) == OTHER
    monkeypatch.setattr(workspace_labels, "session_scope", reachable)
    assert statements_during(lambda: workspace_label(c)) == 0  # within RETRY_SECONDS
    assert workspace_label(c) == OTHER
    monkeypatch.setattr(workspace_labels, "RETRY_SECONDS", 0.0)
    assert workspace_label(c) == "c"
