"""Trigger/match-key schemas, InputRejected, and hashing + merging of lead match keys."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from crm_postback.core.errors import FieldError, InputRejected
from crm_postback.intake.lead_keys import HashedKeys, hash_match_keys, merge_keys
from crm_postback.intake.trigger_schemas import (
    MAX_ATTRIBUTE_VALUE_LENGTH,
    MAX_ATTRIBUTES,
    LeadUpsert,
    MatchKeys,
    TriggerIn,
    Unrepresentable,
    parse_lead_ref,
    parse_trigger,
    unstorable_paths,
    unstorable_values,
)
from models import Lead

ALICE_SHA = "ff8d9819fc0e12bf0d24892e45987e249a28dce836a85cad60e28eaaa8c6d976"
PHONE_SHA = "9f7ec22d72092cd3c0b58726ed9c2d91b92e51a3f29837508fb2948bb22dd2fd"

# Recognisable raw values that must never be echoed back.
RAW_EMAIL = "zelda.secret@privacy-test.example"
RAW_PHONE = "+1 213 373 4253"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _trigger(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "type": "lead.sold",
        "lead_id": "L-1",
        "event_set": "acme-crm",
        "occurred_at": "2024-05-01T12:00:00Z",
    }
    data.update(overrides)
    return data


def _rejected(data: dict[str, Any]) -> tuple[ValidationError, InputRejected]:
    with pytest.raises(ValidationError) as info:
        TriggerIn.model_validate(data)
    return info.value, InputRejected.from_validation(info.value)


def _fields(rejected: InputRejected) -> list[str]:
    return [error.field for error in rejected.errors]


def test_known_vectors_cross_checked() -> None:
    assert _sha("alice@example.com") == ALICE_SHA
    assert _sha("+12133734253") == PHONE_SHA


# --- TriggerIn.type --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "trigger_type",
    [
        "lead.submitted",
        "lead.sold",
        "offer.click",
        "offer.conversion",
        "buyer.accepted",
        "buyer_returned-2",
        "x",
        "a" * 64,
    ],
)
def test_trigger_type_accepts_built_in_and_custom(trigger_type: str) -> None:
    assert TriggerIn.model_validate(_trigger(type=trigger_type)).type == trigger_type


def test_trigger_type_is_stripped() -> None:
    assert TriggerIn.model_validate(_trigger(type="  buyer.accepted ")).type == "buyer.accepted"


@pytest.mark.parametrize(
    "trigger_type",
    ["Lead Sold", "lead sold", "Lead.Sold", "LEAD.SOLD", "a" * 65, "", ".lead", "lead/sold"],
)
def test_trigger_type_rejected(trigger_type: str) -> None:
    _, rejected = _rejected(_trigger(type=trigger_type))
    assert _fields(rejected) == ["type"]
    assert "lowercase" in rejected.errors[0].message


# --- TriggerIn.occurred_at -------------------------------------------------------------------


def test_naive_occurred_at_is_utc() -> None:
    trigger = TriggerIn.model_validate(_trigger(occurred_at="2024-05-01T12:00:00"))
    assert trigger.occurred_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert trigger.occurred_at.utcoffset() == timedelta(0)


def test_aware_occurred_at_converted_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    trigger = TriggerIn.model_validate(
        _trigger(occurred_at=datetime(2024, 5, 1, 14, 0, tzinfo=plus_two))
    )
    assert trigger.occurred_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert trigger.occurred_at.tzinfo == UTC


def test_occurred_at_slightly_ahead_is_tolerated() -> None:
    soon = datetime.now(UTC) + timedelta(minutes=2)
    assert TriggerIn.model_validate(_trigger(occurred_at=soon)).occurred_at == soon


@pytest.mark.parametrize("ahead", [timedelta(minutes=6), timedelta(days=1)])
def test_occurred_at_in_future_rejected(ahead: timedelta) -> None:
    _, rejected = _rejected(_trigger(occurred_at=datetime.now(UTC) + ahead))
    assert _fields(rejected) == ["occurred_at"]
    assert "future" in rejected.errors[0].message


def test_naive_future_time_rejected_as_utc() -> None:
    naive_future = (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None)
    _, rejected = _rejected(_trigger(occurred_at=naive_future.isoformat()))
    assert _fields(rejected) == ["occurred_at"]


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00+00:01"])
def test_occurred_at_before_year_one_in_utc_is_refused_naming_the_field(value: str) -> None:
    _, rejected = _rejected(_trigger(occurred_at=value))
    assert _fields(rejected) == ["occurred_at"]
    assert "out of range" in rejected.errors[0].message


# --- TriggerIn.attributes --------------------------------------------------------------------


@pytest.mark.parametrize("value", [50, 42.5, "50", " 12.25 ", 0, None])
def test_numeric_value_attribute_accepted(value: object) -> None:
    trigger = TriggerIn.model_validate(_trigger(attributes={"value": value, "currency": "USD"}))
    assert trigger.attributes["value"] == value


@pytest.mark.parametrize("value", ["abc", "$50", "50 USD", True, False])
def test_non_numeric_value_attribute_rejected(value: object) -> None:
    _, rejected = _rejected(_trigger(attributes={"value": value}))
    assert _fields(rejected) == ["attributes"]
    assert rejected.errors[0].message.startswith("value")
    assert "number" in rejected.errors[0].message


@pytest.mark.parametrize("currency", ["USD", "usd", "EUR", "jpy"])
def test_supported_currency_accepted(currency: str) -> None:
    TriggerIn.model_validate(_trigger(attributes={"value": 1, "currency": currency}))


@pytest.mark.parametrize("currency", ["XYZ", "US", "BTC", "dollars"])
def test_unsupported_currency_rejected(currency: str) -> None:
    _, rejected = _rejected(_trigger(attributes={"value": 1, "currency": currency}))
    assert _fields(rejected) == ["attributes"]
    assert rejected.errors[0].message.startswith("currency")


def test_attribute_count_limit() -> None:
    at_limit = {f"a{i}": i for i in range(MAX_ATTRIBUTES)}
    assert len(TriggerIn.model_validate(_trigger(attributes=at_limit)).attributes) == 50
    over = {f"a{i}": i for i in range(MAX_ATTRIBUTES + 1)}
    _, rejected = _rejected(_trigger(attributes=over))
    assert _fields(rejected) == ["attributes"]
    assert "50" in rejected.errors[0].message


def test_attribute_string_length_limit() -> None:
    assert MAX_ATTRIBUTE_VALUE_LENGTH == 1000
    TriggerIn.model_validate(_trigger(attributes={"note": "x" * 1000}))
    _, rejected = _rejected(_trigger(attributes={"note": "x" * 1001}))
    assert _fields(rejected) == ["attributes"]
    assert rejected.errors[0].message.startswith("note")
    assert "1000" in rejected.errors[0].message


@pytest.mark.parametrize("text", [RAW_EMAIL, f"sold to {RAW_EMAIL} today", "Bob@Example.COM"])
def test_email_like_attribute_rejected_pointing_to_match_keys(text: str) -> None:
    error, rejected = _rejected(_trigger(attributes={"buyer_contact": text}))
    assert _fields(rejected) == ["attributes"]
    message = rejected.errors[0].message
    assert "buyer_contact" in message
    assert "match_keys.email" in message
    assert text not in str(rejected)
    assert text not in str(error)


def test_attribute_without_at_sign_is_not_an_email() -> None:
    trigger = TriggerIn.model_validate(_trigger(attributes={"site": "example.com", "n": "a@b"}))
    assert trigger.attributes == {"site": "example.com", "n": "a@b"}


@pytest.mark.parametrize("name", ["1abc", "has space", "a" * 65, "bad$name"])
def test_attribute_name_must_be_identifier(name: str) -> None:
    _, rejected = _rejected(_trigger(attributes={name: 1}))
    assert _fields(rejected) == ["attributes"]


def test_attribute_value_must_be_scalar() -> None:
    _, rejected = _rejected(_trigger(attributes={"nested": {"a": 1}}))
    assert rejected.errors
    assert all(field.startswith("attributes.nested") for field in _fields(rejected))


# --- extra fields, match keys ----------------------------------------------------------------


def test_extra_top_level_field_rejected() -> None:
    _, rejected = _rejected(_trigger(lead_status="sold"))
    assert _fields(rejected) == ["lead_status"]


def test_extra_match_key_rejected() -> None:
    _, rejected = _rejected(_trigger(match_keys={"fax": "123"}))
    assert _fields(rejected) == ["match_keys.fax"]


@pytest.mark.parametrize(
    ("raw", "normal"),
    [(" 127.0.0.1 ", "127.0.0.1"), ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1")],
)
def test_ip_normalised(raw: str, normal: str) -> None:
    assert _hashed(MatchKeys(ip=raw)).ip == normal


@pytest.mark.parametrize(
    ("keys", "field"),
    [
        ({"ip": "999.1.1.1"}, "match_keys.ip"),
        ({"phone": ["+12133734253"] * 6}, "match_keys.phone"),
        ({"tiktok_lead_id": "has space"}, "match_keys.tiktok_lead_id"),
        ({"user_agent": "M" * 1025}, "match_keys.user_agent"),
    ],
)
def test_a_bad_key_is_dropped_with_a_warning_or_refused_when_strict(
    keys: dict[str, Any], field: str
) -> None:
    parsed = TriggerIn.model_validate(_trigger(match_keys={**keys, "email": "a@example.com"}))
    assert parsed.match_keys is not None
    hashed, warnings = hash_match_keys(parsed.match_keys, "US")
    assert [w.field for w in warnings] == [field]
    assert warnings[0].message.endswith("; dropped")
    assert hashed.email_hashes == [_sha("a@example.com")]  # the others arrive
    with pytest.raises(InputRejected) as info:
        hash_match_keys(parsed.match_keys, "US", strict=True)
    assert _fields(info.value) == [field]
    assert not info.value.errors[0].message.endswith("dropped")


def test_from_validation_prefix_and_multiple_errors() -> None:
    with pytest.raises(ValidationError) as info:
        TriggerIn.model_validate(
            _trigger(type="Bad Type", match_keys={"ip": 5}, attributes={"value": "x"})
        )
    rejected = InputRejected.from_validation(info.value, prefix="items.3.")
    assert sorted(_fields(rejected)) == [
        "items.3.attributes",
        "items.3.match_keys.ip",
        "items.3.type",
    ]
    assert all(not e.message.startswith("Value error") for e in rejected.errors)
    assert str(rejected) == "; ".join(str(e) for e in rejected.errors)


def test_from_validation_root_error_named_body() -> None:
    with pytest.raises(ValidationError) as info:
        TriggerIn.model_validate("not an object")
    rejected = InputRejected.from_validation(info.value)
    assert _fields(rejected) == ["body"]


def test_input_rejected_one() -> None:
    rejected = InputRejected.one("event_set", "unknown event set")
    assert rejected.errors == [FieldError("event_set", "unknown event set")]
    assert str(rejected) == "event_set: unknown event set"
    assert isinstance(rejected, ValueError)


BAD_PAYLOADS_WITH_RAW_KEYS: list[dict[str, Any]] = [
    _trigger(match_keys={"email": RAW_EMAIL, "phone": RAW_PHONE, "ip": 17}),
    _trigger(match_keys={"email": RAW_EMAIL, "phone": [RAW_PHONE] * 101}),
    _trigger(match_keys={"email": [RAW_EMAIL, 5], "phone": RAW_PHONE}),
    _trigger(match_keys={"first_name": [RAW_EMAIL]}),
    _trigger(match_keys={"page": {"url": RAW_EMAIL, "other": RAW_PHONE}}),
    _trigger(match_keys={"phone": 2133734253}),
    _trigger(event_id=RAW_EMAIL),
    _trigger(event_id=RAW_PHONE),
    _trigger(limited_data_use=RAW_EMAIL),
    _trigger(occurred_at=RAW_EMAIL),
    _trigger(occurred_at=RAW_PHONE),
    _trigger(type=RAW_EMAIL),
    _trigger(lead_id=RAW_EMAIL * 10),
    _trigger(event_set=""),
    _trigger(attributes={"contact": RAW_EMAIL}),
    _trigger(attributes={"contact": {"phone": RAW_PHONE}}),
    _trigger(attributes={"value": RAW_PHONE}),
    _trigger(attributes={"currency": RAW_EMAIL}),
    _trigger(email=RAW_EMAIL, phone=RAW_PHONE),
]


@pytest.mark.parametrize("payload", BAD_PAYLOADS_WITH_RAW_KEYS)
def test_rejections_never_echo_raw_match_keys(payload: dict[str, Any]) -> None:
    error, rejected = _rejected(payload)
    assert rejected.errors
    texts = [str(rejected), str(error)] + [f"{e.field} {e.message}" for e in rejected.errors]
    for text in texts:
        assert RAW_EMAIL not in text
        assert RAW_PHONE not in text
        assert "2133734253" not in text
        assert "zelda.secret" not in text


def test_invalid_attribute_name_not_echoed() -> None:
    _, rejected = _rejected(_trigger(attributes={RAW_EMAIL: True}))
    assert _fields(rejected) == ["attributes"]
    assert RAW_EMAIL not in str(rejected)


def test_parse_trigger_passes_instances_through() -> None:
    trigger = parse_trigger(_trigger())
    assert isinstance(trigger, TriggerIn)
    assert parse_trigger(trigger) is trigger


def test_lead_upsert_takes_keys_or_limited_data_use_and_forbids_extra() -> None:
    upsert = LeadUpsert.model_validate({"lead_id": " L-9 ", "match_keys": {"email": RAW_EMAIL}})
    assert upsert.lead_id == "L-9" and upsert.limited_data_use is None
    only_consent = LeadUpsert.model_validate({"lead_id": "L-9", "limited_data_use": True})
    assert only_consent.limited_data_use is True
    with pytest.raises(ValidationError):
        LeadUpsert.model_validate({"lead_id": "L-9", "limited_data_use": "yes"})
    with pytest.raises(ValidationError):
        LeadUpsert.model_validate({"lead_id": "L-9", "match_keys": {}, "other": 1})


# --- hash_match_keys -------------------------------------------------------------------------


def _hashed(keys: MatchKeys, region: str = "US") -> HashedKeys:
    hashed, warnings = hash_match_keys(keys, region)
    assert warnings == []
    return hashed


def test_hash_match_keys_single_strings() -> None:
    hashed = _hashed(
        MatchKeys(email=" Alice@Example.com ", phone="(213) 373-4253", external_id=" CRM-7 "),
        "US",
    )
    assert hashed.email_hashes == [ALICE_SHA]
    assert hashed.phone_hashes == [PHONE_SHA]
    assert hashed.external_id_hashes == [_sha("crm-7")]


def test_hash_match_keys_lists_and_dedup() -> None:
    hashed = _hashed(
        MatchKeys(
            email=["alice@example.com", "ALICE@example.com ", "bob@example.com"],
            phone=["+1 213 373 4253", "(213) 373-4253", "001 213 373 4253", "+442079460958"],
            external_id=["A", "a", ALICE_SHA.upper()],
        ),
        "US",
    )
    assert hashed.email_hashes == [ALICE_SHA, _sha("bob@example.com")]
    assert hashed.phone_hashes == [PHONE_SHA, _sha("+442079460958")]
    assert hashed.external_id_hashes == [_sha("a"), ALICE_SHA]


def test_hash_match_keys_uses_default_region() -> None:
    hashed = _hashed(MatchKeys(phone="020 7946 0958"), "GB")
    assert hashed.phone_hashes == [_sha("+442079460958")]


def test_hash_match_keys_reports_every_bad_key_with_index() -> None:
    keys = MatchKeys(
        email=["nope", "alice@example.com", "also-bad@"],
        phone=["+12133734253", "call me", "12"],
        external_id="   x",
    )
    expected = [
        "match_keys.email.0",
        "match_keys.email.2",
        "match_keys.phone.1",
        "match_keys.phone.2",
    ]
    hashed, warnings = hash_match_keys(keys, "US")
    assert [w.field for w in warnings] == expected
    assert hashed.email_hashes == [ALICE_SHA] and hashed.phone_hashes == [PHONE_SHA]
    assert hashed.external_id_hashes == [_sha("x")]
    assert hashed.dropped == ["email", "phone"]  # the kinds, once each, never a value
    only_dropped, _ = hash_match_keys(
        MatchKeys.model_validate({"phone": "12", "locale": "?", "page": {"url": "ftp://x"}}), "US"
    )
    assert only_dropped.dropped == ["phone", "locale", "page_url"]
    assert only_dropped.is_empty()  # dropped kinds are not a key to store
    with pytest.raises(InputRejected) as info:
        hash_match_keys(keys, "US", strict=True)
    assert [error.field for error in info.value.errors] == expected
    text = str(info.value) + " ".join(f"{w.field} {w.message}" for w in warnings)
    for raw in ("nope", "also-bad@", "call me"):
        assert raw not in text


def test_hash_match_keys_single_bad_value_has_no_index() -> None:
    hashed, warnings = hash_match_keys(
        MatchKeys(email=RAW_EMAIL.replace("@", ""), phone="abc"), "US"
    )
    assert [e.field for e in warnings] == ["match_keys.email", "match_keys.phone"]
    assert hashed.is_empty()
    assert RAW_EMAIL.replace("@", "") not in str(warnings)


def test_hash_match_keys_custom_prefix() -> None:
    _, warnings = hash_match_keys(MatchKeys(phone=["+12133734253", "xyz"]), "US", prefix="")
    assert [e.field for e in warnings] == ["phone.1"]


def test_hash_match_keys_index_counts_blank_entries() -> None:
    _, warnings = hash_match_keys(MatchKeys(phone=["+12133734253", "  ", "nonsense"]), "US")
    assert [e.field for e in warnings] == ["match_keys.phone.2"]


def test_hash_match_keys_keeps_plain_keys_as_given() -> None:
    hashed = _hashed(
        MatchKeys(
            ttclid=" E.C.P.abc123 ",
            ttp="ttp-1",
            ip="203.0.113.9",
            user_agent="Mozilla/5.0 (X11)",
            tiktok_lead_id="7300000000000000000",
        ),
        "US",
    )
    assert hashed.ttclid == "E.C.P.abc123"
    assert hashed.ttp == "ttp-1"
    assert hashed.ip == "203.0.113.9"
    assert hashed.user_agent == "Mozilla/5.0 (X11)"
    assert hashed.tiktok_lead_id == "7300000000000000000"
    assert hashed.email_hashes == hashed.phone_hashes == hashed.external_id_hashes == []
    assert not hashed.is_empty()


def test_hash_match_keys_blank_values_give_empty_keys() -> None:
    hashed = _hashed(MatchKeys(ttclid="  ", email="  ", phone=[" "], first_name=" "))
    assert hashed.ttclid is None
    assert hashed.email_hashes == []
    assert hashed.is_empty()


# --- merge_keys ------------------------------------------------------------------------------


def _h(n: int) -> str:
    return _sha(f"key-{n}")


def test_merge_keys_later_scalars_replace_earlier() -> None:
    lead = Lead(ttclid="E.C.P.old", ip="10.0.0.1", tiktok_lead_id="111")
    merge_keys(lead, HashedKeys(ttclid="E.C.P.new", tiktok_lead_id="222"))
    assert lead.ttclid == "E.C.P.new"
    assert lead.tiktok_lead_id == "222"
    assert lead.ip == "10.0.0.1"  # absent in the update: kept


def test_merge_keys_on_fresh_lead_with_unset_lists() -> None:
    lead = Lead()
    merge_keys(lead, HashedKeys(email_hashes=[ALICE_SHA], phone_hashes=[PHONE_SHA]))
    assert lead.email_hashes == [ALICE_SHA]
    assert lead.phone_hashes == [PHONE_SHA]
    assert not lead.external_id_hashes


def test_merge_keys_accumulates_without_duplicates() -> None:
    lead = Lead(email_hashes=[_h(1), _h(2)], phone_hashes=[PHONE_SHA])
    merge_keys(lead, HashedKeys(email_hashes=[_h(2), _h(3)], phone_hashes=[PHONE_SHA]))
    assert lead.email_hashes == [_h(1), _h(2), _h(3)]
    assert lead.phone_hashes == [PHONE_SHA]


def test_merge_keys_resent_hash_becomes_newest() -> None:
    lead = Lead(email_hashes=[_h(1), _h(2), _h(3), _h(4), _h(5)])
    merge_keys(lead, HashedKeys(email_hashes=[_h(1)]))
    assert lead.email_hashes == [_h(2), _h(3), _h(4), _h(5), _h(1)]


def test_merge_keys_keeps_at_most_five_newest() -> None:
    lead = Lead(external_id_hashes=[_h(0), _h(1), _h(2), _h(3)])
    merge_keys(lead, HashedKeys(external_id_hashes=[_h(4), _h(5), _h(6)]))
    assert lead.external_id_hashes == [_h(2), _h(3), _h(4), _h(5), _h(6)]


def test_merge_keys_empty_update_changes_nothing() -> None:
    lead = Lead(ttclid="E.C.P.x", email_hashes=[_h(1)])
    merge_keys(lead, HashedKeys())
    assert lead.ttclid == "E.C.P.x"
    assert lead.email_hashes == [_h(1)]


@pytest.mark.parametrize(
    ("document", "paths"),
    [
        ({"a": "clean", "b": [1, 2.5, None, True, {"c": "naïve ✓"}]}, []),
        ({"note": "nul\x00inside"}, [["note"]]),
        ({"list": ["ok", "lone \ud800 surrogate"]}, [["list", 1]]),
        ({"bad\x00key": 1}, [["bad\x00key"]]),
        ({"looks": "\\u0000 is only text"}, []),  # a backslash, not a NUL
        ({"when": datetime(2026, 11, 21, tzinfo=UTC), "n": "\x00"}, [["n"]]),
        ({1: {"deep": ["\x00"]}}, [[1, "deep", 0]]),  # a key orjson refuses: walked anyway
    ],
)
def test_unstorable_paths_names_every_bad_string(
    document: dict[Any, Any], paths: list[list[str | int]]
) -> None:
    assert unstorable_paths(document) == paths


# --- identifiers carry no personal data; sizes first; deep documents ------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"lead_id": RAW_EMAIL}, "lead_id"),
        ({"lead_id": RAW_PHONE}, "lead_id"),
        ({"lead_id": "L-17@lead.sold"}, "lead_id"),  # the safe reading (docs/http-api.md)
        ({"idempotency_key": RAW_PHONE}, "idempotency_key"),
        ({"event_id": RAW_EMAIL}, "event_id"),
        ({"event_id": "+49 30 1234567"}, "event_id"),
        ({"event_id": "e" * 65}, "event_id"),
        ({"lead_id": "L-\x00"}, "lead_id"),
        ({"lead_id": "L-\ud800"}, "lead_id"),
        ({"idempotency_key": "k-\udfff-é"}, "idempotency_key"),
        ({"event_id": "ev-\x00"}, "event_id"),
    ],
)
def test_identities_refuse_personal_data_without_echoing_it(
    change: dict[str, Any], field: str
) -> None:
    error, rejected = _rejected(_trigger(**change))
    assert _fields(rejected) == [field]
    assert RAW_EMAIL not in str(error) and RAW_PHONE not in str(error)


@pytest.mark.parametrize(
    ("keys", "field"),
    [
        ({"ttclid": RAW_EMAIL}, "match_keys.ttclid"),
        ({"ttp": RAW_PHONE}, "match_keys.ttp"),
        ({"tiktok_lead_id": "213-373-4253"}, "match_keys.tiktok_lead_id"),
        ({"ttclid": "E.C.P.\x00"}, "match_keys.ttclid"),
        ({"ttp": "\ud83d"}, "match_keys.ttp"),
        ({"ttclid": "E" * 513}, "match_keys.ttclid"),
    ],
)
def test_identifier_keys_shaped_like_personal_data_are_dropped_unless_strict(
    keys: dict[str, Any], field: str
) -> None:
    parsed = MatchKeys.model_validate({**keys, "email": "a@example.com"})
    hashed, warnings = hash_match_keys(parsed, "US")
    assert [w.field for w in warnings] == [field]
    assert hashed.ttclid is None and hashed.ttp is None and hashed.tiktok_lead_id is None
    assert hashed.email_hashes == [_sha("a@example.com")]
    assert RAW_EMAIL not in str(warnings) and RAW_PHONE not in str(warnings)
    with pytest.raises(InputRejected) as info:
        hash_match_keys(parsed, "US", strict=True)
    assert _fields(info.value) == [field]


@pytest.mark.parametrize("event_set", [RAW_EMAIL, RAW_PHONE, "+12133734253"])
def test_an_event_set_has_no_shape_rule(event_set: str) -> None:
    # Looked up, never stored or sent; an unknown one is refused without being named.
    assert TriggerIn.model_validate(_trigger(event_set=event_set)).event_set == event_set


def test_an_event_set_still_refuses_what_cannot_be_looked_up() -> None:
    _, rejected = _rejected(_trigger(event_set="acme\x00"))
    assert _fields(rejected) == ["event_set"]


@pytest.mark.parametrize("lead_id", ["L-1001", "123456", "2133734253", "7311111111111111111"])
def test_ordinary_ids_are_allowed(lead_id: str) -> None:
    assert TriggerIn.model_validate(_trigger(lead_id=lead_id)).lead_id == lead_id
    assert parse_lead_ref(f" {lead_id} ") == lead_id


def test_parse_lead_ref_names_lead_id() -> None:
    with pytest.raises(InputRejected) as refused:
        parse_lead_ref(RAW_EMAIL)
    assert _fields(refused.value) == ["lead_id"]
    assert RAW_EMAIL not in str(refused.value)


def test_attribute_size_is_checked_before_the_values() -> None:
    # Each value alone is fine in length; together they pass MAX_ATTRIBUTE_BYTES (16,384).
    _, rejected = _rejected(
        _trigger(attributes={f"k{i}": f"{RAW_EMAIL} {i:0900}" for i in range(20)})
    )
    assert [e.message for e in rejected.errors] == ["18851 bytes of JSON; the limit is 16384"]


def test_match_key_lists_are_counted_before_their_values_are_read() -> None:
    _, rejected = _rejected(_trigger(match_keys={"email": list(range(100_000))}))
    assert [(e.field, e.message) for e in rejected.errors] == [
        ("match_keys.email", "at most 100 values can be read (5 are used)")
    ]


def test_an_unsupported_currency_is_not_echoed() -> None:
    _, rejected = _rejected(_trigger(attributes={"currency": "ZZZ"}))
    assert rejected.errors[0].message == "currency: not a currency TikTok supports"


def test_unstorable_paths_of_a_deep_document_and_at_most_twenty() -> None:
    deep: Any = "\x00"
    for _ in range(5_000):  # deeper than Python's recursion limit
        deep = [deep]
    assert unstorable_paths({"a": deep}) == [["a", *[0] * 5_000]]
    assert len(unstorable_paths({f"k{i}": "\x00" for i in range(1_000)})) == 20
    assert unstorable_values({"n": Unrepresentable("is too large")}) == [(["n"], "is too large")]
