"""Validated shapes of what routing systems send: triggers and lead match keys.

Every check is cheap before it is thorough: lengths and sizes are checked before any pattern
or per-value work, and no pattern can backtrack, so a hostile body costs time linear in its
size. Identity fields (lead ids, idempotency keys, event ids) refuse values shaped like an
email address or a phone number: those are sent or stored as given, so personal data in them
would leave unhashed. Match keys are only typed here; `lead_keys.hash_match_keys` checks each
one and drops (or, strict, refuses) a bad one, the identifier keys (ttclid, ttp, TikTok lead
id) by the same personal-data rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Annotated, Any

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from crm_postback.core import jsontext
from crm_postback.core.errors import FieldError, InputRejected
from crm_postback.core.privacy import looks_like_email, looks_like_phone
from crm_postback.core.settings import get_settings
from crm_postback.tiktok.event_catalogue import SUPPORTED_CURRENCIES
from mappings.rules import as_number
from mappings.validation import TRIGGER_TYPE_PATTERN

MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_VALUE_LENGTH = 1000
MAX_KEYS_PER_KIND = 5
MAX_REFERENCE_LENGTH = 128  # lead_id, event_set
MAX_IDEMPOTENCY_KEY_LENGTH = 200
MAX_EVENT_ID_LENGTH = 64  # triggers.event_id; TikTok names no limit
MAX_LIST_INPUT = 100  # values of one kind read at all (a longer list is refused)
MAX_USER_AGENT_LENGTH = 1024
MAX_IP_INPUT = 64
MAX_TTCLID_LENGTH = 512
MAX_TTP_LENGTH = 256
MAX_TIKTOK_LEAD_ID_LENGTH = 64
MAX_TRIGGER_TYPE_INPUT = 128  # the pattern allows 64; longer input is refused before it runs
FUTURE_TOLERANCE = timedelta(minutes=5)
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")

UNSTORABLE_MESSAGE = "contains a NUL character or an unpaired surrogate, which cannot be stored"


def _storable(value: str) -> str:
    if _unstorable(value):
        raise ValueError(UNSTORABLE_MESSAGE)
    return value


def personal_data_reason(value: str, hint: str) -> str | None:
    """Why an identifier must not be `value` (None: it may be): `hint` says what to send
    instead, with `{key}` for email or phone."""
    if looks_like_email(value):
        return f"looks like an email address; {hint.format(key='email')}"
    if looks_like_phone(value, get_settings().default_phone_region):
        return f"looks like a phone number; {hint.format(key='phone')}"
    return None


def _no_personal_data(hint: str) -> Callable[[str], str]:
    """A validator for an identity field; `hint` says what to send instead."""

    def check(value: str) -> str:
        if _unstorable(value):
            raise ValueError(UNSTORABLE_MESSAGE)
        reason = personal_data_reason(value, hint)
        if reason is not None:
            raise ValueError(reason)
        return value

    return check


AS_MATCH_KEY = "send it as match_keys.{key}, where it is hashed"
_NOT_AN_ID = "an id must not be personal data (send it as match_keys.{key}, where it is hashed)"


LeadRef = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_REFERENCE_LENGTH),
    AfterValidator(_no_personal_data(_NOT_AN_ID)),
]
# An event set is looked up, never stored or sent, and an unknown one is not named back: no
# shape rule, only what a lookup cannot take.
EventSetRef = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_REFERENCE_LENGTH),
    AfterValidator(_storable),
]
IdempotencyKey = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_IDEMPOTENCY_KEY_LENGTH),
    AfterValidator(_no_personal_data(_NOT_AN_ID)),
]
# Printable ASCII without spaces, "@" or "%" (no address, encoded or not), each part between
# separators checked as an id; 40 hex digits are the shape of the ids derived here, which a
# caller must not be able to take ahead of the trigger they belong to.
_EVENT_ID_SHAPE = re.compile(r"[A-Za-z0-9_.:|/+=\-]{1,64}")
_EVENT_ID_PARTS = re.compile(r"[:|/=]")
_DERIVED_EVENT_ID = re.compile(r"[0-9a-f]{40}")


def _event_id(value: str) -> str:
    if not _EVENT_ID_SHAPE.fullmatch(value):
        raise ValueError(
            "must be letters, digits and _ . : | / + = - only (no spaces, '@' or '%'), "
            f"at most {MAX_EVENT_ID_LENGTH} characters"
        )
    if _DERIVED_EVENT_ID.fullmatch(value):
        raise ValueError("40 hex digits are the shape of the event ids derived here; use another")
    for part in (value, *_EVENT_ID_PARTS.split(value)):
        reason = personal_data_reason(part, _NOT_AN_ID)
        if reason is not None:
            raise ValueError(reason)
    return value


EventId = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_EVENT_ID_LENGTH),
    AfterValidator(_event_id),
]
# Match keys are only typed here: what each may hold is checked by lead_keys.hash_match_keys,
# which drops a bad key with a warning (or refuses it, strict). A list is bounded before its
# items are looked at; a long string costs nothing until then (its length is checked first).
KeyValues = str | list[str]
AttributeValue = str | int | float | bool | None


class PageIn(BaseModel):
    """The landing page (web event sets): sent as TikTok's `page` object."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    url: str | None = None
    referrer: str | None = None


