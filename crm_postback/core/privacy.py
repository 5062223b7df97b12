"""Normalisation and SHA-256 hashing of match keys, applied before anything is stored.

Rules (TikTok Events API contract §2.1):
- email: trim, lowercase, must look like an address; then SHA-256.
- phone: parsed with `phonenumbers` (default region for numbers without +country), written
  in E.164 (`+12133734253`); then SHA-256.
- external_id: trim, lowercase; then SHA-256. (TikTok names no rule; this one is stable.)
- first_name, last_name: lowercase, without whitespace or punctuation; then SHA-256.
- city, state: lowercase letters and digits only; country: ISO 3166-1 alpha-2, lowercase;
  zip_code: lowercase without whitespace, a US ZIP+4 cut to five digits; each then SHA-256.
- locale (BCP 47) and page URLs are not personal and stay as given, the URLs sanitised.
A value that already is a lowercase or uppercase 64-hex SHA-256 is lowercased and kept, never
hashed twice.

Every check here runs in time linear in its input (string operations, or patterns that cannot
backtrack), and each key has a length limit checked before anything else: these run on what
any caller sends.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable
from itertools import islice, pairwise
from typing import NamedTuple
from urllib.parse import unquote, urlsplit, urlunsplit

import phonenumbers

MAX_EMAIL_LENGTH = 254  # RFC 5321: the longest address a mail server accepts
MAX_PHONE_LENGTH = 64  # E.164 is 15 digits; room for spaces, brackets and an extension
MAX_EXTERNAL_ID_LENGTH = 256

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
# phonenumbers reads letters as keypad digits ("ABCD" -> 2223): a different person's number.
_LETTER = re.compile(r"[^\W\d_]")
_DOT_AND_TWO_LETTERS = re.compile(r"\.[A-Za-z]{2}")
# Digits and phone punctuation only, 32 characters at most: one pass, nothing to backtrack.
_PHONE_SHAPE = re.compile(r"[0-9 +\-.()/]{7,32}")
_PHONE_SEPARATORS = frozenset(" -.()/")


class MatchKeyError(ValueError):
    """A match key that cannot be normalised; `field` names it. The raw value is never kept."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_sha256_hex(value: str) -> bool:
    return bool(_SHA256_HEX.fullmatch(value))


def _too_long(field: str, text: str, limit: int) -> None:
    if len(text) > limit:
        raise MatchKeyError(field, f"longer than {limit} characters")


def _is_address(email: str) -> bool:
    # local@domain.tld: no whitespace, one "@", a dot inside the domain (not at either end).
    local, at, domain = email.partition("@")
    return bool(local and at and "@" not in domain and "." in domain[1:-1]) and (
        len(email.split()) == 1
    )


def looks_like_email(text: str) -> bool:
    """Somewhere in `text`, `name@domain.tld` (two letters after the last dot at least)."""
    if "@" not in text:
        return False
    for word in text.split():
        for before, after in pairwise(word.split("@")):
            if before and _DOT_AND_TWO_LETTERS.search(after, 1):
                return True
    return False


def looks_like_phone(text: str, default_region: str) -> bool:
    """`text` is written like a phone number: at most 32 characters of digits and phone
    punctuation, and either a valid international number ("+" or "00" first) or, with
    separators, one valid number in `default_region` spanning the whole text. Bare digits
    ("123456", a CRM's numeric id) never are, nor are dates, versions or grouped ids that
    are no valid number ("2024-01-15-0001", "15.01.2024", "3.14159265")."""
    text = text.strip()
    if not _PHONE_SHAPE.fullmatch(text):  # bounds what phonenumbers is given
        return False
    if text.startswith(("+", "00")):
        try:
            number = phonenumbers.parse("+" + text[1 if text[0] == "+" else 2 :], None)
        except phonenumbers.NumberParseException:
            number = None
        if number is not None and phonenumbers.is_valid_number(number):
            return True
    if not _PHONE_SEPARATORS & set(text):
        return False
    matches = phonenumbers.PhoneNumberMatcher(
        text, default_region, leniency=phonenumbers.Leniency.VALID
    )
    found = [(match.start, match.end) for match in islice(matches, 2)]
    return found == [(0, len(text))]


def normalize_email(raw: str) -> str:
    email = raw.strip().lower()
    _too_long("email", email, MAX_EMAIL_LENGTH)
    if not _is_address(email):
        raise MatchKeyError("email", "not an email address")
    return email


def normalize_phone(raw: str, default_region: str) -> str:
    text = raw.strip()
    _too_long("phone", text, MAX_PHONE_LENGTH)
    if _LETTER.search(text):
        raise MatchKeyError("phone", "contains letters")
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else default_region)
    except phonenumbers.NumberParseException as exc:
        raise MatchKeyError("phone", "not a phone number") from exc
    if not phonenumbers.is_possible_number(number):
        raise MatchKeyError("phone", f"not a possible number (default region {default_region})")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_external_id(raw: str) -> str:
    external_id = raw.strip().lower()
    _too_long("external_id", external_id, MAX_EXTERNAL_ID_LENGTH)
    if not external_id:
        raise MatchKeyError("external_id", "empty")
    return external_id


