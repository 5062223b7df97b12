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


# The event set kinds whose rules differ (models.EventSetKind's values; None: not known yet).
CRM = "crm"
WEB = "web"
OTHER_LANGUAGES_ONLY_CRM = (
    "TikTok accepts event names in other languages (characters beyond ASCII) only for CRM "
    "event sets; a Pixel needs an English name"
)


def validate_event_name(name: str, kind: str | None) -> str:
    """A standard event with its exact casing, or a custom name, for an event set of `kind`.

    Legacy names (SubmitForm, ...) pass for CRM event sets (`event_name_warning` suggests
    the current one) and are refused for web; custom names beyond ASCII pass only for CRM.
    `kind` None: the event set is not known yet (a form read before it is saved); both pass
    here and are checked again, with the kind, when the mapping is saved."""
    stripped = name.strip()
    if not stripped:
        raise MappingError("event", "must not be empty")
    if stripped in STANDARD_EVENTS:
        return stripped
    if stripped in APP_ONLY_EVENTS:
        raise MappingError("event", f"{stripped!r} is an app-only event; use a web/CRM event")
    if stripped in LEGACY_EVENTS:
        if kind == WEB:
            raise MappingError(
                "event",
                f"{stripped!r} is a legacy name a Pixel no longer takes; use "
                f"{LEGACY_EVENTS[stripped]!r} or a custom name",
            )
        return stripped
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
    if kind == WEB and not stripped.isascii():
        raise MappingError("event", OTHER_LANGUAGES_ONLY_CRM)
    return stripped


def event_name_warning(name: str, kind: str | None) -> str | None:
    """What to say about a name `validate_event_name` accepted for `kind`: a legacy name on a
    CRM event set is sent as it is, with the current name suggested."""
    if name in LEGACY_EVENTS and kind == CRM:
        return (
            f"{name!r} is a legacy name TikTok still accepts for CRM event sets; "
            f"the current standard event is {LEGACY_EVENTS[name]!r}"
        )
    return None


def is_standard_event(name: str) -> bool:
    return name in STANDARD_EVENTS
