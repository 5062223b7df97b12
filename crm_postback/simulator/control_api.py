"""The `/_sim/*` control endpoints used by tests, the demo and benchmarks (JSON in, JSON out)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from crm_postback.simulator.rate_limit import TokenRateLimit
from crm_postback.simulator.registered_sets import RegisteredEventSet
from crm_postback.simulator.responses import Response, control_error, json_response
from crm_postback.simulator.state import SimulatorState
from crm_postback.simulator.tiktok_api import parse_json

CONTROL_PREFIX = "/_sim/"
_EVENT_FILTERS = ("event_source_id", "event_id", "event")
_TRUE = frozenset({"1", "true", "yes"})

Query = Mapping[str, Sequence[str]]
_Route = Callable[[SimulatorState, Query, bytes], Response]


def handle_control(
    state: SimulatorState, method: str, path: str, query: Query, raw_body: bytes
) -> Response:
    methods = _ROUTES.get(path)
    if methods is None:
        return control_error(f"no control endpoint {path}", 404)
    route = methods.get(method)
    if route is None:
        return control_error(f"{method} not allowed on {path}", 405)
    return route(state, query, raw_body)


def _health(state: SimulatorState, query: Query, raw_body: bytes) -> Response:
    return json_response({"status": "ok", "event_sets": len(state.event_sets)})


def _events(state: SimulatorState, query: Query, raw_body: bytes) -> Response:
    filters = {name: query[name][0] for name in _EVENT_FILTERS if query.get(name)}
    include_duplicates = _flag(query, "include_duplicates")
    events = state.events(include_duplicates=include_duplicates, **filters)
    if _flag(query, "count_only"):
        return json_response({"count": len(events)})
    return json_response([event.to_json() for event in events])


def _stats(state: SimulatorState, query: Query, raw_body: bytes) -> Response:
    return json_response(state.stats())


def _current_faults(state: SimulatorState, query: Query, raw_body: bytes) -> Response:
    return json_response(state.faults.to_json())


def _faults(state: SimulatorState, query: Query, raw_body: bytes) -> Response:
    changes = _json_object(raw_body)
    if changes is None:
        return control_error("body must be a JSON object")
    try:
        faults = state.update_faults(changes)
    except (TypeError, ValueError) as error:
        return control_error(str(error))
    return json_response(faults.to_json())


def _current_rate_limit(state: SimulatorState, query: Query, raw_body: bytes) -> Response:
    rate_limit = state.rate_limit
    return json_response({"rate_limit": rate_limit.to_json() if rate_limit else None})


def _rate_limit(state: SimulatorState, query: Query, raw_body: bytes) -> Response:
    """`{"rate": "5/second", "strategy": "moving"}` sets the limit per access token;
    `{"rate": null}` turns it off."""
    fields = _json_object(raw_body)
    if fields is None:
        return control_error("body must be a JSON object")
    unknown = sorted(set(fields) - {"rate", "strategy"})
    if unknown:
        return control_error(f"unknown rate limit settings: {', '.join(unknown)}")
    rate = fields.get("rate")
    if rate is None:
        state.set_rate_limit(None)
        return json_response({"rate_limit": None})
    try:
        rate_limit = TokenRateLimit(rate, fields.get("strategy", "moving"))
    except (TypeError, ValueError) as error:
        return control_error(str(error))
    state.set_rate_limit(rate_limit)
    return json_response({"rate_limit": rate_limit.to_json()})


def _requests(state: SimulatorState, query: Query, raw_body: bytes) -> Response:
    return json_response(state.request_log())


def _register_event_set(state: SimulatorState, query: Query, raw_body: bytes) -> Response:
    fields = _json_object(raw_body)
    if fields is None:
        return control_error("body must be a JSON object")
    try:
        event_set = RegisteredEventSet(
            event_set_id=_string(fields, "event_set_id"),
            access_token=_string(fields, "access_token"),
            kind=fields.get("kind", "crm"),
            name=_string(fields, "name", default=""),
            advertiser_id=_string(fields, "advertiser_id", default=""),
        )
    except (TypeError, ValueError) as error:
        return control_error(str(error))
    return json_response(state.register_event_set(event_set).to_json())


def _reset(state: SimulatorState, query: Query, raw_body: bytes) -> Response:
    options = _json_object(raw_body) if raw_body.strip() else {}
    if options is None:
        return control_error("body must be a JSON object")
    state.reset(event_sets=options.get("event_sets") is True)
    return json_response(state.stats())


def _json_object(raw_body: bytes) -> dict[str, Any] | None:
    body = parse_json(raw_body)
    return body if isinstance(body, dict) else None


def _string(fields: Mapping[str, Any], name: str, default: str | None = None) -> str:
    value = fields.get(name, default)
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value


def _flag(query: Query, name: str) -> bool:
    values: Sequence[str] = query.get(name) or ()
    return bool(values) and values[0].lower() in _TRUE


_ROUTES: dict[str, dict[str, _Route]] = {
    "/_sim/health": {"GET": _health},
    "/_sim/events": {"GET": _events},
    "/_sim/stats": {"GET": _stats},
    "/_sim/faults": {"GET": _current_faults, "POST": _faults},
    "/_sim/rate-limit": {"GET": _current_rate_limit, "POST": _rate_limit},
    "/_sim/requests": {"GET": _requests},
    "/_sim/event-sets": {"POST": _register_event_set},
    "/_sim/reset": {"POST": _reset},
}
