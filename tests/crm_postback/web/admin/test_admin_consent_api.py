"""`POST /admin/api/leads/{lead_id}/consent-withdrawal`: the page button's JSON twin. Editors
and owners only, the caller's workspace only (another workspace's lead is 404 and stays
untouched), audited under the token's user, and no answer repeats the lead id."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from crm_postback.api import enqueue_trigger
from crm_postback.simulator import SimulatorControl
from models import AuditEntry, Lead, Postback, PostbackStatus
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.crm_postback.web.admin.conftest import (  # type: ignore[import-not-found]
    api_client,
    ensure_workspace,
    submitted,
)

PATH = "/admin/api/leads/{}/consent-withdrawal"


def withdrawn_at(lead: str) -> list[object]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return list(session.scalars(select(Lead.consent_withdrawn_at).where(Lead.lead_ref == lead)))


def statuses(lead: str) -> list[str]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        query = select(Postback.status).where(Postback.lead_ref == lead).order_by(Postback.id)
        return list(session.scalars(query))


@pytest.mark.usefixtures("acme_live")
def test_an_editor_withdraws_and_a_second_call_changes_nothing(
    make_user: Callable[..., int], simulator: SimulatorControl
) -> None:
    simulator.set_faults(http_5xx_rate=1.0)  # the postback waits on the retry ladder
    enqueue_trigger(submitted("acme/L 1"))
    make_user("ed", role="editor")
    with api_client("ed") as api:
        answer = api.post(PATH.format("acme%2FL%201"))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body.pop("consent_withdrawn_at")
        assert body == {
            "status": "consent_withdrawn",
            "already_withdrawn": False,
            "postbacks_stopped": 1,
            "postbacks_in_flight": 0,
        }
        assert "L 1" not in answer.text and "L%201" not in answer.text
        again = api.post(PATH.format("acme%2FL%201")).json()
        assert (again["already_withdrawn"], again["postbacks_stopped"]) == (True, 0)
    assert statuses("acme/L 1") == [PostbackStatus.CONSENT_WITHDRAWN]
    with session_scope(workspace=ALL_WORKSPACES) as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "lead.consent_withdrawn")
        ).all()
        assert [e.actor for e in entries] == ["api:ed"]


def test_a_viewer_is_refused_and_nothing_changes(
    make_user: Callable[..., int], make_event_set: Callable[..., int]
) -> None:
    make_event_set()
    enqueue_trigger(submitted("L-1"))
    make_user("vic", role="viewer")
    with api_client("vic") as api:
        answer = api.post(PATH.format("L-1"))
    assert answer.status_code == 403, answer.text
    assert withdrawn_at("L-1") == [None]


def test_another_workspaces_lead_is_404_and_stays_untouched(
    make_user: Callable[..., int], make_event_set: Callable[..., int]
) -> None:
    make_event_set()
    globex = ensure_workspace("globex")
    make_event_set("globex-crm", "7300000000000000009", workspace_id=globex)
    enqueue_trigger(submitted("G-1", "globex-crm"), workspace="globex")
    make_user("ed", role="editor")  # in the default workspace only
    with api_client("ed") as api:
        foreign = api.post(PATH.format("G-1"))
        nobody = api.post(PATH.format("nobody"))
        assert (foreign.status_code, nobody.status_code) == (404, 404)
        assert foreign.json() == nobody.json()
        assert "G-1" not in foreign.text
        # Naming the other workspace is refused too: ed is no member of it.
        assert api.post(PATH.format("G-1"), headers={"X-Workspace": "globex"}).status_code == 404
    assert withdrawn_at("G-1") == [None]
    make_user("gus", workspace="globex", role="owner")
    with api_client("gus", "globex") as api:
        assert api.post(PATH.format("G-1")).status_code == 200
    assert withdrawn_at("G-1") != [None]


def test_a_bad_lead_id_is_422_without_echo(
    make_user: Callable[..., int], make_event_set: Callable[..., int]
) -> None:
    """An id no trigger could have carried (too long, shaped like an email) is 422, as in the
    ingest API; any other unknown one (a newline in it included) is 404."""
    make_event_set()
    make_user("ed", role="editor")
    with api_client("ed") as api:
        for bad in ("x" * 300, "jane%40example.com"):
            answer = api.post(PATH.format(bad))
            assert answer.status_code == 422, (bad, answer.text)
            assert answer.json()["errors"][0]["field"] == "lead_id"
            assert "jane" not in answer.text and "x" * 50 not in answer.text
        assert api.post(PATH.format("L%0A1")).status_code == 404
        assert api.get(PATH.format("L-1")).status_code == 405
