"""Normalising names, address parts, locale and page URLs (docs/match-keys.md has the rules)."""

from __future__ import annotations

import hashlib
import time

import pytest

from crm_postback.core.privacy import (
    MatchKeyError,
    hash_city,
    hash_country,
    hash_name,
    hash_state,
    hash_zip_code,
    normalize_country,
    normalize_locale,
    normalize_name,
    normalize_place,
    normalize_zip_code,
    sanitize_page_url,
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        (" Jane ", "jane"),
        ("Mary-Ann", "maryann"),
        ("O'Neil", "oneil"),
        ("van der Berg", "vanderberg"),
        ("ZOË", "zoë"),
        ("Zoe\u0308", "zoë"),  # decomposed: NFC first, so it hashes like the composed one
        ("José\t\n", "josé"),
        ("李 小龙", "李小龙"),
        ("Jane\u00a0Doe", "janedoe"),  # a no-break space is whitespace too
        ("jane@example.com", "janeexamplecom"),  # hashed like any name: nothing raw is kept
        ("R2-D2", "r2d2"),
    ],
)
def test_names_are_lowercase_without_whitespace_or_punctuation(raw: str, normal: str) -> None:
    assert normalize_name("first_name", raw) == normal
    assert hash_name("first_name", raw) == sha(normal)


@pytest.mark.parametrize("raw", ["...", " - ", "\u200b", "''"])
def test_a_name_of_punctuation_only_does_not_normalise(raw: str) -> None:
    with pytest.raises(MatchKeyError) as error:
        normalize_name("last_name", raw)
    assert error.value.field == "last_name" and raw not in str(error.value)


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("New York", "newyork"),
        ("St. Louis", "stlouis"),
        ("Zürich", "zürich"),
        ("Saint-Étienne", "saintétienne"),
        ("東京", "東京"),
        ("  CA ", "ca"),
        ("N.Y.", "ny"),
    ],
)
def test_places_keep_letters_and_digits_of_any_script(raw: str, normal: str) -> None:
    assert normalize_place("city", raw, 128) == normal
    assert hash_city(raw) == sha(normal) and hash_state(raw[:64]) == sha(normal)


@pytest.mark.parametrize(("raw", "code"), [("US", "us"), (" de ", "de"), ("G.B.", "gb")])
def test_a_country_is_an_alpha_2_code(raw: str, code: str) -> None:
    assert normalize_country(raw) == code
    assert hash_country(raw) == sha(code)


@pytest.mark.parametrize("raw", ["USA", "Germany", "u", "1a", "ü1"])
def test_a_country_name_is_not_guessed_into_a_code(raw: str) -> None:
    with pytest.raises(MatchKeyError, match="alpha-2"):
        normalize_country(raw)


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("94105", "94105"),
        ("94105-1234", "94105"),
        (" SW1A 1AA ", "sw1a1aa"),
        ("10115", "10115"),
        ("123-4567", "123-4567"),  # Japan: not a ZIP+4, kept
        ("941051234", "941051234"),  # no dash: not recognisably a ZIP+4
    ],
)
def test_zip_codes(raw: str, normal: str) -> None:
    assert normalize_zip_code(raw) == normal
    assert hash_zip_code(raw) == sha(normal)


@pytest.mark.parametrize(
    "hasher",
    [
        lambda raw: hash_name("first_name", raw),
        hash_city,
        hash_state,
        hash_country,
        hash_zip_code,
    ],
)
def test_a_64_hex_value_is_kept_lowercased_never_hashed_twice(hasher: object) -> None:
    digest = sha("jane")
    assert callable(hasher)
    assert hasher(f" {digest.upper()} ") == digest


@pytest.mark.parametrize(
    ("function", "limit"),
    [
        (lambda raw: normalize_name("first_name", raw), 128),
        (lambda raw: normalize_place("city", raw, 128), 128),
        (normalize_country, 64),
        (normalize_zip_code, 32),
        (normalize_locale, 35),
    ],
)
def test_each_key_has_a_length_limit_checked_first(function: object, limit: int) -> None:
    assert callable(function)
    with pytest.raises(MatchKeyError, match=f"longer than {limit}"):
        function("a" * (limit + 1))
    started = time.process_time()
    with pytest.raises(MatchKeyError):
        function("a" * 50_000_000)  # refused by its length, before anything reads it
    assert time.process_time() - started < 0.5


@pytest.mark.parametrize(
    ("raw", "normal"), [("en-US", "en-US"), ("en_US", "en-US"), ("zh-Hant-TW", "zh-Hant-TW")]
)
def test_locale_is_a_bcp47_tag(raw: str, normal: str) -> None:
    assert normalize_locale(raw) == normal


@pytest.mark.parametrize("raw", ["englishlang", "e", "en--US", "en US", "<script>"])
def test_a_locale_that_is_no_tag_does_not_normalise(raw: str) -> None:
    with pytest.raises(MatchKeyError):
        normalize_locale(raw)


def test_a_page_url_loses_userinfo_fragment_and_personal_parameters() -> None:
    page = sanitize_page_url(
        "page.url",
        "https://jane:secret@acme.example/offer?utm_source=tt&email=jane%40example.com"
        "&ph=%2B1+213+373+4253&jane@example.com=1&q=a%20b&ttclid=E.C.P.click-7#frag",
        "US",
    )
    assert page.url == "https://acme.example/offer?utm_source=tt&q=a%20b&ttclid=E.C.P.click-7"
    assert page.ttclid == "E.C.P.click-7"


def test_a_page_url_keeps_ordinary_parameters_as_written() -> None:
    url = "http://acme.example:8080/a/b?x=1&y=&z&lead=123456&d=2024-01-15"
    assert sanitize_page_url("page.url", url, "US").url == url
    assert sanitize_page_url("page.url", url, "US").ttclid is None


@pytest.mark.parametrize(
    "raw",
    [
        "javascript:alert(1)",
        "ftp://acme.example/",
        "acme.example/offer",
        "https://",
        "http://[::1",
        "https://acme.example:99999/",
        "https://acme.example/\x00",
        "https://acme.example/\x7f",
    ],
)
def test_what_is_no_http_url_does_not_normalise(raw: str) -> None:
    with pytest.raises(MatchKeyError) as error:
        sanitize_page_url("page.referrer", raw, "US")
    assert error.value.field == "page.referrer"


def test_a_long_query_costs_time_linear_in_its_size() -> None:
    def cost(n: int) -> float:
        url = "https://acme.example/?" + "&".join(f"p{i}=v{i}" for i in range(n))
        started = time.process_time()
        sanitize_page_url("page.url", url[:2048], "US")
        return time.process_time() - started

    assert cost(400) < 0.5  # the URL limit bounds the work: 2,048 characters at most
