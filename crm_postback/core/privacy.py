"""Normalisation and SHA-256 hashing of match keys, applied before anything is stored.

Rules (TikTok Events API contract §2.1):
- email: trim, lowercase, must look like an address; then SHA-256.
- phone: parsed with `phonenumbers` (default region for numbers without +country), written
  in E.164 (`+12133734253`); then SHA-256.
- external_id: trim, lowercase; then SHA-256. (TikTok names no rule; this one is stable.)
A value that already is a lowercase or uppercase 64-hex SHA-256 is lowercased and kept, never
hashed twice.
"""

from __future__ import annotations

import hashlib
import re

import phonenumbers

_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# phonenumbers reads letters as keypad digits ("ABCD" -> 2223): a different person's number.
_LETTER = re.compile(r"[^\W\d_]")


class MatchKeyError(ValueError):
    """A match key that cannot be normalised; `field` names it. The raw value is never kept."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_sha256_hex(value: str) -> bool:
    return bool(_SHA256_HEX.match(value))


def normalize_email(raw: str) -> str:
    email = raw.strip().lower()
    if not _EMAIL.match(email):
        raise MatchKeyError("email", "not an email address")
    return email


def normalize_phone(raw: str, default_region: str) -> str:
    text = raw.strip()
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
