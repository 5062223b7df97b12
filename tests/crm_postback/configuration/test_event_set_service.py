"""How the event-set service writes back a name someone typed."""

from __future__ import annotations

import pytest

from crm_postback.configuration.event_set_service import named


@pytest.mark.parametrize(
    ("reference", "shown"),
    [
        ("acme-crm", "'acme-crm'"),
        ("7300000000000000001", "'7300000000000000001'"),
        ("213 373 4253", "(the name given)"),
        ("213-373-4253", "(the name given)"),
        ("jane@example.com", "(the name given)"),
        ("+12133734253", "(the name given)"),
    ],
)
def test_a_name_is_written_back_only_when_it_cannot_be_a_phone_or_an_email(
    reference: str, shown: str
) -> None:
    assert named(reference) == shown
