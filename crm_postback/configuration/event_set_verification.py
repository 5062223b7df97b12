"""Verify an event set with TikTok: GET /open_api/v1.3/crm/list/ with its advertiser and token.

The answer is read as untrusted text of any shape (a proxy's JSON list, a 2**70 code, a
megabyte message): what is shown of it is checked and cut, never assumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from crm_postback.core.settings import Settings
from crm_postback.core.token_vault import TokenUnavailable, open_token
from crm_postback.tiktok.events_client import EventsApiClient
from crm_postback.tiktok.response_outcomes import CODE_MAX, CODE_MIN, REQUEST_ID_CHARS
from models import EventSet, EventSetKind

MAX_SHOWN = 200  # characters of TikTok's message or an event set's name shown back
NOT_THE_API = "TikTok's answer is not the Events API's (check TIKTOK_API_BASE_URL)"


@dataclass(frozen=True)
class Verification:
    ok: bool
    message: str
    tiktok_name: str | None = None
    code: int | None = None
    request_id: str | None = None


def _shown(value: object, longest: int = MAX_SHOWN) -> str | None:
    """Text of the answer as it may be shown: one line, at most `longest` characters."""
    if not isinstance(value, str) or not value:
        return None
    line = "".join(c if c.isprintable() else " " for c in value[: longest + 1])
    return line if len(line) <= longest else line[: longest - 1] + "…"


def _code(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and CODE_MIN <= value <= CODE_MAX:
        return value
    return None


def verify_event_set(
    event_set: EventSet, settings: Settings, *, operator: bool = False
) -> Verification:
    """Is the event set ID among the advertiser's CRM event sets, as seen with its token?
    `operator`: the CLI's operator, who may hear which token variable is not set."""
    if event_set.kind != EventSetKind.CRM:
        return Verification(False, "only CRM event sets can be verified (this one is a Pixel)")
    if not event_set.advertiser_id:
        return Verification(False, "set the advertiser ID first: TikTok lists event sets by it")
    try:
        token = open_token(event_set.sealed_token, settings)
    except TokenUnavailable as error:
        return Verification(False, error.operator_message if operator else str(error))
    client = EventsApiClient(
        settings.tiktok_api_base_url, settings.http_timeout, settings.http_total_timeout_seconds
    )
    try:
        answer: Any = client.list_crm_event_sets(token, event_set.advertiser_id)
    except requests.HTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        return Verification(False, f"TikTok answered HTTP {status}")
    except (requests.RequestException, ValueError, RecursionError) as error:
        return Verification(False, f"TikTok could not be reached ({type(error).__name__})")
    return read_answer(answer, event_set)


def read_answer(answer: Any, event_set: EventSet) -> Verification:
    """The verdict from /crm/list/'s parsed JSON, whatever its shape."""
    if not isinstance(answer, dict) or "code" not in answer:
        return Verification(False, NOT_THE_API)
    code = _code(answer.get("code"))
    request_id = _shown(answer.get("request_id"), REQUEST_ID_CHARS)
    if code != 0:
        message = _shown(answer.get("message")) or "no message"
        shown_code = code if code is not None else "with a code out of range"
        return Verification(
            False, f"TikTok answered {shown_code}: {message}", code=code, request_id=request_id
        )
    data = answer.get("data")
    listed = data.get("crm_event_sets") if isinstance(data, dict) else None
    if not isinstance(listed, list):
        listed = []
    for item in listed:
        if isinstance(item, dict) and str(item.get("event_set_id")) == event_set.source_id:
            name = _shown(item.get("name"))
            return Verification(
                True,
                f"verified: TikTok knows event set {event_set.source_id}"
                + (f" ({name!r})" if name else "")
                + f" for advertiser {event_set.advertiser_id}",
                tiktok_name=name,
                code=0,
                request_id=request_id,
            )
    return Verification(
        False,
        f"the token works for advertiser {event_set.advertiser_id}, but event set "
        f"{event_set.source_id} is not among its {len(listed)} CRM event set(s)",
        code=0,
        request_id=request_id,
    )