class MatchKeys(BaseModel):
    """Raw match keys as sent; they are normalised and hashed before anything is stored."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    ttclid: str | None = None
    ttp: str | None = None
    email: KeyValues | None = None
    phone: KeyValues | None = None
    external_id: KeyValues | None = None
    ip: str | None = None
    user_agent: str | None = None
    tiktok_lead_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    city: str | None = None
    state: str | None = None
    country: str | None = None
    zip_code: str | None = None
    locale: str | None = None
    page: PageIn | None = None

    @field_validator("email", "phone", "external_id", mode="before")
    @classmethod
    def _bounded_list(cls, value: Any) -> Any:  # before each value is looked at
        if isinstance(value, list) and len(value) > MAX_LIST_INPUT:
            raise ValueError(
                f"at most {MAX_LIST_INPUT} values can be read ({MAX_KEYS_PER_KIND} are used)"
            )
        return value


class TriggerIn(BaseModel):
    """One lifecycle change. `lead_id` is the routing system's id for the lead."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    type: str = Field(
        max_length=MAX_TRIGGER_TYPE_INPUT,
        description="lead.submitted, lead.sold, offer.click, offer.conversion "
        "or a custom name such as buyer.accepted",
    )
    lead_id: LeadRef
    event_set: EventSetRef = Field(description="The event set's name or its TikTok event set ID")
    occurred_at: datetime = Field(description="When it happened; without a zone it is UTC")
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)
    match_keys: MatchKeys | None = None
    idempotency_key: IdempotencyKey | None = None
    event_id: EventId | None = Field(
        None,
        description="The event id your Pixel used for the same conversion: every event of the "
        "trigger is sent with it, so TikTok counts the two copies once",
    )
    limited_data_use: bool | None = Field(
        None,
        strict=True,
        description="TikTok's limited data use for this trigger's events (None: the lead's, "
        "else the event set's)",
    )

    @field_validator("type")
    @classmethod
    def _trigger_type(cls, value: str) -> str:
        value = value.strip()
        if not TRIGGER_TYPE_PATTERN.match(value):
            raise ValueError(
                "must be lowercase letters, digits, '.', '_' or '-', e.g. lead.sold or "
                "buyer.accepted (at most 64 characters)"
            )
        return value

    @field_validator("occurred_at")
    @classmethod
    def _utc_not_future(cls, value: datetime) -> datetime:
        try:
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        except OverflowError:  # 0001-01-01 with a positive offset is before year 1 in UTC
            raise ValueError("is out of range (before year 1 in UTC)") from None
        if value > datetime.now(UTC) + FUTURE_TOLERANCE:
            raise ValueError("is in the future")
        return value

    @field_validator("attributes", mode="before")
    @classmethod
    def _attribute_count(cls, value: Any) -> Any:  # before each value is looked at
        if isinstance(value, dict) and len(value) > MAX_ATTRIBUTES:
            raise ValueError(f"at most {MAX_ATTRIBUTES} attributes")
        return value

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, value: dict[str, AttributeValue]) -> dict[str, AttributeValue]:
        # Size first: the per-value checks below then never see more than the limit.
        limit = get_settings().max_attribute_bytes
        size: int | None = None
        try:
            size = len(jsontext.dumps_bytes(value))
        except UnicodeEncodeError:
            pass  # a lone surrogate: refused where it is, by unstorable_values
        except ValueError:  # an integer too long to write (the Python API takes any int)
            raise ValueError("holds a number too long to store") from None
        if size is not None and size > limit:
            raise ValueError(f"{size} bytes of JSON; the limit is {limit}")
        for position, (key, item) in enumerate(value.items()):
            if not _ATTRIBUTE_NAME.fullmatch(key):
                raise ValueError(
                    f"attribute #{position}: the name must be a plain identifier (letters, "
                    "digits, '_', '.', '-'; at most 64 characters)"
                )
            if isinstance(item, str):
                if len(item) > MAX_ATTRIBUTE_VALUE_LENGTH:
                    raise ValueError(f"{key}: longer than {MAX_ATTRIBUTE_VALUE_LENGTH} characters")
                if looks_like_email(item):
                    raise ValueError(
                        f"{key}: looks like an email address; send it as match_keys.email "
                        "so it is hashed"
                    )
        if value.get("value") is not None and as_number(value["value"]) is None:
            raise ValueError("value: not a number")
        currency = value.get("currency")
        if currency is not None and (
            not isinstance(currency, str) or currency.upper() not in SUPPORTED_CURRENCIES
        ):
            raise ValueError("currency: not a currency TikTok supports")
        return value


class LeadUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    lead_id: LeadRef
    match_keys: MatchKeys = Field(default_factory=MatchKeys)
    limited_data_use: bool | None = Field(None, strict=True)


MAX_REPORTED_PATHS = 20


class Unrepresentable:
    """Stands in a parsed document for a value that could be read but not kept (an integer of
    thousands of digits, a number beyond float range, NaN, nesting too deep to read), so that
    the value's own path is refused, not the whole document."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def unstorable_paths(document: Any) -> list[list[str | int]]:
    """Where a document holds text PostgreSQL cannot store: NUL, or a lone surrogate."""
    return [path for path, _ in unstorable_values(document)]


def unstorable_values(document: Any) -> list[tuple[list[str | int], str]]:
    """(path, why) of each value that cannot be stored, the first MAX_REPORTED_PATHS of them:
    text with NUL or a lone surrogate, and Unrepresentable placeholders."""
    if not _may_hold_unstorable(document):
        return []
    return list(islice(_walk(document), MAX_REPORTED_PATHS))


def _may_hold_unstorable(document: Any) -> bool:
    # One pass in C instead of a Python walk over every string (most documents are clean):
    # orjson refuses lone surrogates and writes NUL as \u0000. Anything it cannot encode, or
    # a backslash followed by "u0000" in the text, is walked to be sure.
    try:
        encoded = orjson.dumps(document)
    except orjson.JSONEncodeError:
        return True
    return b"\\u0000" in encoded


_Link = tuple[Any, str | int] | None  # (parent link, key): a path built only when reported


def _walk(document: Any) -> Iterator[tuple[list[str | int], str]]:
    # With a stack, not recursion (a document may nest deeper than Python's recursion
    # limit), and paths as parent links, so a deep document costs its size, not size x depth.
    stack: list[tuple[Any, _Link, bool]] = [(document, None, False)]
    while stack:
        node, link, is_key = stack.pop()
        if isinstance(node, str):
            if _unstorable(node):
                yield _path(link), UNSTORABLE_MESSAGE
        elif isinstance(node, Unrepresentable) and not is_key:
            yield _path(link), node.message
        elif isinstance(node, dict) and not is_key:
            children: list[tuple[Any, _Link, bool]] = []
            for key, value in node.items():
                children.append((key, (link, key), True))
                children.append((value, (link, key), False))
            stack.extend(reversed(children))
        elif isinstance(node, list) and not is_key:
            stack.extend(
                (value, (link, index), False) for index, value in reversed(list(enumerate(node)))
            )


def _path(link: _Link) -> list[str | int]:
    path: list[str | int] = []
    while link is not None:
        link, key = link
        path.append(key)
    path.reverse()
    return path


def _unstorable(text: str) -> bool:
    # Each identifier field checks itself, so direct model_validate callers are covered too.
    return not jsontext.is_storable_text(text)


_LEAD_REF: TypeAdapter[str] = TypeAdapter(LeadRef)


def parse_lead_ref(value: str) -> str:
    """A lead id given on its own (a URL path): the checks of `lead_id` in a body."""
    try:
        return _LEAD_REF.validate_python(value)
    except ValidationError as error:
        raise InputRejected(
            [
                FieldError("lead_id", item["msg"].removeprefix("Value error, "))
                for item in error.errors(include_input=False, include_url=False)
            ]
        ) from None


def parse_trigger(data: Any) -> TriggerIn:
    if isinstance(data, TriggerIn):
        return data
    return TriggerIn.model_validate(data)
