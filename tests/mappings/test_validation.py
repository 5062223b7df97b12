"""Event-name and trigger-type validation, and the catalogue it relies on."""

from __future__ import annotations

import pytest

from crm_postback.tiktok.event_catalogue import (
    APP_ONLY_EVENTS,
    CONTENT_TYPES,
    LEGACY_EVENTS,
    MAX_CUSTOM_EVENT_NAME_LENGTH,
    STANDARD_EVENTS,
    SUPPORTED_CURRENCIES,
    standard_event_named,
)
from mappings.validation import (
    BUILT_IN_TRIGGERS,
    TRIGGER_TYPE_PATTERN,
    MappingError,
    event_name_warning,
    is_standard_event,
    validate_event_name,
    validate_trigger_type,
)

# Contract §3.1 and §2.2, written out independently of the catalogue module.
CONTRACT_STANDARD_EVENTS = [
    "AddPaymentInfo",
    "AddToCart",
    "AddToWishlist",
    "ApplicationApproval",
    "CompleteRegistration",
    "Contact",
    "CustomizeProduct",
    "Download",
    "FindLocation",
    "InitiateCheckout",
    "Lead",
    "Purchase",
    "Schedule",
    "Search",
    "StartTrial",
    "SubmitApplication",
    "Subscribe",
    "ViewContent",
]
CONTRACT_LEGACY = {
    "SubmitForm": "Lead",
    "CompletePayment": "Purchase",
    "PlaceAnOrder": "Purchase",
    "ClickButton": "Contact",
}
CONTRACT_APP_ONLY = [
    "AchieveLevel",
    "Checkout",
    "CompleteTutorial",
    "CreateGroup",
    "CreateRole",
    "GenerateLead",
    "InAppADClick",
    "InAppADImpr",
    "InstallApp",
    "JoinGroup",
    "LaunchAPP",
    "LoanApplication",
    "LoanApproval",
    "LoanDisbursal",
    "Login",
    "Rate",
    "Registration",
    "SpendCredits",
    "UnlockAchievement",
]
CONTRACT_CURRENCIES = [
    "AED",
    "ARS",
    "AUD",
    "BDT",
    "BHD",
    "BIF",
    "BOB",
    "BRL",
    "CAD",
    "CHF",
    "CLP",
    "CNY",
    "COP",
    "CRC",
    "CZK",
    "DKK",
    "DZD",
    "EGP",
    "EUR",
    "GBP",
    "GTQ",
    "HKD",
    "HNL",
    "HUF",
    "IDR",
    "ILS",
    "INR",
    "ISK",
    "JPY",
    "KES",
    "KHR",
    "KRW",
    "KWD",
    "KZT",
    "MAD",
    "MOP",
    "MXN",
    "MYR",
    "NGN",
    "NIO",
    "NOK",
    "NZD",
    "OMR",
    "PEN",
    "PHP",
    "PKR",
    "PLN",
    "PYG",
    "QAR",
    "RON",
    "RUB",
    "SAR",
    "SEK",
    "SGD",
    "THB",
    "TRY",
    "TWD",
    "UAH",
    "USD",
    "VES",
    "VND",
    "ZAR",
]


KINDS = ("crm", "web", None)


def _error(name: str, kind: str | None = "crm") -> MappingError:
    with pytest.raises(MappingError) as info:
        validate_event_name(name, kind)
    return info.value


# --- catalogue matches the contract ----------------------------------------------------------


def test_catalogue_matches_contract() -> None:
    assert set(CONTRACT_STANDARD_EVENTS) == STANDARD_EVENTS
    assert CONTRACT_LEGACY == LEGACY_EVENTS
    assert set(CONTRACT_APP_ONLY) == APP_ONLY_EVENTS
    assert set(CONTRACT_CURRENCIES) == SUPPORTED_CURRENCIES
    assert {"product", "product_group"} == CONTENT_TYPES


def test_catalogue_sets_do_not_overlap() -> None:
    assert not STANDARD_EVENTS & APP_ONLY_EVENTS
    assert not STANDARD_EVENTS & LEGACY_EVENTS.keys()
    assert not APP_ONLY_EVENTS & LEGACY_EVENTS.keys()
    assert set(LEGACY_EVENTS.values()) <= STANDARD_EVENTS


@pytest.mark.parametrize(
    ("name", "expected"),
    [("lead", "Lead"), ("PURCHASE", "Purchase"), ("submitform", "SubmitForm"), ("nope", None)],
)
def test_standard_event_named(name: str, expected: str | None) -> None:
    assert standard_event_named(name) == expected


# --- validate_event_name ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", CONTRACT_STANDARD_EVENTS)
def test_standard_event_accepted_verbatim(name: str, kind: str | None) -> None:
    assert validate_event_name(name, kind) == name
    assert event_name_warning(name, kind) is None
    assert is_standard_event(name)


@pytest.mark.parametrize("kind", KINDS)
def test_event_name_is_stripped(kind: str | None) -> None:
    assert validate_event_name("  Purchase ", kind) == "Purchase"
    assert validate_event_name(" lead_sold\n", kind) == "lead_sold"


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("lead", "Lead"), ("LEAD", "Lead"), ("purchase", "Purchase"), ("viewcontent", "ViewContent")],
)
def test_wrong_case_standard_event_rejected_with_suggestion(name: str, suggestion: str) -> None:
    error = _error(name)
    assert error.field == "event"
    assert f"'{suggestion}'" in error.reason
    assert not is_standard_event(name)


