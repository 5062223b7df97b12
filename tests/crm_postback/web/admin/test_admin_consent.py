"""The delivery page's 'consent withdrawn' button: editors and owners, with confirmation;
the lead's history shows the new state and the postbacks that were stopped."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from crm_postback.api import enqueue_trigger
from crm_postback.simulator import SimulatorControl
from models import AuditEntry, Lead, PostbackStatus
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.crm_postback.web.admin.conftest import (  # type: ignore[import-not-found]
    flashes,
    login,
    submitted,
)


def withdrawn(lead: str) -> bool:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        row = session.scalars(select(Lead).where(Lead.lead_ref == lead)).one()
        return row.consent_withdrawn_at is not None


@pytest.mark.usefixtures("acme_live")
def test_an_editor_withdraws_consent_from_the_leads_history(
    browser: TestClient, make_user: Callable[..., int], simulator: SimulatorControl
) -> None:
    simulator.set_faults(http_5xx_rate=1.0)
    enqueue_trigger(submitted("L-1"))
    make_user("ed", role="editor")
    csrf = login(browser, "ed")
    page = browser.get("/admin/delivery?lead=L-1").text
    assert 'id="withdraw-consent"' in page and "data-confirm=" in page
    answer = browser.post(
        "/admin/delivery/withdraw-consent", data={"csrf_token": csrf, "lead": "L-1"}
    )
    assert answer.status_code == 200
    assert any("1 waiting postback(s) stopped" in f for f in flashes(answer.text))
    assert 'id="consent-state"' in answer.text and 'id="withdraw-consent"' not in answer.text
    assert f'data-status="{PostbackStatus.CONSENT_WITHDRAWN}"' in answer.text
    assert withdrawn("L-1")
    with session_scope(workspace=ALL_WORKSPACES) as session:
        actors = session.scalars(
            select(AuditEntry.actor).where(AuditEntry.action == "lead.consent_withdrawn")
        ).all()
    assert actors == ["web:ed"]
    counts = browser.get("/admin/delivery").text
    assert 'data-status="consent_withdrawn">1<' in counts


@pytest.mark.usefixtures("acme_live")
def test_a_viewer_sees_no_button_and_is_refused(
    browser: TestClient, make_user: Callable[..., int]
) -> None:
    enqueue_trigger(submitted("L-1"))
    make_user("vic", role="viewer")
    csrf = login(browser, "vic")
    assert 'id="withdraw-consent"' not in browser.get("/admin/delivery?lead=L-1").text
    answer = browser.post(
        "/admin/delivery/withdraw-consent", data={"csrf_token": csrf, "lead": "L-1"}
    )
    assert answer.status_code == 403
    assert not withdrawn("L-1")


@pytest.mark.usefixtures("acme_live")
def test_unknown_lead_is_404_and_a_missing_csrf_token_changes_nothing(
    browser: TestClient, make_user: Callable[..., int]
) -> None:
    enqueue_trigger(submitted("L-1"))
    make_user("owen")
    csrf = login(browser, "owen")
    unknown = browser.post(
        "/admin/delivery/withdraw-consent", data={"csrf_token": csrf, "lead": "L-secret-9"}
    )
    assert unknown.status_code == 404 and "L-secret-9" not in unknown.text
    forged = browser.post("/admin/delivery/withdraw-consent", data={"lead": "L-1"})
    assert forged.status_code in (400, 403)
    assert not withdrawn("L-1")
