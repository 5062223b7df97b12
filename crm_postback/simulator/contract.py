"""What TikTok's `POST /event/track/` accepts. Pure validation, no I/O.

Like TikTok, validation stops at the first problem and reports one code and one message.
Field messages follow TikTok's style, e.g. `Batch.0.event_time: Not a valid integer.`
Where the reference is loose the stricter reading is taken (a `lead` object must carry its
`lead_id`), so the simulator refuses whatever TikTok might; docs/testing.md lists the rules.
"""

from __future__ import annotations

import math
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

# Removes lowercase hex digits: a SHA-256 hex value is 64 characters that leave nothing.
_DELETE_HEX = str.maketrans("", "", "0123456789abcdef")
_STRING_PROPERTIES = ("order_id", "description")
_HASH_LIST = "hash or list of hashes"
_HASH = "hash"
_PLAIN = "string"
_USER_KEY_KINDS: dict[str, str] = {
    **dict.fromkeys(("email", "phone", "external_id"), _HASH_LIST),
    **dict.fromkeys(("first_name", "last_name", "city", "state", "country", "zip_code"), _HASH),
    **dict.fromkeys(("ttclid", "ttp", "ip", "user_agent", "locale"), _PLAIN),
}
# Without a `lead` object a CRM event must name the person or click through one of these.
_CRM_USER_MATCH_KEYS = ("email", "phone", "external_id", "ttclid")
_NO_USER: dict[str, Any] = {}
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
    # First pass: every rule but the hashes' characters, which are checked at once for the
    # whole batch. Any failure is reported by a second, exact pass, so the first problem
    # in batch order is the one named.
    hashes: list[str] = []
    for index, event in enumerate(body["data"]):
        error = _check_event(event, index, is_crm=is_crm, latest=latest_event_time, hashes=hashes)
        if error is not None:
            break
    else:
        if not "".join(hashes).translate(_DELETE_HEX):
            return None
    for index, event in enumerate(body["data"]):
        error = _check_event(event, index, is_crm=is_crm, latest=latest_event_time, hashes=None)
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


def _check_event(
    event: object, index: int, *, is_crm: bool, latest: float, hashes: list[str] | None
) -> ContractError | None:
    """The event's first problem; with `hashes` given, hash values are only length-checked
    and collected there (their characters are the caller's to check)."""
    where = f"Batch.{index}"
    if not isinstance(event, dict):
        return _param(f"{where}: {_NOT_OBJECT}")

    error = _check_required_string(event, "event", where)
    if error is not None:
        return error

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

    if "limited_data_use" in event and type(event["limited_data_use"]) is not bool:
        return _param(f"{where}.limited_data_use: Not a valid boolean.")

    user = event.get("user", _NO_USER)
    if not isinstance(user, dict):
        return _param(f"{where}.user: {_NOT_OBJECT}")
    if user:
        error = _check_user(user, where, hashes)
        if error is not None:
            return error

    if "lead" in event:
        error = _check_lead(event["lead"], f"{where}.lead")
        if error is not None:
            return error
    elif is_crm and not any(user.get(key) for key in _CRM_USER_MATCH_KEYS):
        return _param(
            f"{where}: no match key "
            "(lead.lead_id, user.email, user.phone, user.external_id or user.ttclid)."
        )

    if "page" in event:
        error = _check_page(event["page"], f"{where}.page")
        if error is not None:
            return error

    if "properties" in event:
        return _check_properties(event["properties"], f"{where}.properties")
    return None


def _check_user(user: dict[str, Any], where: str, hashes: list[str] | None) -> ContractError | None:
    # Driven by the keys present (a few), not by every key TikTok knows; unknown keys are
    # ignored.
    for key, value in user.items():
        kind = _USER_KEY_KINDS.get(key)
        if kind is None:
            continue
        if type(value) is str:
            if kind is _PLAIN:
                continue
            values: list[Any] = [value]
        elif kind is not _HASH_LIST:
            return _param(f"{where}.user.{key}: {_NOT_STRING}")
        elif type(value) is not list:
            return _param(f"{where}.user.{key}: Not a valid string or list of strings.")
        elif not value:
            return _param(f"{where}.user.{key}: {_EMPTY}")
        else:
            values = value
        for item in values:
            if type(item) is not str:
                return _param(f"{where}.user.{key}: {_NOT_STRING}")
            if len(item) != 64:
                return _not_hashed(where, key)
            if hashes is not None:
                hashes.append(item)
            elif item.translate(_DELETE_HEX):
                return _not_hashed(where, key)
    return None


def _not_hashed(where: str, key: str) -> ContractError:
    return ContractError(PII_NOT_HASHED, f"{where}.user.{key}: PII must be SHA-256 hashed.")


def _check_lead(lead: object, where: str) -> ContractError | None:
    """A `lead` object, when sent, names the TikTok lead: `lead_id` is required in it."""
    if not isinstance(lead, dict):
        return _param(f"{where}: {_NOT_OBJECT}")
    for key in ("lead_id", "lead_event_source"):
        error = _check_required_string(lead, key, where)
        if error is not None:
            return error
    return None


def _check_required_string(container: dict[str, Any], key: str, where: str) -> ContractError | None:
    """`container[key]` must be there, a string, and not empty."""
    if key not in container:
        return _param(f"{where}.{key}: {_MISSING}")
    value = container[key]
    if not isinstance(value, str):
        return _param(f"{where}.{key}: {_NOT_STRING}")
    if not value:
        return _param(f"{where}.{key}: {_EMPTY}")
    return None


def _check_page(page: object, where: str) -> ContractError | None:
    if not isinstance(page, dict):
        return _param(f"{where}: {_NOT_OBJECT}")
    for key in ("url", "referrer"):
        if key in page and not isinstance(page[key], str):
            return _param(f"{where}.{key}: {_NOT_STRING}")
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
