"""The track-request contract, rule by rule (pure validation, no server)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import pytest

from crm_postback.simulator import ContractError, RegisteredEventSet, validate_track_request

BodyFactory = Callable[..., dict[str, Any]]
Registry = dict[str, RegisteredEventSet]
Mutation = Callable[[dict[str, Any]], None]
NOW = time.time()


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def check(
    body: object, registry: Registry, token: str | None = "crm-token-1"
) -> ContractError | None:
    return validate_track_request(body, token, registry, now=NOW)


def test_reference_crm_payload_is_accepted(crm_body: BodyFactory, registry: Registry) -> None:
    assert check(crm_body(), registry) is None


def test_a_full_batch_is_accepted(crm_body: BodyFactory, registry: Registry) -> None:
    assert check(crm_body(1000), registry) is None


def test_web_payload_with_browser_fields_is_accepted(
    web_body: BodyFactory, registry: Registry
) -> None:
    assert check(web_body(), registry, token="web-token-1") is None


def test_a_single_hash_string_is_accepted_like_a_list(
    crm_body: BodyFactory, registry: Registry
) -> None:
    body = crm_body()
    body["data"][0]["user"]["email"] = sha256("a@example.com")
    assert check(body, registry) is None


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (None, ContractError(40104, "Access token is empty.")),
        ("", ContractError(40104, "Access token is empty.")),
        ("not-a-token", ContractError(40105, "Access token is invalid.")),
        (
            "crm-token-2",
            ContractError(
                40001,
                "No permission to operate event source 7300000000000000001. "
                "You must be an admin or operator.",
            ),
        ),
    ],
    ids=["missing", "empty", "unknown", "other-event-sets-token"],
)
def test_access_token_rules(
    crm_body: BodyFactory, registry: Registry, token: str | None, expected: ContractError
) -> None:
    assert check(crm_body(), registry, token=token) == expected


def test_token_is_checked_before_the_body(registry: Registry) -> None:
    assert check("not json", registry, token=None) == ContractError(40104, "Access token is empty.")


@pytest.mark.parametrize("body", [None, [], "text", 3], ids=["null", "list", "string", "number"])
def test_body_must_be_an_object(registry: Registry, body: object) -> None:
    assert check(body, registry) == ContractError(40002, "Invalid request body.")


def _event(body: dict[str, Any]) -> dict[str, Any]:
    event: dict[str, Any] = body["data"][0]
    return event


def _set(path: str, value: object) -> Mutation:
    """Set a dotted path ("data.0.user.email" style, with `event.` for the first event)."""

    def mutate(body: dict[str, Any]) -> None:
        parts = path.split(".")
        target: Any = _event(body) if parts[0] == "event" else body
        keys = parts[1:] if parts[0] == "event" else parts
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(body: dict[str, Any]) -> None:
        parts = path.split(".")
        target: Any = _event(body)
        for key in parts[1:-1]:
            target = target[key]
        del target[parts[-1]]

    return mutate


def _events(count: int) -> Mutation:
    def mutate(body: dict[str, Any]) -> None:
        body["data"] = [dict(_event(body)) for _ in range(count)]

    return mutate


def _drop_all_match_keys(body: dict[str, Any]) -> None:
    del _event(body)["lead"]
    _event(body)["user"] = {key: sha256(key) for key in NARROWING_KEYS}


def _drop_lead_and_user(body: dict[str, Any]) -> None:
    del _event(body)["lead"]
    del _event(body)["user"]


NARROWING_KEYS = ("first_name", "last_name", "city", "state", "country", "zip_code")


def _break_second_event(body: dict[str, Any]) -> None:
    body["data"].append({**_event(body), "event_time": "1767225600"})


RULES: list[tuple[str, Mutation, int, str]] = [
    ("event_source-unknown", _set("event_source", "offline"), 40002,
     "Invalid value for event_source: 'offline' is not one of crm, web."),
    ("event_source_id-number", _set("event_source_id", 7300000000000000001), 40002,
     "Invalid value for event_source_id: not a valid string."),
    ("event_source_id-unregistered", _set("event_source_id", "7399999999999999999"), 40002,
     "Invalid value for event_source_id: 7399999999999999999 is not a registered crm event "
     "source."),
    ("event_source_id-pixel-as-crm", _set("event_source_id", "CPIXEL00000000000001"), 40002,
     "Invalid value for event_source_id: CPIXEL00000000000001 is not a registered crm event "
     "source."),
    ("partner_name", _set("partner_name", "Acme"), 40063, "Invalid partner_name."),
    ("test_event_code-number", _set("test_event_code", 12345), 40002,
     "Invalid value for test_event_code: not a valid string."),
    ("batch-1001", _events(1001), 40061,
     "Invalid batch size: data must contain 1 to 1000 events."),
    ("batch-empty", _events(0), 40061, "Invalid batch size: data must contain 1 to 1000 events."),
    ("batch-not-a-list", _set("data", {"event": "x"}), 40061,
     "Invalid batch size: data must contain 1 to 1000 events."),
    ("event-not-an-object", _set("data", ["lead_sold"]), 40002, "Batch.0: Not a valid object."),
    ("event-missing", _delete("event.event"), 40002,
     "Batch.0.event: Missing data for required field."),
    ("event-empty", _set("event.event", ""), 40002, "Batch.0.event: Field may not be empty."),
    ("event_time-string", _set("event.event_time", "1767225600"), 40002,
     "Batch.0.event_time: Not a valid integer."),
    ("event_time-float", _set("event.event_time", 1767225600.5), 40002,
     "Batch.0.event_time: Not a valid integer."),
    ("event_time-bool", _set("event.event_time", True), 40002,
     "Batch.0.event_time: Not a valid integer."),
    ("event_time-missing", _delete("event.event_time"), 40002,
     "Batch.0.event_time: Missing data for required field."),
    ("event_time-milliseconds", _set("event.event_time", int(NOW * 1000)), 40002,
     "Batch.0.event_time: must not be more than 1 day in the future."),
    ("event_id-number", _set("event.event_id", 7300000000000000000), 40002,
     "Batch.0.event_id: not a valid string."),
    ("email-unhashed", _set("event.user.email", ["alice@example.com"]), 40062,
     "Batch.0.user.email: PII must be SHA-256 hashed."),
    ("email-uppercase-hex", _set("event.user.email", [sha256("a@example.com").upper()]), 40062,
     "Batch.0.user.email: PII must be SHA-256 hashed."),
    ("phone-unhashed-string", _set("event.user.phone", "+12133734253"), 40062,
     "Batch.0.user.phone: PII must be SHA-256 hashed."),
    ("external_id-second-unhashed", _set("event.user.external_id", [sha256("x"), "x"]), 40062,
     "Batch.0.user.external_id: PII must be SHA-256 hashed."),
    ("email-empty-list", _set("event.user.email", []), 40002,
     "Batch.0.user.email: Field may not be empty."),
    ("email-number", _set("event.user.email", [42]), 40002,
     "Batch.0.user.email: Not a valid string."),
    ("user-not-an-object", _set("event.user", ["x"]), 40002, "Batch.0.user: Not a valid object."),
    ("user-null", _set("event.user", None), 40002, "Batch.0.user: Not a valid object."),
    ("email-object", _set("event.user.email", {"sha256": "x"}), 40002,
     "Batch.0.user.email: Not a valid string or list of strings."),
    ("email-63-hex", _set("event.user.email", [sha256("a")[:63]]), 40062,
     "Batch.0.user.email: PII must be SHA-256 hashed."),
    ("email-hex-with-newline", _set("event.user.email", [sha256("a")[:63] + "\n"]), 40062,
     "Batch.0.user.email: PII must be SHA-256 hashed."),
    ("email-64-non-hex", _set("event.user.email", ["g" * 64]), 40062,
     "Batch.0.user.email: PII must be SHA-256 hashed."),
    ("email-64-non-ascii", _set("event.user.email", ["\u00e9" * 64]), 40062,
     "Batch.0.user.email: PII must be SHA-256 hashed."),
    ("email-65-hex", _set("event.user.email", [sha256("a") + "0"]), 40062,
     "Batch.0.user.email: PII must be SHA-256 hashed."),
    ("first_name-plain", _set("event.user.first_name", "Alice"), 40062,
     "Batch.0.user.first_name: PII must be SHA-256 hashed."),
    ("last_name-uppercase-hex", _set("event.user.last_name", sha256("smith").upper()), 40062,
     "Batch.0.user.last_name: PII must be SHA-256 hashed."),
    ("city-plain", _set("event.user.city", "springfield"), 40062,
     "Batch.0.user.city: PII must be SHA-256 hashed."),
    ("state-plain", _set("event.user.state", "ca"), 40062,
     "Batch.0.user.state: PII must be SHA-256 hashed."),
    ("country-plain", _set("event.user.country", "us"), 40062,
     "Batch.0.user.country: PII must be SHA-256 hashed."),
    ("zip_code-plain", _set("event.user.zip_code", "94103"), 40062,
     "Batch.0.user.zip_code: PII must be SHA-256 hashed."),
    ("zip_code-number", _set("event.user.zip_code", 94103), 40002,
     "Batch.0.user.zip_code: Not a valid string."),
    ("first_name-list", _set("event.user.first_name", [sha256("alice")]), 40002,
     "Batch.0.user.first_name: Not a valid string."),
    ("country-null", _set("event.user.country", None), 40002,
     "Batch.0.user.country: Not a valid string."),
    ("locale-not-a-string", _set("event.user.locale", ["en-US"]), 40002,
     "Batch.0.user.locale: Not a valid string."),
    ("page-not-an-object", _set("event.page", "https://example.com/"), 40002,
     "Batch.0.page: Not a valid object."),
    ("page-null", _set("event.page", None), 40002, "Batch.0.page: Not a valid object."),
    ("page-url-not-a-string", _set("event.page", {"url": ["https://example.com/"]}), 40002,
     "Batch.0.page.url: Not a valid string."),
    ("page-referrer-not-a-string", _set("event.page", {"url": "https://a.example/",
     "referrer": 1}), 40002, "Batch.0.page.referrer: Not a valid string."),
    ("limited_data_use-string", _set("event.limited_data_use", "false"), 40002,
     "Batch.0.limited_data_use: Not a valid boolean."),
    ("limited_data_use-number", _set("event.limited_data_use", 0), 40002,
     "Batch.0.limited_data_use: Not a valid boolean."),
    ("limited_data_use-null", _set("event.limited_data_use", None), 40002,
     "Batch.0.limited_data_use: Not a valid boolean."),
    ("event_id-null", _set("event.event_id", None), 40002,
     "Batch.0.event_id: not a valid string."),
    ("ip-not-a-string", _set("event.user.ip", 2130706433), 40002,
     "Batch.0.user.ip: Not a valid string."),
    ("ttclid-not-a-string", _set("event.user.ttclid", ["E.C.P.x"]), 40002,
     "Batch.0.user.ttclid: Not a valid string."),
    ("crm-lead-not-an-object", _set("event.lead", "7300000000000000000"), 40002,
     "Batch.0.lead: Not a valid object."),
    ("crm-lead_event_source-missing", _delete("event.lead.lead_event_source"), 40002,
     "Batch.0.lead.lead_event_source: Missing data for required field."),
    ("crm-lead_event_source-empty", _set("event.lead.lead_event_source", ""), 40002,
     "Batch.0.lead.lead_event_source: Field may not be empty."),
    ("crm-lead_id-number", _set("event.lead.lead_id", 7300000000000000000), 40002,
     "Batch.0.lead.lead_id: Not a valid string."),
    ("crm-lead_id-missing", _delete("event.lead.lead_id"), 40002,
     "Batch.0.lead.lead_id: Missing data for required field."),
    ("crm-lead_id-empty", _set("event.lead.lead_id", ""), 40002,
     "Batch.0.lead.lead_id: Field may not be empty."),
    ("crm-lead_id-null", _set("event.lead.lead_id", None), 40002,
     "Batch.0.lead.lead_id: Not a valid string."),
    ("crm-lead-null", _set("event.lead", None), 40002, "Batch.0.lead: Not a valid object."),
    ("crm-lead-only-source", _set("event.lead", {"lead_event_source": "AcmeCRM"}), 40002,
     "Batch.0.lead.lead_id: Missing data for required field."),
    ("crm-no-lead-no-user", _drop_lead_and_user, 40002,
     "Batch.0: no match key (lead.lead_id, user.email, user.phone, user.external_id or "
     "user.ttclid)."),
    ("crm-no-match-key", _drop_all_match_keys, 40002,
     "Batch.0: no match key (lead.lead_id, user.email, user.phone, user.external_id or "
     "user.ttclid)."),
    ("properties-not-an-object", _set("event.properties", []), 40002,
     "Batch.0.properties: Not a valid object."),
    ("value-string", _set("event.properties.value", "42.50"), 40002,
     "Batch.0.properties.value: Not a valid number."),
    ("value-bool", _set("event.properties.value", True), 40002,
     "Batch.0.properties.value: Not a valid number."),
    ("currency-unsupported", _set("event.properties.currency", "XYZ"), 40002,
     "Batch.0.properties.currency: Not a valid choice."),
    ("currency-lowercase", _set("event.properties.currency", "usd"), 40002,
     "Batch.0.properties.currency: Not a valid choice."),
    ("currency-missing-with-value", _delete("event.properties.currency"), 40002,
     "Batch.0.properties.currency: required when value is set."),
    ("content_type-unknown", _set("event.properties.content_type", "service"), 40002,
     "Batch.0.properties.content_type: Not a valid choice."),
    ("order_id-number", _set("event.properties.order_id", 991), 40002,
     "Batch.0.properties.order_id: Not a valid string."),
    ("description-number", _set("event.properties.description", 1), 40002,
     "Batch.0.properties.description: Not a valid string."),
    ("error-names-the-bad-event", _break_second_event, 40002,
     "Batch.1.event_time: Not a valid integer."),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "code", "message"),
    [rule[1:] for rule in RULES],
    ids=[rule[0] for rule in RULES],
)
def test_contract_rule(
    crm_body: BodyFactory, registry: Registry, mutate: Mutation, code: int, message: str
) -> None:
    body = crm_body()
    mutate(body)
    assert check(body, registry) == ContractError(code, message)


@pytest.mark.parametrize("key", ["email", "phone", "external_id", "ttclid"])
def test_without_a_lead_object_any_one_user_match_key_is_enough(
    crm_body: BodyFactory, registry: Registry, key: str
) -> None:
    body = crm_body()
    event = _event(body)
    del event["lead"]
    event["user"] = {key: "E.C.P.abc" if key == "ttclid" else [sha256("someone")]}
    assert check(body, registry) is None


def test_lead_id_alone_is_enough(crm_body: BodyFactory, registry: Registry) -> None:
    body = crm_body()
    del _event(body)["user"]
    assert check(body, registry) is None


def test_an_empty_user_object_is_accepted_beside_a_lead_id(
    crm_body: BodyFactory, registry: Registry
) -> None:
    # TikTok takes it (Segment sends empty values and passes); our payload never has one.
    body = crm_body()
    _event(body)["user"] = {}
    assert check(body, registry) is None


def test_every_match_key_hashed_with_consent_flag_is_accepted(
    crm_body: BodyFactory, registry: Registry
) -> None:
    body = crm_body(2)
    for event, flag in zip(body["data"], (True, False), strict=True):
        event["user"].update({key: sha256(key) for key in NARROWING_KEYS})
        event["user"]["ttclid"] = "E.C.P.abc123"
        event["limited_data_use"] = flag
    assert check(body, registry) is None


def test_web_event_with_locale_page_and_every_key_is_accepted(
    web_body: BodyFactory, registry: Registry
) -> None:
    body = web_body()
    event = _event(body)
    event["user"].update({key: sha256(key) for key in NARROWING_KEYS})
    event["user"]["locale"] = "en-US"
    event["page"] = {"url": "https://example.com/form?x=1", "referrer": "https://www.tiktok.com/"}
    event["limited_data_use"] = True
    assert check(body, registry, token="web-token-1") is None


@pytest.mark.parametrize("page", [{}, {"url": ""}, {"referrer": "https://www.tiktok.com/"}])
def test_page_fields_are_optional_strings(
    web_body: BodyFactory, registry: Registry, page: dict[str, str]
) -> None:
    body = web_body()
    _event(body)["page"] = page
    assert check(body, registry, token="web-token-1") is None


def test_unknown_user_keys_are_ignored(crm_body: BodyFactory, registry: Registry) -> None:
    body = crm_body()
    _event(body)["user"]["favourite_colour"] = ["blue"]
    assert check(body, registry) is None


def test_a_hash_problem_is_named_before_a_later_events_problem(
    crm_body: BodyFactory, registry: Registry
) -> None:
    body = crm_body(3)
    body["data"][1]["user"]["zip_code"] = "9410" + sha256("x")[4:].upper()
    body["data"][2]["event_time"] = "soon"
    assert check(body, registry) == ContractError(
        40062, "Batch.1.user.zip_code: PII must be SHA-256 hashed."
    )


def test_a_later_events_problem_is_named_before_a_hash_problem_after_it(
    crm_body: BodyFactory, registry: Registry
) -> None:
    body = crm_body(3)
    body["data"][1]["event_time"] = "soon"
    body["data"][2]["user"]["email"] = ["A" * 64]
    assert check(body, registry) == ContractError(40002, "Batch.1.event_time: Not a valid integer.")


def test_one_bad_hash_in_a_full_batch_is_found(crm_body: BodyFactory, registry: Registry) -> None:
    body = crm_body(1000)
    body["data"][999]["user"]["first_name"] = "z" * 64
    assert check(body, registry) == ContractError(
        40062, "Batch.999.user.first_name: PII must be SHA-256 hashed."
    )


def test_web_events_need_no_lead(web_body: BodyFactory, registry: Registry) -> None:
    body = web_body()
    assert "lead" not in _event(body)
    assert check(body, registry, token="web-token-1") is None


def test_value_may_be_an_integer_and_properties_optional(
    crm_body: BodyFactory, registry: Registry
) -> None:
    body = crm_body(2)
    body["data"][0]["properties"] = {"value": 40, "currency": "EUR", "content_type": "product"}
    del body["data"][1]["properties"]
    assert check(body, registry) is None


def test_event_time_up_to_a_day_ahead_is_tolerated(
    crm_body: BodyFactory, registry: Registry
) -> None:
    body = crm_body()
    _event(body)["event_time"] = int(NOW) + 86_000
    assert check(body, registry) is None


def test_first_error_wins(crm_body: BodyFactory, registry: Registry) -> None:
    body = crm_body()
    body["partner_name"] = "Acme"
    _event(body)["user"]["email"] = ["plain@example.com"]
    assert check(body, registry) == ContractError(40063, "Invalid partner_name.")