@pytest.mark.parametrize(("legacy", "replacement"), sorted(CONTRACT_LEGACY.items()))
def test_legacy_name_refused_for_web_suggesting_replacement(legacy: str, replacement: str) -> None:
    error = _error(legacy, "web")
    assert error.field == "event"
    assert "legacy" in error.reason
    assert f"'{replacement}'" in error.reason


@pytest.mark.parametrize(("legacy", "replacement"), sorted(CONTRACT_LEGACY.items()))
def test_legacy_name_accepted_for_crm_with_a_warning(legacy: str, replacement: str) -> None:
    assert validate_event_name(f" {legacy} ", "crm") == legacy
    warning = event_name_warning(legacy, "crm")
    assert warning is not None
    assert "legacy" in warning
    assert f"'{replacement}'" in warning
    assert event_name_warning(legacy, "web") is None  # refused there, not warned


def test_legacy_name_passes_while_the_kind_is_unknown() -> None:
    assert validate_event_name("SubmitForm", None) == "SubmitForm"


@pytest.mark.parametrize(
    "name", ["リード成約", "Venta de lead cualificada ñ", "صفقة", "Lead-Qualifiziert-ä"]
)
def test_non_ascii_custom_names_only_for_crm(name: str) -> None:
    assert validate_event_name(name, "crm") == name
    assert validate_event_name(name, None) == name
    error = _error(name, "web")
    assert error.field == "event"
    assert "only for CRM" in error.reason
    assert name not in error.reason


@pytest.mark.parametrize("name", ["lead_sold", "Lead Sold", "Venta de lead", "a" * 50])
def test_ascii_custom_names_for_web(name: str) -> None:
    assert validate_event_name(name, "web") == name


@pytest.mark.parametrize(
    ("name", "replacement"), [("submitform", "Lead"), ("COMPLETEPAYMENT", "Purchase")]
)
def test_wrong_case_legacy_name_suggests_replacement(name: str, replacement: str) -> None:
    error = _error(name)
    assert f"'{replacement}'" in error.reason
    legacy = standard_event_named(name)
    assert f"'{legacy}'" not in error.reason


@pytest.mark.parametrize("name", CONTRACT_APP_ONLY)
def test_app_only_event_rejected(name: str) -> None:
    error = _error(name)
    assert error.field == "event"
    assert "app-only" in error.reason


@pytest.mark.parametrize(
    "name",
    [
        "lead_sold",
        "Lead Sold",
        "buyer.accepted",
        "リード成約",
        "潜在客户成交",
        "Venta de lead",
        "Lead-Qualifiziert",
        "صفقة",
        "a" * MAX_CUSTOM_EVENT_NAME_LENGTH,
    ],
)
def test_custom_and_non_english_names_accepted_for_crm(name: str) -> None:
    assert validate_event_name(name, "crm") == name
    assert not is_standard_event(name)


@pytest.mark.parametrize("name", ["", "   ", "\n"])
def test_empty_event_name_rejected(name: str) -> None:
    error = _error(name)
    assert error.field == "event"
    assert "empty" in error.reason


@pytest.mark.parametrize(
    "name", ["a" * (MAX_CUSTOM_EVENT_NAME_LENGTH + 1), "リ" * (MAX_CUSTOM_EVENT_NAME_LENGTH + 1)]
)
def test_over_length_custom_name_rejected(name: str) -> None:
    error = _error(name)
    assert error.field == "event"
    assert str(MAX_CUSTOM_EVENT_NAME_LENGTH) in error.reason


@pytest.mark.parametrize(
    "name", ["lead\x00sold", "lead\tsold", "lead\nsold", "lead\x7fsold", "lead\u200bsold"]
)
def test_control_characters_rejected(name: str) -> None:
    error = _error(name)
    assert error.field == "event"
    assert "control" in error.reason


def test_mapping_error_message() -> None:
    error = MappingError("event", "bad")
    assert str(error) == "event: bad"
    assert isinstance(error, ValueError)


# --- validate_trigger_type -------------------------------------------------------------------


@pytest.mark.parametrize(
    "trigger_type", [*BUILT_IN_TRIGGERS, "buyer.accepted", "x", "9to5", "a-b_c.d", "a" * 64]
)
def test_trigger_type_accepted(trigger_type: str) -> None:
    assert validate_trigger_type(trigger_type) == trigger_type
    assert TRIGGER_TYPE_PATTERN.match(trigger_type)


def test_built_in_triggers() -> None:
    assert BUILT_IN_TRIGGERS == ("lead.submitted", "lead.sold", "offer.click", "offer.conversion")


@pytest.mark.parametrize(
    "trigger_type",
    [
        "",
        "Lead.Sold",
        "lead sold",
        "Lead Sold",
        ".lead",
        "-lead",
        "_lead",
        "a" * 65,
        "lead/sold",
        "lëad",
    ],
)
def test_trigger_type_rejected(trigger_type: str) -> None:
    with pytest.raises(MappingError) as info:
        validate_trigger_type(trigger_type)
    assert info.value.field == "trigger"
    assert "lowercase" in info.value.reason


def test_trigger_type_with_trailing_newline_rejected() -> None:
    with pytest.raises(MappingError):
        validate_trigger_type("lead.sold\n")


@pytest.mark.parametrize(
    "trigger_type", ["jane@example.org", "Jane.Doe@Example.org", "+1 213 373 4253", "Lead Sold"]
)
def test_a_refused_trigger_type_is_never_echoed(trigger_type: str) -> None:
    with pytest.raises(MappingError) as refused:
        validate_trigger_type(trigger_type)
    assert refused.value.field == "trigger"
    assert trigger_type not in str(refused.value)
    assert trigger_type.lower() not in str(refused.value).lower()
    assert repr(trigger_type) not in str(refused.value)
