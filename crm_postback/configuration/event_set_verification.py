"""Verify an event set with TikTok: GET /open_api/v1.3/crm/list/ with its advertiser and token."""

from __future__ import annotations

from dataclasses import dataclass

import requests

from crm_postback.core.settings import Settings
from crm_postback.core.token_vault import TokenUnavailable, open_token
from crm_postback.tiktok.events_client import EventsApiClient
from models import EventSet, EventSetKind


@dataclass(frozen=True)
class Verification:
    ok: bool
    message: str
    tiktok_name: str | None = None
    code: int | None = None
    request_id: str | None = None


def verify_event_set(event_set: EventSet, settings: Settings) -> Verification:
    """Is the event set ID among the advertiser's CRM event sets, as seen with its token?"""
    if event_set.kind != EventSetKind.CRM:
        return Verification(False, "only CRM event sets can be verified (this one is a Pixel)")
    if not event_set.advertiser_id:
        return Verification(False, "set the advertiser ID first: TikTok lists event sets by it")
    try:
        token = open_token(event_set.sealed_token, settings)
    except TokenUnavailable as error:
        return Verification(False, str(error))
    client = EventsApiClient(settings.tiktok_api_base_url, settings.http_timeout)
    try:
        answer = client.list_crm_event_sets(token, event_set.advertiser_id)
    except requests.HTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        return Verification(False, f"TikTok answered HTTP {status}")
    except (requests.RequestException, ValueError) as error:
        return Verification(False, f"TikTok could not be reached ({type(error).__name__})")
    code = answer.get("code")
    request_id = answer.get("request_id")
    if code != 0:
        return Verification(
            False,
            f"TikTok answered {code}: {answer.get('message') or 'no message'}",
            code=code if isinstance(code, int) else None,
            request_id=request_id,
        )
    listed = (answer.get("data") or {}).get("crm_event_sets") or []
    for item in listed:
        if str(item.get("event_set_id")) == event_set.source_id:
            name = item.get("name") or None
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