def hash_email(raw: str) -> str:
    if is_sha256_hex(raw.strip()):
        return raw.strip().lower()
    return sha256_hex(normalize_email(raw))


def hash_phone(raw: str, default_region: str) -> str:
    if is_sha256_hex(raw.strip()):
        return raw.strip().lower()
    return sha256_hex(normalize_phone(raw, default_region))


def hash_external_id(raw: str) -> str:
    if is_sha256_hex(raw.strip()):
        return raw.strip().lower()
    return sha256_hex(normalize_external_id(raw))


# Names and address parts (see docs/match-keys.md for the rule of each and where it comes from).
MAX_NAME_LENGTH = 128
MAX_CITY_LENGTH = 128
MAX_STATE_LENGTH = 64
MAX_COUNTRY_LENGTH = 64
MAX_ZIP_CODE_LENGTH = 32
MAX_LOCALE_LENGTH = 35  # the longest BCP 47 tag a caller sends in practice (RFC 5646 §4.4.1)
MAX_URL_LENGTH = 2048

_US_ZIP_PLUS_FOUR = re.compile(r"[0-9]{5}-[0-9]{4}")
_COUNTRY_CODE = re.compile(r"[a-z]{2}")
# language[-Script][-Region] only: no variants, extensions or private use (`en-x-jane-doe`,
# `en-415-555-0188` would carry anything to TikTok as given).
_LOCALE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z]{4})?(?:-(?:[A-Za-z]{2}|[0-9]{3}))?")


def _nfc_lower(field: str, raw: str, limit: int) -> str:
    text = raw.strip()
    _too_long(field, text, limit)  # before the normalisation, which may lengthen it
    return unicodedata.normalize("NFC", text).lower()


def _name_letter(char: str) -> bool:
    # Punctuation (P*), separators (Z*), whitespace and control characters go; letters of any
    # script, digits, marks and symbols stay (TikTok: "lowercase without any punctuation;
    # special characters are allowed").
    return not char.isspace() and unicodedata.category(char)[0] not in "PZC"


def normalize_name(field: str, raw: str) -> str:
    """first_name / last_name: lowercase, without whitespace or punctuation."""
    name = "".join(filter(_name_letter, _nfc_lower(field, raw, MAX_NAME_LENGTH)))
    if not name:
        raise MatchKeyError(field, "no letters left once spaces and punctuation are removed")
    return name


def normalize_place(field: str, raw: str, limit: int) -> str:
    """city / state: lowercase letters and digits only (of any script)."""
    place = "".join(filter(str.isalnum, _nfc_lower(field, raw, limit)))
    if not place:
        raise MatchKeyError(field, "no letters or digits left once the rest is removed")
    return place


def normalize_country(raw: str) -> str:
    """An ISO 3166-1 alpha-2 code, lowercase ("US", " de " -> "us", "de")."""
    text = raw.strip()
    _too_long("country", text, MAX_COUNTRY_LENGTH)
    code = text.replace(".", "").lower()
    if not _COUNTRY_CODE.fullmatch(code):
        raise MatchKeyError("country", "not an ISO 3166-1 alpha-2 code (e.g. us, de, gb)")
    return code


def normalize_zip_code(raw: str) -> str:
    """Lowercase, without whitespace; a US ZIP+4 ("94105-1234") keeps its five digits."""
    text = raw.strip()
    _too_long("zip_code", text, MAX_ZIP_CODE_LENGTH)
    zip_code = "".join(char for char in text.lower() if not char.isspace())
    if _US_ZIP_PLUS_FOUR.fullmatch(zip_code):
        zip_code = zip_code[:5]
    if not zip_code:
        raise MatchKeyError("zip_code", "empty")
    return zip_code


def normalize_locale(raw: str) -> str:
    """A BCP 47 language tag as given ("en-US", "zh-Hant-TW", "es-419"; "en_US" is written
    "en-US"): language, optional script and region, nothing else."""
    text = raw.strip()
    _too_long("locale", text, MAX_LOCALE_LENGTH)
    locale = text.replace("_", "-")
    if not _LOCALE.fullmatch(locale):
        raise MatchKeyError("locale", "not a BCP 47 language tag (e.g. en-US)")
    return locale


def _hashed(raw: str, normalize: Callable[[str], str]) -> str:
    text = raw.strip()
    if is_sha256_hex(text):
        return text.lower()
    return sha256_hex(normalize(raw))


def hash_name(field: str, raw: str) -> str:
    return _hashed(raw, lambda text: normalize_name(field, text))


def hash_city(raw: str) -> str:
    return _hashed(raw, lambda text: normalize_place("city", text, MAX_CITY_LENGTH))


def hash_state(raw: str) -> str:
    return _hashed(raw, lambda text: normalize_place("state", text, MAX_STATE_LENGTH))


def hash_country(raw: str) -> str:
    return _hashed(raw, normalize_country)


def hash_zip_code(raw: str) -> str:
    return _hashed(raw, normalize_zip_code)


