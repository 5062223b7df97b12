"""Match-key normalisation and hashing (contract §2.1)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

import pytest

from crm_postback.core.privacy import (
    MAX_EMAIL_LENGTH,
    MAX_EXTERNAL_ID_LENGTH,
    MAX_PHONE_LENGTH,
    MatchKeyError,
    hash_email,
    hash_external_id,
    hash_phone,
    is_sha256_hex,
    looks_like_email,
    looks_like_phone,
    normalize_email,
    normalize_external_id,
    normalize_phone,
    sha256_hex,
)

ALICE_SHA = "ff8d9819fc0e12bf0d24892e45987e249a28dce836a85cad60e28eaaa8c6d976"
PHONE_SHA = "9f7ec22d72092cd3c0b58726ed9c2d91b92e51a3f29837508fb2948bb22dd2fd"
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_known_answer_vectors_match_hashlib() -> None:
    assert _sha("alice@example.com") == ALICE_SHA
    assert _sha("+12133734253") == PHONE_SHA
    assert sha256_hex("alice@example.com") == ALICE_SHA
    assert sha256_hex("+12133734253") == PHONE_SHA


# --- email -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["alice@example.com", "  Alice@Example.COM  ", "\tALICE@EXAMPLE.COM\n"],
)
def test_email_is_trimmed_and_lowercased_before_hashing(raw: str) -> None:
    assert normalize_email(raw) == "alice@example.com"
    assert hash_email(raw) == ALICE_SHA


def test_email_with_other_case_hashes_differently_from_unnormalised_hash() -> None:
    # Guards against hashing the raw text: sha256 of the raw mixed-case value is different.
    assert hash_email(" Alice@Example.com ") != _sha(" Alice@Example.com ")


@pytest.mark.parametrize(
    "raw",
    [
        "alice.example.com",
        "alice@",
        "@example.com",
        "alice@example",
        "alice smith@example.com",
        "alice@@example.com",
        "",
        "   ",
    ],
)
def test_invalid_email_raises_without_echoing_the_value(raw: str) -> None:
    with pytest.raises(MatchKeyError) as info:
        hash_email(raw)
    assert info.value.field == "email"
    if raw.strip():
        assert raw.strip() not in str(info.value)
        assert raw.strip() not in info.value.reason


def test_email_error_never_contains_the_local_part() -> None:
    with pytest.raises(MatchKeyError) as info:
        normalize_email("secret.person@nodot")
    assert "secret.person" not in str(info.value)
    assert "nodot" not in str(info.value)


# --- phone -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("(213) 373-4253", "US", "+12133734253"),
        ("+1 213 373 4253", "US", "+12133734253"),
        ("+1 213 373 4253", "GB", "+12133734253"),  # explicit +country beats the region
        ("001 213 373 4253", "US", "+12133734253"),
        ("001 213 373 4253", "DE", "+12133734253"),
        ("(+1)2133734253", "US", "+12133734253"),  # TikTok's own example
        ("  213.373.4253 ", "US", "+12133734253"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("+44 20 7946 0958", "US", "+442079460958"),
        ("030 12345678", "DE", "+493012345678"),
        ("0049 30 12345678", "US", "+493012345678"),
        ("06 12 34 56 78", "FR", "+33612345678"),  # leading trunk 0 dropped
        ("+33 06 12 34 56 78", "FR", "+33612345678"),  # trunk 0 after +country dropped too
    ],
)
def test_phone_normalised_to_e164(raw: str, region: str, e164: str) -> None:
    assert normalize_phone(raw, region) == e164
    assert hash_phone(raw, region) == _sha(e164)


def test_us_phone_hash_matches_known_vector() -> None:
    assert hash_phone("(213) 373-4253", "US") == PHONE_SHA


def test_region_changes_meaning_of_national_number() -> None:
    assert normalize_phone("020 7946 0958", "GB") == "+442079460958"
    assert normalize_phone("2133734253", "US") == "+12133734253"
    assert normalize_phone("2133734253", "US") != normalize_phone("2133734253", "DE")


@pytest.mark.parametrize(
    "raw",
    ["abc", "call me", "n/a", "not-a-phone", "+", "", "   ", "phone number unknown"],
)
def test_garbage_phone_rejected_without_echoing_the_value(raw: str) -> None:
    with pytest.raises(MatchKeyError) as info:
        hash_phone(raw, "US")
    assert info.value.field == "phone"
    if raw.strip():
        assert raw.strip() not in str(info.value)


@pytest.mark.parametrize("raw", ["12", "123", "4253", "+1 213", "21337342531234567"])
def test_too_short_or_too_long_phone_rejected(raw: str) -> None:
    with pytest.raises(MatchKeyError) as info:
        normalize_phone(raw, "US")
    assert info.value.field == "phone"
    assert raw not in str(info.value)


@pytest.mark.parametrize("raw", ["213-373-ABCD", "555-CALL-NOW"])
def test_phone_with_letters_rejected(raw: str) -> None:
    with pytest.raises(MatchKeyError) as info:
        normalize_phone(raw, "US")
    assert info.value.field == "phone"
    assert raw not in str(info.value)


# --- external_id -----------------------------------------------------------------------------


def test_external_id_trimmed_and_lowercased() -> None:
    assert normalize_external_id("  Lead-ABC-42 ") == "lead-abc-42"
    assert hash_external_id("  Lead-ABC-42 ") == _sha("lead-abc-42")
    assert hash_external_id("LEAD-abc-42") == hash_external_id("lead-ABC-42")


@pytest.mark.parametrize("raw", ["", "   ", "\t"])
def test_empty_external_id_rejected(raw: str) -> None:
    with pytest.raises(MatchKeyError) as info:
        hash_external_id(raw)
    assert info.value.field == "external_id"


# --- already-hashed values -------------------------------------------------------------------

Hasher = Callable[[str], str]
HASHERS: list[tuple[str, Hasher]] = [
    ("email", hash_email),
    ("phone", lambda raw: hash_phone(raw, "US")),
    ("external_id", hash_external_id),
]


@pytest.mark.parametrize(("kind", "hasher"), HASHERS, ids=[k for k, _ in HASHERS])
@pytest.mark.parametrize("digest", [ALICE_SHA, ALICE_SHA.upper(), f"  {ALICE_SHA.upper()}  "])
def test_existing_sha256_passed_through_lowercased(kind: str, hasher: Hasher, digest: str) -> None:
    result = hasher(digest)
    assert result == ALICE_SHA
    assert result != _sha(ALICE_SHA)  # not hashed a second time
    assert HEX64.match(result)


@pytest.mark.parametrize(
    "value",
    [ALICE_SHA[:63], ALICE_SHA + "0", ALICE_SHA[:63] + "g", ""],
)
def test_is_sha256_hex_rejects_near_misses(value: str) -> None:
    assert not is_sha256_hex(value)


def test_near_miss_hex_external_id_is_hashed_not_passed_through() -> None:
    near = ALICE_SHA[:63]
    assert hash_external_id(near) == _sha(near)


@pytest.mark.parametrize(("kind", "hasher"), HASHERS, ids=[k for k, _ in HASHERS])
def test_every_hash_is_lowercase_hex(kind: str, hasher: Hasher) -> None:
    raw = {"email": "Bob@Example.org", "phone": "+1 213 373 4253", "external_id": "X-1"}[kind]
    assert HEX64.match(hasher(raw))


# --- length limits and the shapes of personal data ------------------------------------------


@pytest.mark.parametrize(
    ("normalize", "field", "limit"),
    [
        (normalize_email, "email", MAX_EMAIL_LENGTH),
        (lambda raw: normalize_phone(raw, "US"), "phone", MAX_PHONE_LENGTH),
        (normalize_external_id, "external_id", MAX_EXTERNAL_ID_LENGTH),
    ],
)
def test_each_key_has_a_length_limit_checked_first(
    normalize: Callable[[str], str], field: str, limit: int
) -> None:
    with pytest.raises(MatchKeyError) as refused:
        normalize("a@" + "." * 30_000 + "@")  # quadratic for the pattern this replaced
    assert (refused.value.field, refused.value.reason) == (field, f"longer than {limit} characters")


def test_an_address_of_254_characters_is_still_an_address() -> None:
    address = "a" * 242 + "@example.com"
    assert len(address) == MAX_EMAIL_LENGTH
    assert normalize_email(address) == address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("jane@example.com", True),
        ("sold to Jane@Example.COM today", True),
        ("a@b@c.de", True),
        ("a@b.c", False),  # one letter after the dot
        ("@example.com", False),
        ("a@.com", False),
        ("a@b", False),
        ("example.com", False),
        ("a@" + "." * 100_000, False),
    ],
)
def test_looks_like_email(text: str, expected: bool) -> None:
    assert looks_like_email(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+12133734253", True),
        ("+1 213 373 4253", True),
        ("(213) 373-4253", True),
        ("213-373-4253", True),
        ("213.373.4253", True),
        ("0044 20 7946 0958", True),
        ("2133734253", False),  # bare digits: a numeric id as much as a number
        ("123456", False),
        ("7311111111111111111", False),
        ("L-1001", False),
        ("2024-11-21", False),
        ("2024-11-21-0001", False),
        ("123-456-7890", False),  # not a valid US number
        ("+1001", False),  # too few digits
        ("+" + "1" * 16, False),  # too many
        ("1" * 40, False),
    ],
)
def test_looks_like_phone(text: str, expected: bool) -> None:
    assert looks_like_phone(text, "US") is expected


PHONE_REGIONS = ["US", "DE", "AT", "FR", "NL", "JP"]
# Dates, versions, timestamps and grouped ids: phonenumbers calls some of them possible
# numbers in some region; none is a valid number written as one.
ORDINARY_IDS = [
    "2024-01-15-0001",
    "2024.01.15",
    "2024/01/15",
    "98765-43210",
    "1700000000.123",
    "15.01.2024",
    "1234-5678",
    "1.2.3.4567",
    "3.14159265",
    "100 200 300",
    "L-1001",
    "123456",
    "2133734253",
    "E.C.P.abc-123",
    "550e8400-e29b-41d4-a716-446655440000",
    "ord_2024-01-15",
]


@pytest.mark.parametrize("region", PHONE_REGIONS)
@pytest.mark.parametrize("text", ORDINARY_IDS)
def test_ids_shaped_like_dates_or_groups_are_not_phone_shaped(text: str, region: str) -> None:
    assert looks_like_phone(text, region) is False


@pytest.mark.parametrize(
    ("text", "region"),
    [
        ("+1 213 373 4253", "US"),
        ("(213) 373-4253", "US"),
        ("030 1234567", "DE"),
        ("+49 30 1234567", "DE"),
        ("0044 20 7946 0958", "DE"),
        ("+49 30 1234567", "JP"),  # international: the region does not matter
        ("  +12133734253  ", "FR"),
    ],
)
def test_valid_numbers_written_as_numbers_are_phone_shaped(text: str, region: str) -> None:
    assert looks_like_phone(text, region) is True


@pytest.mark.parametrize("text", ["+1 213 373 4253 " + "0" * 20, "(213) 373-4253" * 3])
def test_phone_shape_is_not_looked_for_beyond_32_characters(text: str) -> None:
    assert looks_like_phone(text, "US") is False
