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
    match_key_mask,
    resolve_limited_data_use,
)
from crm_postback.tiktok.match_key_kinds import IDENTIFYING, MatchKeyKind

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
    first_name_hash: str | None = None
    last_name_hash: str | None = None
    city_hash: str | None = None
    state_hash: str | None = None
    country_hash: str | None = None
    zip_code_hash: str | None = None
    locale: str | None = None
    page_url: str | None = None
    page_referrer: str | None = None


NAMES: dict[str, Any] = {
    "first_name_hash": _sha("alice"),
    "last_name_hash": _sha("smith"),
    "city_hash": _sha("paris"),
    "state_hash": _sha("idf"),
    "country_hash": _sha("fr"),
    "zip_code_hash": _sha("75001"),
}
LANDING: dict[str, Any] = {
    "locale": "fr-FR",
    "page_url": "https://shop.example/landing?utm_source=tiktok",
    "page_referrer": "https://www.tiktok.com/",
}


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
    limited_data_use: bool = False,
) -> dict[str, Any]:
    return build_event(
        event_source=event_source,
        lead_event_source="AcmeCRM",
        lead=lead,
        event_name="lead_sold",
        event_id=event_id,
        occurred_at=occurred_at,
        properties=properties if properties is not None else {},
        limited_data_use=limited_data_use,
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
        "limited_data_use": False,
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


def test_no_lead_object_without_tiktok_lead_id() -> None:
    """Segment sends `lead` only with a lead_id; lead_event_source alone tells TikTok nothing."""
    for lead_id in (None, ""):
        event = _event(Keys(email_hashes=[ALICE_SHA], tiktok_lead_id=lead_id))
        assert "lead" not in event


@pytest.mark.parametrize("event_source", ["crm", "web"])
def test_names_and_address_parts_go_hashed_under_user(event_source: str) -> None:
    event = _event(Keys(email_hashes=[ALICE_SHA], **NAMES, **LANDING), event_source=event_source)
    user = event["user"]
    for key in ("first_name", "last_name", "city", "state", "country", "zip_code"):
        assert isinstance(user[key], str) and HEX64.match(user[key]), key
        assert user[key] == NAMES[f"{key}_hash"]


def test_locale_and_page_only_for_web() -> None:
    keys = Keys(ttclid="E.C.P.x", **LANDING)
    web = _event(keys, event_source="web")
    assert web["user"]["locale"] == "fr-FR"
    assert web["page"] == {
        "url": "https://shop.example/landing?utm_source=tiktok",
        "referrer": "https://www.tiktok.com/",
    }
    crm = _event(keys, event_source="crm")
    assert "locale" not in crm["user"]
    assert "page" not in crm


def test_page_carries_only_what_is_known() -> None:
    event = _event(Keys(ttclid="E.C.P.x", page_referrer="https://r.example/"), event_source="web")
    assert event["page"] == {"referrer": "https://r.example/"}
    assert "page" not in _event(Keys(ttclid="E.C.P.x"), event_source="web")


@pytest.mark.parametrize("event_source", ["crm", "web"])
@pytest.mark.parametrize("value", [True, False])
def test_limited_data_use_is_a_boolean_on_every_event(event_source: str, value: bool) -> None:
    event = _event(FULL, event_source=event_source, limited_data_use=value)
    assert event["limited_data_use"] is value
    assert f'"limited_data_use": {json.dumps(value)}' in json.dumps(event)


@pytest.mark.parametrize(
    ("trigger", "lead", "event_set", "expected"),
    [
        (None, None, False, False),
        (None, None, True, True),
        (None, True, False, True),
        (None, False, True, False),
        (True, False, False, True),
        (False, True, True, False),
    ],
)
def test_limited_data_use_trigger_over_lead_over_event_set(
    trigger: bool | None, lead: bool | None, event_set: bool, expected: bool
) -> None:
    assert resolve_limited_data_use(trigger, lead, event_set) is expected


def test_match_key_mask_names_every_kind_carried() -> None:
    keys = Keys(
        ttclid="E.C.P.abc",
        ttp="t",
        ip="203.0.113.9",
        user_agent="UA",
        tiktok_lead_id="7300000000000000000",
        email_hashes=[ALICE_SHA],
        phone_hashes=[PHONE_SHA],
        external_id_hashes=[ALICE_SHA],
        **NAMES,
        **LANDING,
    )
    assert match_key_mask(_event(keys, event_source="web")) == (
        MatchKeyKind(~MatchKeyKind.LEAD_ID & sum(MatchKeyKind))  # web: no lead object
    )
    crm = match_key_mask(_event(keys, event_source="crm"))
    assert MatchKeyKind.LEAD_ID in crm
    for web_only in (MatchKeyKind.TTP, MatchKeyKind.IP, MatchKeyKind.LOCALE, MatchKeyKind.PAGE_URL):
        assert web_only not in crm
    assert match_key_mask(_event(Keys(tiktok_lead_id="7"))) == MatchKeyKind.LEAD_ID


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


@pytest.mark.parametrize("event_source", ["crm", "web"])
def test_names_and_address_alone_are_no_match_key_and_say_what_is_missing(
    event_source: str,
) -> None:
    keys = Keys(ip="10.0.0.1", **NAMES, **LANDING)
    with pytest.raises(NoMatchKey) as raised:
        _event(keys, event_source=event_source)
    message = str(raised.value)
    assert "email, phone, external_id, ttclid or" in message
    assert ("ttp" if event_source == "web" else "tiktok_lead_id") in message
    assert "first_name" in message and "zip_code" in message
    assert ALICE_SHA not in message and NAMES["first_name_hash"] not in message
    assert not raised.value.mask & IDENTIFYING
    assert MatchKeyKind.FIRST_NAME in raised.value.mask


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
