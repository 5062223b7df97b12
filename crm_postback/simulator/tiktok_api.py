"""The TikTok endpoints: `POST /event/track/` (with injected faults) and `GET /crm/list/`."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

from crm_postback.simulator.contract import (
    ACCESS_TOKEN_EMPTY,
    INVALID_ACCESS_TOKEN,
    OK,
    PARAM_ERROR,
    REQUEST_TOO_FREQUENT,
    SYS_ERROR,
    SYS_TIMEOUT,
    validate_track_request,
)
from crm_postback.simulator.faults import FaultKind
from crm_postback.simulator.responses import Response, envelope, html_response
from crm_postback.simulator.state import FaultDecision, SimulatorState

TRACK_PATH = "/open_api/v1.3/event/track/"
CRM_LIST_PATH = "/open_api/v1.3/crm/list/"
MAX_EVENT_SET_IDS = 50

Query = Mapping[str, Sequence[str]]


def handle_track(state: SimulatorState, access_token: str | None, raw_body: bytes) -> Response:
    if not state.admit(access_token):
        # Over the request limit: TikTok's throttle answer, before any other fault or check.
        throttled = _throttled(state.new_request_id())
        state.record_response(throttled.status, throttled.code)
        return throttled
    request_id, fault = state.begin_request()
    response = _faulty_response(fault, request_id)
    if response is None:
        if fault.kind is FaultKind.SLOW:
            # Processed after the delay, so a client that gave up may still have been accepted.
            time.sleep(fault.delay_seconds)
        response = _track(state, access_token, raw_body, request_id)
    state.record_response(response.status, response.code)
    return response


def _throttled(request_id: str) -> Response:
    return envelope(
        REQUEST_TOO_FREQUENT, "Too many requests. Please retry in some time.", request_id
    )


def _faulty_response(fault: FaultDecision, request_id: str) -> Response | None:
    if fault.kind is FaultKind.THROTTLE:
        return _throttled(request_id)
    if fault.kind is FaultKind.AUTH_ERROR:
        return envelope(INVALID_ACCESS_TOKEN, "Access token is invalid.", request_id)
    if fault.kind is FaultKind.SERVER_ERROR:
        if fault.http_status == 500:
            return envelope(SYS_ERROR, "System error", request_id, status=500)
        if fault.http_status == 503:
            return envelope(SYS_TIMEOUT, "System timeout", request_id, status=503)
        # An edge proxy failure: HTML, no body code, so clients must go by the HTTP status.
        return html_response(fault.http_status or 502, "502 Bad Gateway")
    return None


def _track(
    state: SimulatorState, access_token: str | None, raw_body: bytes, request_id: str
) -> Response:
    body = parse_json(raw_body)
    error = validate_track_request(body, access_token, state.event_sets)
    if error is not None:
        return envelope(error.code, error.message, request_id)
    state.accept(cast(dict[str, Any], body), request_id)  # a dict once validated
    return envelope(OK, "OK", request_id)


def parse_json(raw_body: bytes) -> object:
    """The parsed body, or None when it is not valid JSON (NaN and Infinity included)."""
    try:
        return json.loads(raw_body, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def handle_crm_list(state: SimulatorState, access_token: str | None, query: Query) -> Response:
    request_id = state.new_request_id()
    if not access_token:
        return envelope(ACCESS_TOKEN_EMPTY, "Access token is empty.", request_id)
    event_sets = state.event_sets.values()
    if not any(event_set.access_token == access_token for event_set in event_sets):
        return envelope(INVALID_ACCESS_TOKEN, "Access token is invalid.", request_id)

    advertiser_id = _first(query, "advertiser_id")
    if not advertiser_id:
        return envelope(PARAM_ERROR, "advertiser_id: Missing data for required field.", request_id)
    wanted_ids: set[str] | None = None
    raw_ids = _first(query, "event_set_ids")
    if raw_ids is not None:
        wanted_ids = _parse_event_set_ids(raw_ids)
        if wanted_ids is None:
            return envelope(
                PARAM_ERROR,
                f"event_set_ids: must be a JSON array of at most {MAX_EVENT_SET_IDS} ids.",
                request_id,
            )
    name = _first(query, "name")

    matches = sorted(
        (
            event_set
            for event_set in event_sets
            if event_set.kind == "crm"
            and event_set.advertiser_id == advertiser_id
            and event_set.access_token == access_token
            and (wanted_ids is None or event_set.event_set_id in wanted_ids)
            and (name is None or event_set.name == name)
        ),
        key=lambda event_set: (event_set.create_time, event_set.event_set_id),
    )
    crm_event_sets = [
        {"event_set_id": s.event_set_id, "name": s.name, "create_time": s.create_time}
        for s in matches
    ]
    return envelope(OK, "OK", request_id, {"crm_event_sets": crm_event_sets})


def _first(query: Query, name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _parse_event_set_ids(raw: str) -> set[str] | None:
    ids = parse_json(raw.encode())
    if not isinstance(ids, list) or len(ids) > MAX_EVENT_SET_IDS:
        return None
    if not all(isinstance(i, str) for i in ids):
        return None
    return set(ids)
