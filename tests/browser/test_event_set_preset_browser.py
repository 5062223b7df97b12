"""The event set page in Chromium: a new event set made with the lead-generation preset, its
consent and age settings, a legacy name's notice, and the preset's button run again."""

from __future__ import annotations

from typing import Any

from tests.browser.test_admin_browser import flash, log_in  # type: ignore[import-not-found]
from tests.conftest import EVENT_SET_ID, TOKEN  # type: ignore[import-not-found]


def test_new_event_set_with_the_preset_settings_and_a_legacy_name(page: Any, server: str) -> None:
    log_in(page, server)
    page.click("text=+ New event set")
    page.fill("input[name=name]", "acme-crm")
    page.fill("input[name=event_set_id]", EVENT_SET_ID)
    page.fill("input[name=access_token]", TOKEN)
    assert (
        page.get_attribute("input[name=max_event_age_days]", "placeholder") == "default: 28 (crm)"
    )
    page.fill("input[name=max_event_age_days]", "14")
    page.check("input[name=limited_data_use]")
    page.check("input[name=preset]")
    page.click("button:has-text('Create event set')")
    assert "created with the lead-generation mappings" in flash(page)

    rows = page.locator("table.mappings tbody tr")
    assert rows.count() == 4
    text = page.locator("table.mappings").inner_text()
    for trigger, event in (
        ("lead.submitted", "Lead"),
        ("lead.qualified", "lead_qualified"),
        ("lead.sold", "lead_sold"),
        ("offer.conversion", "offer_converted"),
    ):
        assert trigger in text and event in text
    assert page.inner_text("[data-setting=limited_data_use]") == "on"
    assert page.inner_text("[data-setting=max_event_age_days]") == "14 days"

    page.click("button:has-text('Add the lead-generation preset')")
    assert "0 created, 4 already there" in flash(page)
    assert page.locator("table.mappings tbody tr").count() == 4

    page.click("text=+ Add mapping")
    page.fill("input[name=trigger]", "form.sent")
    page.select_option("#event-choice", "__custom__")
    page.fill("input[name=event_custom]", "SubmitForm")
    page.click("button:has-text('Save mapping')")
    assert "Mapping 5 created" in flash(page)
    warning = page.locator(".flash.warn").first.inner_text()
    assert "legacy name" in warning and "'Lead'" in warning

    page.click(".head-actions a[href$='/edit']")  # the event set's edit form
    assert page.input_value("input[name=max_event_age_days]") == "14"
    page.fill("input[name=max_event_age_days]", "")
    page.uncheck("input[name=limited_data_use]")
    page.click("button:has-text('Save')")
    assert "Event set saved" in flash(page)
    assert page.inner_text("[data-setting=limited_data_use]") == "off"
    assert page.inner_text("[data-setting=max_event_age_days]") == "28 days"
