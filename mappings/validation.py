"""Checks that a mapping can produce a valid TikTok payload before it is saved."""

from __future__ import annotations

import re
import unicodedata

from crm_postback.tiktok.event_catalogue import (
    APP_ONLY_EVENTS,
    LEGACY_EVENTS,
    MAX_CUSTOM_EVENT_NAME_LENGTH,
    STANDARD_EVENTS,
    standard_event_named,
)

TRIGGER_TYPE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,63}\Z")
BUILT_IN_TRIGGERS = ("lead.submitted", "lead.sold", "offer.click", "offer.conversion")


class MappingError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def validate_trigger_type(trigger_type: str) -> str:
    # The pattern is anchored and bounded: it reads at most 65 characters of any input.
    # Never shown back: a refused name may be anything (an email address typed in the field).
    if not TRIGGER_TYPE_PATTERN.match(trigger_type):
        raise MappingError(
            "trigger",
            "must be lowercase letters, digits, '.', '_' or '-' "
            "(e.g. lead.sold, buyer.accepted), at most 64 characters",
        )
    return trigger_type


def validate_event_name(name: str) -> str:
    """A standard event with its exact casing, or a custom (CRM: any language) name."""
    stripped = name.strip()
    if not stripped:
        raise MappingError("event", "must not be empty")
    if stripped in STANDARD_EVENTS:
        return stripped
    if stripped in APP_ONLY_EVENTS:
        raise MappingError("event", f"{stripped!r} is an app-only event; use a web/CRM event")
    if stripped in LEGACY_EVENTS:
        raise MappingError(
            "event",
            f"{stripped!r} is a legacy name; use {LEGACY_EVENTS[stripped]!r} or a custom name",
        )
    standard = standard_event_named(stripped)
    if standard is not None:
        suggestion = LEGACY_EVENTS.get(standard, standard)
        raise MappingError(
            "event", f"standard events are case-sensitive: did you mean {suggestion!r}?"
        )
    if len(stripped) > MAX_CUSTOM_EVENT_NAME_LENGTH:
        raise MappingError(
            "event", f"custom names are at most {MAX_CUSTOM_EVENT_NAME_LENGTH} characters"
        )
    if any(unicodedata.category(char).startswith("C") for char in stripped):
        raise MappingError("event", "must not contain control characters")
    return stripped


def is_standard_event(name: str) -> bool:
    return name in STANDARD_EVENTS
