"""`env:` token references across workspaces: the environment is one for the whole instance,
so only the operator (the CLI) may point an event set at a variable, and a variable that is
not set is named to the operator only (not in the admin's verify, not in the pause reason the
worker stores)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from crm_postback.api import enqueue_trigger
from crm_postback.commands.manage_event_sets import (
    AddEventSet,
    ReplaceToken,
    UpdateEventSet,
    VerifyEventSet,
    add_event_set,
    replace_token,
    update_event_set,
    verify_event_set,
)
from crm_postback.commands.unit_of_work import Actor
from crm_postback.core.errors import InputRejected
from crm_postback.core.token_vault import OPERATOR_ONLY, VARIABLE_NOT_SET
from crm_postback.simulator import SimulatorControl
from models import DEFAULT_WORKSPACE_ID, EventSet, Role
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import EVENT_SET_ID, TOKEN  # type: ignore[import-not-found]

VARIABLE = "POSTBACK_TOKEN_ACME"
ADMINS = [
    Actor("web:owner", DEFAULT_WORKSPACE_ID, Role.OWNER),
    Actor(
        "api:root", DEFAULT_WORKSPACE_ID, Role.OWNER, instance_admin=True
    ),  # even an instance admin
]


def tokens() -> list[str]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return [e.sealed_token for e in session.query(EventSet).order_by(EventSet.id)]


@pytest.mark.parametrize("admin", ADMINS, ids=lambda a: a.name)
@pytest.mark.parametrize("reference", [f"env:{VARIABLE}", "env:ADMIN_PASSWORD"])
def test_an_admin_face_cannot_set_an_env_reference(
    sqlite_db: str, make_event_set: Callable[..., int], admin: Actor, reference: str
) -> None:
    refusals = []
    with pytest.raises(InputRejected) as refused:
        add_event_set(AddEventSet("beta", "7300000000000000002", reference), admin)
    refusals.append(refused.value)
    make_event_set(mappings=())
    before = tokens()
    for request in (
        ReplaceToken("acme", reference),
        UpdateEventSet("acme", name="renamed", access_token=reference),
    ):
        with pytest.raises(InputRejected) as refused:
            if isinstance(request, ReplaceToken):
                replace_token(request, admin)
            else:
                update_event_set(request, admin)
        refusals.append(refused.value)
    for error in refusals:
        assert str(error) == f"access_token: {OPERATOR_ONLY}"  # one answer, no name echoed
    assert tokens() == before


def test_the_operator_sets_a_reference_in_the_workspace_it_names(sqlite_db: str) -> None:
    saved = add_event_set(AddEventSet("acme", EVENT_SET_ID, f"env:{VARIABLE}"), Actor.cli())
    assert saved.sealed_token == f"env:{VARIABLE}"
    replace_token(
        ReplaceToken("acme", TOKEN), Actor("web:owner", DEFAULT_WORKSPACE_ID, Role.OWNER)
    )  # a token itself: anyone
    replace_token(ReplaceToken("acme", f"env:{VARIABLE}_2"), Actor.cli())
    assert tokens() == [f"env:{VARIABLE}_2"]


def test_a_missing_variable_is_named_to_the_operator_only(
    sqlite_db: str, make_event_set: Callable[..., int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(VARIABLE, raising=False)
    make_event_set(
        mappings=(), token=f"env:{VARIABLE}", references_allowed=True, advertiser_id="7000000001"
    )
    for admin in ADMINS:
        answer = verify_event_set(VerifyEventSet("acme"), admin)
        assert not answer.ok and answer.message == VARIABLE_NOT_SET
        assert VARIABLE not in answer.message
    operator = verify_event_set(VerifyEventSet("acme"), Actor.cli())
    assert operator.message == f"access_token: environment variable {VARIABLE} is not set"


def test_the_workers_pause_reason_does_not_name_the_variable(
    sqlite_db: str,
    make_event_set: Callable[..., int],
    simulator: SimulatorControl,
    eager: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pause reason is on the workspace's pages, for every member to read."""
    monkeypatch.delenv(VARIABLE, raising=False)
    make_event_set(token=f"env:{VARIABLE}", references_allowed=True)
    enqueue_trigger(
        {
            "type": "lead.submitted",
            "lead_id": "L-1",
            "event_set": "acme",
            "occurred_at": datetime.now(UTC).isoformat(),
            "match_keys": {"email": "a@b.example"},
        }
    )
    with session_scope(workspace=ALL_WORKSPACES) as session:
        event_set = session.query(EventSet).one()
        assert event_set.status == "paused"
        assert event_set.paused_reason == VARIABLE_NOT_SET
    assert simulator.count_events() == 0
