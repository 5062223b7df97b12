"""Workspace names: a lowercase slug, and not one the metrics use for something else."""

from __future__ import annotations

import pytest

from crm_postback.configuration.workspaces import RESERVED_NAMES, add_workspace, checked_name
from crm_postback.core.errors import InputRejected
from crm_postback.observability.workspace_labels import OTHER
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES


def test_the_overflow_metric_label_is_not_a_workspace_name(sqlite_db: str) -> None:
    assert OTHER in RESERVED_NAMES
    with pytest.raises(InputRejected) as refused:
        checked_name(" other ")
    assert [(e.field, e.message) for e in refused.value.errors] == [
        ("workspace", "this name is reserved: other")
    ]
    with session_scope(workspace=ALL_WORKSPACES) as session:
        with pytest.raises(InputRejected):
            add_workspace(session, OTHER)
        assert add_workspace(session, "others").name == "others"


@pytest.mark.parametrize("name", ["Acme", "-acme", "", "a" * 65, "acme corp", "ac/me"])
def test_a_name_that_is_no_slug_is_refused(name: str) -> None:
    with pytest.raises(InputRejected) as refused:
        checked_name(name)
    assert [e.field for e in refused.value.errors] == ["workspace"]
