"""Validated shapes of what routing systems send: triggers and lead match keys."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from crm_postback.core import jsontext
from crm_postback.tiktok.event_catalogue import SUPPORTED_CURRENCIES
from mappings.rules import as_number
from mappings.validation import TRIGGER_TYPE_PATTERN

MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_VALUE_LENGTH = 1000
MAX_KEYS_PER_KIND = 5
FUTURE_TOLERANCE = timedelta(minutes=5)
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")
_LOOKS_LIKE_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")

ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
AttributeValue = str | int | float | bool | None
OneOrMany = str | list[str]


class MatchKeys(BaseModel):
    """Raw match keys as sent; they are normalised and hashed before anything is stored."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    ttclid: str | None = Field(None, max_length=512)
    ttp: str | None = Field(None, max_length=256)
    email: OneOrMany | None = None
    phone: OneOrMany | None = None
    external_id: OneOrMany | None = None
    ip: str | None = Field(None, max_length=64)
    user_agent: str | None = Field(None, max_length=1024)
    tiktok_lead_id: str | None = Field(None, pattern=r"^[0-9A-Za-z_\-]{1,64}$")

    @field_validator("email", "phone", "external_id")
    @classmethod
    def _at_most_five(cls, value: OneOrMany | None) -> OneOrMany | None:
        if isinstance(value, list) and len(value) > MAX_KEYS_PER_KIND:
            raise ValueError(f"at most {MAX_KEYS_PER_KIND} values")
        return value

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(ip_address(value.strip()))
        except ValueError as exc:
            raise ValueError("not an IPv4 or IPv6 address") from exc


class TriggerIn(BaseModel):
    """One lifecycle change. `lead_id` is the routing system's id for the lead."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    type: str = Field(
        description="lead.submitted, lead.sold, offer.click, offer.conversion "
        "or a custom name such as buyer.accepted"
    )
    lead_id: ShortText
    event_set: ShortText = Field(description="The event set's name or its TikTok event set ID")
    occurred_at: datetime = Field(description="When it happened; without a zone it is UTC")
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)
    match_keys: MatchKeys | None = None
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)

    @field_validator("type")
    @classmethod
    def _trigger_type(cls, value: str) -> str:
        value = value.strip()
        if not TRIGGER_TYPE_PATTERN.match(value):
            raise ValueError(
                "must be lowercase letters, digits, '.', '_' or '-', e.g. lead.sold or "
                "buyer.accepted (at most 64 characters)"
            )
        return value

    @field_validator("occurred_at")
    @classmethod
    def _utc_not_future(cls, value: datetime) -> datetime:
        try:
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        except OverflowError:  # 0001-01-01 with a positive offset is before year 1 in UTC
            raise ValueError("is out of range (before year 1 in UTC)") from None
        if value > datetime.now(UTC) + FUTURE_TOLERANCE:
            raise ValueError("is in the future")
        return value

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, value: dict[str, AttributeValue]) -> dict[str, AttributeValue]:
        if len(value) > MAX_ATTRIBUTES:
            raise ValueError(f"at most {MAX_ATTRIBUTES} attributes")
        for position, (key, item) in enumerate(value.items()):
            if not _ATTRIBUTE_NAME.fullmatch(key):
                raise ValueError(
                    f"attribute #{position}: the name must be a plain identifier (letters, "
                    "digits, '_', '.', '-'; at most 64 characters)"
                )
            if isinstance(item, str):
                if len(item) > MAX_ATTRIBUTE_VALUE_LENGTH:
                    raise ValueError(f"{key}: longer than {MAX_ATTRIBUTE_VALUE_LENGTH} characters")
                if _LOOKS_LIKE_EMAIL.search(item):
                    raise ValueError(
                        f"{key}: looks like an email address; send it as match_keys.email "
                        "so it is hashed"
                    )
        if value.get("value") is not None and as_number(value["value"]) is None:
            raise ValueError("value: not a number")
        currency = value.get("currency")
        if currency is not None and str(currency).upper() not in SUPPORTED_CURRENCIES:
            raise ValueError(f"currency: {str(currency)[:8]!r} is not a currency TikTok supports")
        return value

    def attributes_size(self) -> int:
        return len(jsontext.dumps_bytes(self.attributes))


class LeadUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    lead_id: ShortText
    match_keys: MatchKeys


UNSTORABLE_MESSAGE = "contains a NUL character or an unpaired surrogate, which cannot be stored"


def unstorable_paths(document: Any) -> list[list[str | int]]:
    """Where a document holds text PostgreSQL cannot store: NUL, or a lone surrogate."""
    if not _may_hold_unstorable(document):
        return []
    return list(_walk(document, []))


def _may_hold_unstorable(document: Any) -> bool:
    # One pass in C instead of a Python walk over every string (most documents are clean):
    # orjson refuses lone surrogates and writes NUL as \u0000. Anything it cannot encode, or
    # a backslash followed by "u0000" in the text, is walked to be sure.
    try:
        encoded = orjson.dumps(document)
    except orjson.JSONEncodeError:
        return True
    return b"\\u0000" in encoded


def _walk(node: Any, path: list[str | int]) -> Iterator[list[str | int]]:
    if isinstance(node, str):
        if _unstorable(node):
            yield path
    elif isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and _unstorable(key):
                yield [*path, key]
            yield from _walk(value, [*path, key])
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, [*path, index])


def _unstorable(text: str) -> bool:
    # PostgreSQL text and JSONB refuse NUL; a lone surrogate cannot be encoded as UTF-8.
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def parse_trigger(data: Any) -> TriggerIn:
    if isinstance(data, TriggerIn):
        return data
    return TriggerIn.model_validate(data)
