"""A caller's event id is sent to TikTok as given: it may carry no personal data (not even
encoded, or between separators), no control character, and not the shape of the ids derived
here (a caller could take another trigger's id ahead of it); usual Pixel ids pass."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from crm_postback.intake.trigger_schemas import TriggerIn

BASE: dict[str, Any] = {
    "type": "lead.sold",
    "lead_id": "L-1",
    "event_set": "acme",
    "occurred_at": "2026-12-01T00:00:00Z",
}


@pytest.mark.parametrize(
    "event_id",
    [
        "tel:+14155550122",  # a phone between separators
        "eid.victim%40example.org",  # an encoded address
        "eid.victim\uff20example.org",  # a full-width "@"
        "victim@example.org",
        "ev\nforged line",
        "ev\x00",
        "f4eedd3762568adc27720a64c75ddf2448d167b9",  # a derived id's shape
        "e" * 65,
    ],
)
def test_refused_naming_the_field_and_never_echoed(event_id: str) -> None:
    with pytest.raises(ValidationError) as refused:
        TriggerIn.model_validate({**BASE, "event_id": event_id})
    [error] = refused.value.errors(include_input=False)
    assert error["loc"] == ("event_id",)
    assert "victim" not in str(refused.value) and "4155550122" not in str(refused.value)


@pytest.mark.parametrize(
    "event_id",
    ["pixel-evt-600", "ev_1:lead|2", "3f2a1c9e-1b2c-4d5e-8f9a-0b1c2d3e4f5a", "1700000000123"],
)
def test_usual_pixel_ids_are_taken_as_given(event_id: str) -> None:
    assert TriggerIn.model_validate({**BASE, "event_id": event_id}).event_id == event_id
