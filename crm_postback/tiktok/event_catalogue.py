"""TikTok's event and currency catalogue, as written in the Events API contract.

Source: shared/reference/tiktok-events-api.md §2.2 (currencies) and §3.1 (standard events).
"""

from __future__ import annotations

STANDARD_EVENTS: frozenset[str] = frozenset(
    {
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
    }
)

# Older names integrations still send, and TikTok's own CRM pages still show (SubmitForm).
# Accepted for CRM event sets, with a warning suggesting the current name; refused for web
# event sets (Pixels), with that suggestion (mappings.validation.validate_event_name).
LEGACY_EVENTS: dict[str, str] = {
    "SubmitForm": "Lead",
    "CompletePayment": "Purchase",
    "PlaceAnOrder": "Purchase",
    "ClickButton": "Contact",
}

# App-only events are rejected for CRM and web event sets.
APP_ONLY_EVENTS: frozenset[str] = frozenset(
    {
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
    }
)

SUPPORTED_CURRENCIES: frozenset[str] = frozenset(
    [
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
)

CONTENT_TYPES: frozenset[str] = frozenset({"product", "product_group"})

MAX_EVENTS_PER_REQUEST = 1000
# No TikTok limit is documented; the CRM event set name limit (40) is the closest analogue.
MAX_CUSTOM_EVENT_NAME_LENGTH = 50


def standard_event_named(name: str) -> str | None:
    """The standard event whose name matches `name` ignoring case, if any."""
    folded = name.casefold()
    for standard in STANDARD_EVENTS | LEGACY_EVENTS.keys():
        if standard.casefold() == folded:
            return standard
    return None
