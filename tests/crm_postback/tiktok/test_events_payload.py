"""The JSON TikTok receives: data[] items and the request envelope (contract §1.2, §2, §8)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from crm_postback.tiktok.events_payload import (
    NoMatchKey,
    build_event,
    build_request,
    build_user,
    make_event_id,
)

ALICE_SHA = "ff8d9819fc0e12bf0d24892e45987e249a28dce836a85cad60e28eaaa8c6d976"
PHONE_SHA = "9f7ec22d72092cd3c0b58726ed9c2d91b92e51a3f29837508fb2948bb22dd2fd"
HEX64 = re.compile(r"^[0-9a-f]{64}$")
HEX40 = re.compile(r"^[0-9a-f]{40}$")
EVENT_SET_ID = "7300000000000000001"
OCCURRED = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)  # 1767225600, as in contract §8


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Keys:
    """Stand-in for a Lead row / HashedKeys (the LeadKeys protocol)."""

    ttclid: str | None = None
    ttp: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    tiktok_lead_id: str | None = None
    email_hashes: list[str] = field(default_factory=list)
    phone_hashes: list[str] = field(default_factory=list)
    external_id_hashes: list[str] = field(default_factory=list)


FULL = Keys(
    ttclid="E.C.P.abc",
    ttp="ttp-cookie",
    ip="203.0.113.9",
    user_agent="Mozilla/5.0",
    tiktok_lead_id="7300000000000000000",
    email_hashes=[ALICE_SHA],
    phone_hashes=[PHONE_SHA],
    external_id_hashes=[_sha("crm-7")],
)


def _event(
    lead: Keys,
    *,
    event_source: str = "crm",
    properties: dict[str, Any] | None = None,
    occurred_at: datetime = OCCURRED,
    event_id: str = "evt-1",
) -> dict[str, Any]:
    return build_event(
        event_source=event_source,
        lead_event_source="AcmeCRM",
        lead=lead,
        event_name="lead_sold",
        event_id=event_id,
        occurred_at=occurred_at,
        properties=properties if properties is not None else {},
    )


def test_known_vectors_cross_checked() -> None:
    assert _sha("alice@example.com") == ALICE_SHA
    assert _sha("+12133734253") == PHONE_SHA


# --- build_event: CRM ------------------------------------------------------------------------


def test_crm_event_shape() -> None:
    event = _event(FULL, properties={"value": 42.5, "currency": "USD"})
    assert event == {
        "event": "lead_sold",
        "event_time": 1767225600,
        "event_id": "evt-1",
        "user": {
            "ttclid": "E.C.P.abc",
            "email": [ALICE_SHA],
            "phone": [PHONE_SHA],
            "external_id": [_sha("crm-7")],
        },
        "lead": {"lead_id": "7300000000000000000", "lead_event_source": "AcmeCRM"},
        "properties": {"value": 42.5, "currency": "USD"},
    }


def test_crm_user_has_no_web_only_keys() -> None:
    user = _event(FULL)["user"]
    assert set(user) == {"ttclid", "email", "phone", "external_id"}
    for key in ("ip", "user_agent", "ttp", "lead_id", "locale"):
        assert key not in user


@pytest.mark.parametrize(
    "occurred_at",
    [
        OCCURRED,
        datetime(2026, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2))),
        datetime(2025, 12, 31, 19, 0, 0, 999_999, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_event_time_is_int_unix_seconds(occurred_at: datetime) -> None:
    event_time = _event(FULL, occurred_at=occurred_at)["event_time"]
    assert type(event_time) is int
    assert event_time == 1767225600


def test_event_id_passed_through_as_string() -> None:
    event_id = make_event_id(42, "trigger-9", "lead_sold")
    event = _event(FULL, event_id=event_id)
    assert event["event_id"] == event_id
    assert isinstance(event["event_id"], str)


def test_lead_object_without_tiktok_lead_id() -> None:
    event = _event(Keys(email_hashes=[ALICE_SHA]))
    assert event["lead"] == {"lead_event_source": "AcmeCRM"}


def test_crm_with_only_tiktok_lead_id_is_enough() -> None:
    event = _event(Keys(tiktok_lead_id="7300000000000000000"))
    assert event["lead"] == {"lead_id": "7300000000000000000", "lead_event_source": "AcmeCRM"}
    # Empty keys are omitted, the empty user object too (`user` is optional, contract §2).
    assert "user" not in event


@pytest.mark.parametrize(
    ("keys", "user"),
    [
        (Keys(ttclid="E.C.P.x"), {"ttclid": "E.C.P.x"}),
        (Keys(email_hashes=[ALICE_SHA]), {"email": [ALICE_SHA]}),
        (Keys(phone_hashes=[PHONE_SHA]), {"phone": [PHONE_SHA]}),
        (Keys(external_id_hashes=[ALICE_SHA]), {"external_id": [ALICE_SHA]}),
        (Keys(ttclid="", email_hashes=[ALICE_SHA], phone_hashes=[]), {"email": [ALICE_SHA]}),
    ],
)
def test_empty_keys_omitted(keys: Keys, user: dict[str, Any]) -> None:
    assert _event(keys)["user"] == user


def test_user_lists_are_copies() -> None:
    keys = Keys(email_hashes=[ALICE_SHA])
    event = _event(keys)
    event["user"]["email"].append("x")
    assert keys.email_hashes == [ALICE_SHA]


def test_properties_omitted_when_empty() -> None:
    assert "properties" not in _event(FULL, properties={})


def test_properties_copied() -> None:
    properties = {"order_id": "offer-991"}
    event = _event(FULL, properties=properties)
    assert event["properties"] == {"order_id": "offer-991"}
    event["properties"]["x"] = 1
    assert properties == {"order_id": "offer-991"}


# --- build_event: web ------------------------------------------------------------------------


def test_web_event_includes_web_keys_and_no_lead() -> None:
    event = _event(FULL, event_source="web")
    assert "lead" not in event
    assert event["user"] == {
        "ttclid": "E.C.P.abc",
        "email": [ALICE_SHA],
        "phone": [PHONE_SHA],
        "external_id": [_sha("crm-7")],
        "ttp": "ttp-cookie",
        "ip": "203.0.113.9",
        "user_agent": "Mozilla/5.0",
    }


def test_build_user_web_omits_missing_web_keys() -> None:
    assert build_user(Keys(ttclid="E.C.P.x", ip="10.0.0.1"), "web") == {
        "ttclid": "E.C.P.x",
        "ip": "10.0.0.1",
    }
    assert build_user(Keys(ttclid="E.C.P.x", ip="10.0.0.1"), "crm") == {"ttclid": "E.C.P.x"}


# --- NoMatchKey ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "event_source"),
    [
        (Keys(), "crm"),
        (Keys(), "web"),
        (Keys(ip="10.0.0.1", user_agent="UA", ttp="t"), "crm"),  # web-only keys do not count
        (Keys(ip="10.0.0.1", user_agent="UA"), "web"),
        (Keys(tiktok_lead_id="7300000000000000000"), "web"),  # lead_id only counts for crm
        (Keys(ttclid="", email_hashes=[], tiktok_lead_id=""), "crm"),
    ],
)
def test_no_match_key(keys: Keys, event_source: str) -> None:
    with pytest.raises(NoMatchKey, match="match_keys"):
        _event(keys, event_source=event_source)


def test_no_match_key_is_a_value_error() -> None:
    assert issubclass(NoMatchKey, ValueError)


# --- make_event_id ---------------------------------------------------------------------------


def test_make_event_id_deterministic_40_hex() -> None:
    first = make_event_id(1, "trigger-1", "lead_sold")
    assert first == make_event_id(1, "trigger-1", "lead_sold")
    assert isinstance(first, str)
    assert HEX40.match(first)
    assert first == _sha("1|trigger-1|lead_sold")[:40]


@pytest.mark.parametrize(
    "other",
    [(2, "trigger-1", "lead_sold"), (1, "trigger-2", "lead_sold"), (1, "trigger-1", "Purchase")],
)
def test_make_event_id_differs(other: tuple[int, str, str]) -> None:
    assert make_event_id(*other) != make_event_id(1, "trigger-1", "lead_sold")


# --- build_request ---------------------------------------------------------------------------


def test_build_request_with_test_event_code() -> None:
    events = [_event(FULL)]
    body = build_request(
        event_source="crm", event_source_id=EVENT_SET_ID, events=events, test_event_code="TEST12345"
    )
    assert body == {
        "event_source": "crm",
        "event_source_id": EVENT_SET_ID,
        "test_event_code": "TEST12345",
        "data": events,
    }
    assert all("test_event_code" not in event for event in body["data"])


@pytest.mark.parametrize("code", [None, ""])
def test_build_request_without_test_event_code(code: str | None) -> None:
    body = build_request(
        event_source="crm",
        event_source_id=EVENT_SET_ID,
        events=[_event(FULL)],
        test_event_code=code,
    )
    assert "test_event_code" not in body
    assert set(body) == {"event_source", "event_source_id", "data"}


def test_event_source_id_stays_a_string_in_json() -> None:
    body = build_request(
        event_source="crm",
        event_source_id=EVENT_SET_ID,
        events=[_event(FULL)],
        test_event_code=None,
    )
    assert body["event_source_id"] == EVENT_SET_ID
    assert isinstance(body["event_source_id"], str)
    assert f'"event_source_id": "{EVENT_SET_ID}"' in json.dumps(body)


@pytest.mark.parametrize("event_source", ["crm", "web"])
def test_whole_request_serialises_and_hashes_are_lowercase_hex(event_source: str) -> None:
    events = [
        _event(
            FULL,
            event_source=event_source,
            properties={"value": 42.5, "currency": "USD", "order_id": "offer-991"},
            event_id=make_event_id(1, "trigger-1", "lead_sold"),
        ),
        _event(
            Keys(email_hashes=[ALICE_SHA, _sha("bob@example.com")], ttclid="E.C.P.q"),
            event_source=event_source,
            event_id=make_event_id(1, "trigger-2", "lead_sold"),
        ),
    ]
    body = build_request(
        event_source=event_source,
        event_source_id=EVENT_SET_ID,
        events=events,
        test_event_code="TEST12345",
    )
    decoded = json.loads(json.dumps(body, allow_nan=False))
    assert decoded == body
    for event in decoded["data"]:
        assert type(event["event_time"]) is int
        assert isinstance(event["event_id"], str)
        for kind in ("email", "phone", "external_id"):
            for digest in event["user"].get(kind, []):
                assert HEX64.match(digest), (kind, digest)
        assert event["user"]  # at least one identifier
