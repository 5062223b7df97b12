"""An admin who never saw the code configures a new advertiser end to end, in Chromium."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from crm_postback.simulator import SimulatorControl
from tests.browser.conftest import ADMIN_PASSWORD  # type: ignore[import-not-found]
from tests.conftest import EVENT_SET_ID, TOKEN  # type: ignore[import-not-found]

SCREENSHOT = os.environ.get("ADMIN_SCREENSHOT")  # set to write the README's picture


def log_in(page: Any, server: str) -> None:
    page.goto(f"{server}/admin/")
    assert "/admin/login" in page.url
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"{server}/admin/event-sets")


def flash(page: Any) -> str:
    return str(page.locator(".flash").first.inner_text())


def create_event_set(page: Any) -> None:
    page.click("text=+ New event set")
    page.fill("input[name=name]", "acme-crm")
    page.fill("input[name=event_set_id]", EVENT_SET_ID)
    page.fill("input[name=advertiser_id]", "7000000001")
    page.fill("input[name=access_token]", TOKEN)
    page.fill("input[name=lead_event_source]", "AcmeLeads")
    page.select_option("select[name=currency]", "USD")
    page.click("button:has-text('Create event set')")
    assert "Event set 'acme-crm' created" in flash(page)
    assert TOKEN not in page.content()


def add_mapping(page: Any, trigger: str, event: str, custom: str = "") -> None:
    page.click("text=+ Add mapping")
    page.fill("input[name=trigger]", trigger)
    page.select_option("#event-choice", event)
    if custom:
        page.fill("input[name=event_custom]", custom)


def send(server: str, key: str, body: dict[str, Any]) -> None:
    response = requests.post(
        f"{server}/v1/triggers",
        json={"event_set": "acme-crm", **body},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 202, response.text


def test_configure_an_advertiser_end_to_end(
    page: Any, server: str, ingest_key: str, simulator: SimulatorControl
) -> None:
    log_in(page, server)
    create_event_set(page)

    page.click("button:has-text('Verify with TikTok')")
    assert "verified: TikTok knows event set" in flash(page)

    # lead.submitted -> Lead, always
    add_mapping(page, "lead.submitted", "Lead")
    assert not page.is_visible("#custom-event")  # only shown for custom events
    page.click("button:has-text('Save mapping')")
    assert "Mapping 1 created (v1)" in flash(page)

    # lead.sold -> custom lead_sold, only for buyer B17 and values of at least 10
    add_mapping(page, "lead.sold", "__custom__", custom="lead")
    rows = page.locator("#conditions .cond-row")
    rows.nth(0).locator("input[name=cond_attribute]").fill("buyer_id")
    rows.nth(0).locator("input[name=cond_value]").fill("B17")
    page.click("#add-cond")
    rows.nth(1).locator("input[name=cond_attribute]").fill("value")
    rows.nth(1).locator("select[name=cond_op]").select_option("gte")
    rows.nth(1).locator("input[name=cond_value]").fill("10")
    page.check("input[name=currency_mode][value=fixed]")
    page.select_option("select[name=currency_fixed]", "USD")
    page.click("button:has-text('Save mapping')")
    # "lead" is TikTok's Lead with the wrong casing: refused, next to the field
    error = page.locator('.field-error[data-field="event"]')
    assert "did you mean 'Lead'?" in error.inner_text()
    page.fill("input[name=event_custom]", "lead_sold")

    sample = {
        "type": "lead.sold",
        "lead_id": "L-1001",
        "match_keys": {"email": "jane@example.com", "tiktok_lead_id": "7311111111111111111"},
        "attributes": {"buyer_id": "B17", "value": 42.5},
    }
    page.fill("textarea[name=preview_sample]", json.dumps(sample))
    page.click("button:has-text('Preview payload')")
    body = json.loads(page.locator("#preview-json").inner_text())
    [event] = body["data"]
    assert body["event_source"] == "crm" and body["event_source_id"] == EVENT_SET_ID
    assert event["event"] == "lead_sold"
    assert event["properties"] == {"value": 42.5, "currency": "USD"}
    assert event["lead"] == {"lead_id": "7311111111111111111", "lead_event_source": "AcmeLeads"}
    assert "jane@example.com" not in page.locator("#preview-json").inner_text()
    assert simulator.count_events() == 0  # a preview sends nothing
    page.click("button:has-text('Save mapping')")
    assert "Mapping 2 created (v1)" in flash(page)
    row = page.locator("tr[data-mapping-id='2']")
    assert 'buyer_id == "B17"' in row.inner_text() and "value >= 10" in row.inner_text()

    # offer.conversion -> Purchase, with order_id and content_type
    add_mapping(page, "offer.conversion", "Purchase")
    page.fill("input[name=order_id_from]", "offer_id")
    page.select_option("select[name=content_type]", "product")
    page.click("button:has-text('Save mapping')")
    assert "Mapping 3 created (v1)" in flash(page)
    set_page = page.url

    # The routing system sends triggers (ingest API); they are delivered to TikTok.
    occurred = datetime.now(UTC) - timedelta(minutes=5)
    send(
        server,
        ingest_key,
        {
            "type": "lead.submitted",
            "lead_id": "L-1001",
            "occurred_at": (occurred - timedelta(minutes=20)).isoformat(),
            "match_keys": {"email": "jane@example.com", "tiktok_lead_id": "7311111111111111111"},
        },
    )
    send(
        server,
        ingest_key,
        {
            "type": "lead.sold",
            "lead_id": "L-1001",
            "occurred_at": occurred.isoformat(),
            "attributes": {"buyer_id": "B17", "value": 42.5},
        },
    )
    [sold] = simulator.events(event="lead_sold")
    # As previewed, except event_time and event_id (the sample had no occurred_at).
    same = {k: v for k, v in event.items() if k not in ("event_time", "event_id")}
    assert {k: v for k, v in sold["payload"].items() if k in same} == same

    page.click("nav >> text=Delivery")
    counts = page.locator("#status-counts tr[data-event-set='acme-crm']")
    assert counts.locator("td[data-status=delivered]").inner_text() == "2"
    page.fill("input[name=lead]", "L-1001")
    page.click('button:has-text("Show a lead\'s postbacks")')
    history = page.locator("#lead-history")
    assert history.locator("tr.postback[data-status=delivered]").count() == 2
    assert "lead_sold" in history.inner_text() and "#2 v1" in history.inner_text()

    if SCREENSHOT:  # the README's picture: the mapping page after the first deliveries
        page.goto(set_page)
        page.set_viewport_size({"width": 1360, "height": 1010})
        page.screenshot(path=SCREENSHOT)

    # Every change is in the audit trail, with who made it.
    page.click("nav >> text=Audit trail")
    audit = page.locator("main").inner_text()
    assert "mapping.create" in audit and "web:admin" in audit and TOKEN not in audit


def test_disable_and_delete_a_mapping(page: Any, server: str) -> None:
    log_in(page, server)
    create_event_set(page)
    add_mapping(page, "offer.click", "Contact")
    page.click("button:has-text('Save mapping')")
    page.click("tr[data-mapping-id='1'] >> button:has-text('Disable')")
    assert "Mapping 1 disabled (v2)" in flash(page)
    assert "disabled" in page.locator("tr[data-mapping-id='1']").inner_text()
    page.click("tr[data-mapping-id='1'] >> button:has-text('Delete')")  # confirm() accepted
    assert "Mapping 1 deleted" in flash(page)
    assert page.locator("tr[data-mapping-id='1']").count() == 0
    page.click("button:has-text('Log out')")
    assert "You are logged out." in flash(page)
    page.goto(f"{server}/admin/event-sets")
    assert "/admin/login" in page.url


def test_failing_runs_save_a_screenshot(page: Any, server: str) -> None:
    """The fixture's artifact path is writable (a real failure would leave a PNG there)."""
    from tests.browser.conftest import ARTIFACTS  # type: ignore[import-not-found]

    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(f"{server}/admin/login")
    target = Path(ARTIFACTS) / "smoke-login.png"
    page.screenshot(path=str(target))
    assert target.stat().st_size > 1000
    target.unlink()