class PageUrl(NamedTuple):
    url: str
    ttclid: str | None  # the query's ttclid, when it has one


# Query parameters kept in a page URL: marketing ones, which name a campaign or a click, never a
# person. Every other parameter is dropped (a form that submits by GET puts names, addresses,
# emails and phones there under any name).
CLICK_ID_PARAMETERS = frozenset(
    {
        "ttclid",  # TikTok
        "gclid",  # Google Ads, and its iOS variants
        "gbraid",
        "wbraid",
        "dclid",  # Google Display & Video
        "fbclid",  # Meta
        "msclkid",  # Microsoft Ads
        "twclid",  # X
        "li_fat_id",  # LinkedIn
        "epik",  # Pinterest
        "sccid",  # Snapchat
        "yclid",  # Yandex
    }
)
CAMPAIGN_PARAMETERS = frozenset(
    {"campaign_id", "adgroup_id", "adset_id", "ad_id", "creative_id", "placement"}
)
CAMPAIGN_PREFIX = "utm_"  # utm_source, utm_medium, utm_campaign, utm_term, utm_content, ...
MAX_KEPT_PARAMETERS = 20
_DECODE_ROUNDS = 3  # "%2540" is "%40" once decoded, "@" twice
_PHONE_RUN_SEPARATORS = frozenset(" +-.()")
_DATE = re.compile(r"[0-9]{4}([-.])[0-9]{2}\1[0-9]{2}|[0-9]{2}([-.])[0-9]{2}\2[0-9]{4}")


def _decoded(text: str) -> str:
    """Percent-decoded until stable (a bounded number of rounds), then NFKC (the full-width at
    sign U+FF20 is "@"). A literal "+" stays "+": a form writes "+1 415..." unencoded."""
    for _ in range(_DECODE_ROUNDS):
        once = unquote(text)
        if once == text:
            break
        text = once
    return unicodedata.normalize("NFKC", text)


def _holds_phone_digits(text: str) -> bool:
    """Somewhere in `text`, 7 to 15 digits in a row, spaces, "+", "-", ".", brackets between
    them (E.164 has at most 15 digits; ids of 16 or more, as ad platforms' campaign ids, are
    none). Dates (2024-03-01, 01.03.2024) are not. One pass over the text."""
    run_start, digits = -1, 0
    for index, char in enumerate(f"{text}\0"):
        if "0" <= char <= "9":
            if digits == 0:
                run_start = index
            digits += 1
        elif char in _PHONE_RUN_SEPARATORS and digits:
            continue
        elif digits:
            run = text[run_start:index].rstrip(" +-.(")
            if 7 <= digits <= 15 and not _DATE.fullmatch(run):
                return True
            digits = 0
    return False


def _personal_text(decoded: str) -> bool:
    """Could be an email address or a phone number: any "@", or phone-like digits."""
    return "@" in decoded or _holds_phone_digits(decoded)


def _kept_parameter(name: str, value: str) -> bool:
    marketing = (
        name in CLICK_ID_PARAMETERS
        or name in CAMPAIGN_PARAMETERS
        or name.startswith(CAMPAIGN_PREFIX)
    )
    return marketing and value.isprintable() and not _personal_text(value)


def _kept_path(path: str) -> str:
    """The path without `;parameters`, cut before the first segment that may be an email
    address or a phone number (`/thanks/jane@example.com/done` is `/thanks`)."""
    kept: list[str] = []
    for segment in path.split("/"):
        segment = segment.partition(";")[0]
        if _personal_text(_decoded(segment)):
            break
        kept.append(segment)
    return "/".join(kept) or ("/" if path else "")


def sanitize_page_url(field: str, raw: str) -> PageUrl:
    """An http(s) URL without userinfo, fragment or path parameters, its path cut before a
    segment that may be an email or phone, and of its query only the marketing parameters
    (click ids, `utm_*`, ad and campaign ids) whose value holds no email or phone; those are
    kept as written. Linear in the URL's length (bounded by MAX_URL_LENGTH)."""
    text = raw.strip()
    _too_long(field, text, MAX_URL_LENGTH)
    try:
        parts = urlsplit(text)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise MatchKeyError(field, "not a URL") from None
    if parts.scheme.lower() not in ("http", "https") or not hostname:
        raise MatchKeyError(field, "not an http or https URL")
    netloc = parts.netloc.rpartition("@")[2]  # no user:password@
    kept: list[str] = []
    ttclid: str | None = None
    for item in parts.query.split("&") if parts.query else ():
        if len(kept) == MAX_KEPT_PARAMETERS:
            break
        name, _, value = item.partition("=")
        name_text, value_text = _decoded(name).strip().lower(), _decoded(value)
        if not _kept_parameter(name_text, value_text):
            continue
        if name_text == "ttclid" and value_text:
            ttclid = value_text
        kept.append(item)
    url = urlunsplit((parts.scheme.lower(), netloc, _kept_path(parts.path), "&".join(kept), ""))
    if not url.isprintable():  # control characters (NUL among them) are never left unescaped
        raise MatchKeyError(field, "not a URL")
    return PageUrl(url, ttclid)
