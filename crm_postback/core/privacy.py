"""Normalisation and SHA-256 hashing of match keys, applied before anything is stored.

Rules (TikTok Events API contract §2.1):
- email: trim, lowercase, must look like an address; then SHA-256.
- phone: parsed with `phonenumbers` (default region for numbers without +country), written
  in E.164 (`+12133734253`); then SHA-256.
- external_id: trim, lowercase; then SHA-256. (TikTok names no rule; this one is stable.)
A value that already is a lowercase or uppercase 64-hex SHA-256 is lowercased and kept, never
hashed twice.

Every check here runs in time linear in its input (string operations, or patterns that cannot
backtrack), and each key has a length limit checked before anything else: these run on what
any caller sends.
"""

from __future__ import annotations

import hashlib
import re
from itertools import islice, pairwise

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
