"""What TikTok's `POST /event/track/` accepts. Pure validation, no I/O.

Like TikTok, validation stops at the first problem and reports one code and one message.
Field messages follow TikTok's style, e.g. `Batch.0.event_time: Not a valid integer.`
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crm_postback.simulator.registered_sets import EVENT_SOURCE_KINDS, RegisteredEventSet
from crm_postback.tiktok.event_catalogue import (
    CONTENT_TYPES,
    MAX_EVENTS_PER_REQUEST,
    SUPPORTED_CURRENCIES,
)

OK = 0
PERMISSION_ERROR = 40001
PARAM_ERROR = 40002
INVALID_BATCH_SIZE = 40061
PII_NOT_HASHED = 40062
INVALID_PARTNER_NAME = 40063
REQUEST_TOO_FREQUENT = 40100
ACCESS_TOKEN_EMPTY = 40104
INVALID_ACCESS_TOKEN = 40105
SYS_ERROR = 50000
SYS_TIMEOUT = 50002

MAX_FUTURE_SECONDS = 86_400

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_HASHED_USER_KEYS = ("email", "phone", "external_id")
_PLAIN_USER_KEYS = ("ttclid", "ttp", "ip", "user_agent")
_STRING_PROPERTIES = ("order_id", "description")
_MISSING = "Missing data for required field."
_NOT_STRING = "Not a valid string."
_NOT_OBJECT = "Not a valid object."
_EMPTY = "Field may not be empty."


@dataclass(frozen=True, slots=True)
class ContractError:
    code: int
    message: str


def _param(message: str) -> ContractError:
    return ContractError(PARAM_ERROR, message)


def validate_track_request(
    body: object,
    access_token: str | None,
    registry: Mapping[str, RegisteredEventSet],
    *,
    now: float | None = None,
) -> ContractError | None:
    """The first contract violation in a track request, or None if TikTok would accept it.

    `body` is the parsed JSON (anything, since it comes from a client); `now` is injectable
    for tests of the future-`event_time` rule.
    """
    error = _check_token(body, access_token, registry)
    if error is not None:
        return error
    if not isinstance(body, dict):
        return _param("Invalid request body.")
    error = _check_envelope(body, access_token or "", registry)
    if error is not None:
        return error
    latest_event_time = (time.time() if now is None else now) + MAX_FUTURE_SECONDS
    is_crm = body["event_source"] == "crm"
    for index, event in enumerate(body["data"]):
        error = _check_event(event, f"Batch.{index}", is_crm=is_crm, latest=latest_event_time)
        if error is not None:
            return error
    return None


def _check_token(
    body: object, access_token: str | None, registry: Mapping[str, RegisteredEventSet]
) -> ContractError | None:
    if not access_token:
        return ContractError(ACCESS_TOKEN_EMPTY, "Access token is empty.")
    if isinstance(body, dict):
        # Fast path: the event set named in the body is normally the token's owner.
        source_id = body.get("event_source_id")
        target = registry.get(source_id) if isinstance(source_id, str) else None
        if target is not None and target.access_token == access_token:
            return None
    if any(event_set.access_token == access_token for event_set in registry.values()):
        return None
    return ContractError(INVALID_ACCESS_TOKEN, "Access token is invalid.")


def _check_envelope(
    body: dict[str, Any], access_token: str, registry: Mapping[str, RegisteredEventSet]
) -> ContractError | None:
    if "event_source" not in body:
        return _param(f"Invalid value for event_source: {_MISSING}")
    source = body["event_source"]
    if not isinstance(source, str) or source not in EVENT_SOURCE_KINDS:
        return _param(f"Invalid value for event_source: {source!r} is not one of crm, web.")

    if "event_source_id" not in body:
        return _param(f"Invalid value for event_source_id: {_MISSING}")
    source_id = body["event_source_id"]
    if not isinstance(source_id, str):
        return _param("Invalid value for event_source_id: not a valid string.")
    event_set = registry.get(source_id)
    if event_set is None or event_set.kind != source:
        return _param(
            f"Invalid value for event_source_id: {source_id} is not a registered {source} "
            "event source."
        )
    if event_set.access_token != access_token:
        return ContractError(
            PERMISSION_ERROR,
            f"No permission to operate event source {source_id}. You must be an admin or operator.",
        )

    if "partner_name" in body:
        return ContractError(INVALID_PARTNER_NAME, "Invalid partner_name.")
    if "test_event_code" in body and not isinstance(body["test_event_code"], str):
        return _param("Invalid value for test_event_code: not a valid string.")

    data = body.get("data")
    if not isinstance(data, list) or not 1 <= len(data) <= MAX_EVENTS_PER_REQUEST:
        return ContractError(
            INVALID_BATCH_SIZE,
            f"Invalid batch size: data must contain 1 to {MAX_EVENTS_PER_REQUEST} events.",
        )
    return None


def _check_event(event: object, where: str, *, is_crm: bool, latest: float) -> ContractError | None:
    if not isinstance(event, dict):
        return _param(f"{where}: {_NOT_OBJECT}")

    if "event" not in event:
        return _param(f"{where}.event: {_MISSING}")
    name = event["event"]
    if not isinstance(name, str):
        return _param(f"{where}.event: {_NOT_STRING}")
    if not name:
        return _param(f"{where}.event: {_EMPTY}")

    if "event_time" not in event:
        return _param(f"{where}.event_time: {_MISSING}")
    event_time = event["event_time"]
    # type() rather than isinstance(): bool is an int subclass and must be rejected.
    if type(event_time) is not int:
        return _param(f"{where}.event_time: Not a valid integer.")
    if event_time > latest:
        return _param(f"{where}.event_time: must not be more than 1 day in the future.")

    if "event_id" in event and not isinstance(event["event_id"], str):
        return _param(f"{where}.event_id: not a valid string.")

    user = event.get("user", {})
    if not isinstance(user, dict):
        return _param(f"{where}.user: {_NOT_OBJECT}")
    error = _check_user(user, f"{where}.user")
    if error is not None:
        return error

    if is_crm:
        error = _check_lead(event, user, where)
        if error is not None:
            return error

    if "properties" in event:
        return _check_properties(event["properties"], f"{where}.properties")
    return None


def _check_user(user: dict[str, Any], where: str) -> ContractError | None:
    for key in _HASHED_USER_KEYS:
        if key in user:
            error = _check_hashes(user[key], f"{where}.{key}")
            if error is not None:
                return error
    for key in _PLAIN_USER_KEYS:
        if key in user and not isinstance(user[key], str):
            return _param(f"{where}.{key}: {_NOT_STRING}")
    return None


def _check_hashes(value: object, where: str) -> ContractError | None:
    if isinstance(value, str):
        values: list[Any] = [value]
    elif isinstance(value, list):
        if not value:
            return _param(f"{where}: {_EMPTY}")
        values = value
    else:
        return _param(f"{where}: Not a valid string or list of strings.")
    for item in values:
        if not isinstance(item, str):
            return _param(f"{where}: {_NOT_STRING}")
        if _SHA256_HEX.fullmatch(item) is None:
            return ContractError(PII_NOT_HASHED, f"{where}: PII must be SHA-256 hashed.")
    return None


def _check_lead(event: dict[str, Any], user: dict[str, Any], where: str) -> ContractError | None:
    if "lead" not in event:
        return _param(f"{where}.lead: {_MISSING}")
    lead = event["lead"]
    if not isinstance(lead, dict):
        return _param(f"{where}.lead: {_NOT_OBJECT}")
    if "lead_event_source" not in lead:
        return _param(f"{where}.lead.lead_event_source: {_MISSING}")
    source = lead["lead_event_source"]
    if not isinstance(source, str):
        return _param(f"{where}.lead.lead_event_source: {_NOT_STRING}")
    if not source:
        return _param(f"{where}.lead.lead_event_source: {_EMPTY}")
    if "lead_id" in lead and not isinstance(lead["lead_id"], str):
        return _param(f"{where}.lead.lead_id: {_NOT_STRING}")
    has_match_key = bool(lead.get("lead_id")) or any(
        user.get(key) for key in ("email", "phone", "external_id", "ttclid")
    )
    if not has_match_key:
        return _param(
            f"{where}: no match key "
            "(lead.lead_id, user.email, user.phone, user.external_id or user.ttclid)."
        )
    return None


def _check_properties(properties: object, where: str) -> ContractError | None:
    if not isinstance(properties, dict):
        return _param(f"{where}: {_NOT_OBJECT}")
    if "value" in properties and not _is_number(properties["value"]):
        return _param(f"{where}.value: Not a valid number.")
    if "currency" in properties:
        currency = properties["currency"]
        if not isinstance(currency, str) or currency not in SUPPORTED_CURRENCIES:
            return _param(f"{where}.currency: Not a valid choice.")
    elif "value" in properties:
        return _param(f"{where}.currency: required when value is set.")
    if "content_type" in properties:
        content_type = properties["content_type"]
        if not isinstance(content_type, str) or content_type not in CONTENT_TYPES:
            return _param(f"{where}.content_type: Not a valid choice.")
    for key in _STRING_PROPERTIES:
        if key in properties and not isinstance(properties[key], str):
            return _param(f"{where}.{key}: {_NOT_STRING}")
    return None


def _is_number(value: object) -> bool:
    if type(value) is int:
        return True
    return type(value) is float and math.isfinite(value)
