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
    ("raw", "normal"),
    [
        ("en-US", "en-US"),
        ("en_US", "en-US"),
        ("zh-Hant-TW", "zh-Hant-TW"),
        ("es-419", "es-419"),
        ("de", "de"),
        ("sr-Latn", "sr-Latn"),
    ],
)
def test_locale_is_a_bcp47_tag(raw: str, normal: str) -> None:
    assert normalize_locale(raw) == normal


@pytest.mark.parametrize(
    "raw",
    [
        "englishlang",
        "e",
        "en--US",
        "en US",
        "<script>",
        # Subtags past language-script-region carry anything (the attacker's cases).
        "en-415-555-0188",
        "en-x-jane-doe",
        "en-US-x-14155550",
        "de-DE-1996",
        "en-US-u-ca-gregory",
    ],
)
def test_a_locale_that_is_no_tag_does_not_normalise(raw: str) -> None:
    with pytest.raises(MatchKeyError):
        normalize_locale(raw)


def test_a_page_url_loses_userinfo_fragment_and_every_parameter_but_marketing_ones() -> None:
    page = sanitize_page_url(
        "page.url",
        "https://jane:secret@acme.example/offer?utm_source=tt&email=jane%40example.com"
        "&ph=%2B1+213+373+4253&jane@example.com=1&q=a%20b&ttclid=E.C.P.click-7#frag",
    )
    assert page.url == "https://acme.example/offer?utm_source=tt&ttclid=E.C.P.click-7"
    assert page.ttclid == "E.C.P.click-7"


def test_marketing_parameters_are_kept_as_written() -> None:
    url = (
        "http://acme.example:8080/a/b?UTM_Source=tik%20tok&utm_campaign=spring_2024-03-01"
        "&campaign_id=1790000000000000001&adgroup_id=1790000000000000002&ad_id=17900000000000003"
        "&gclid=Cj0KCQjw&fbclid=IwAR2x&msclkid=5f1c&ttclid=E.C.P.v3-1&utm_term="
    )
    page = sanitize_page_url("page.url", url)
    assert page.url == url
    assert page.ttclid == "E.C.P.v3-1"


# The review's and the attacker's cases: personal data by name, in the path, in a path
# parameter, encoded twice, as a bare or "+" phone, full width. Each is gone from the URL.
PERSONAL_URLS = [
    (
        "https://x.example/t?first_name=John&last_name=Doe&city=Boston&zip=02134"
        "&address=742+Evergreen+Terrace&utm_source=tt",
        "https://x.example/t?utm_source=tt",
    ),
    ("https://x.example/thanks/john.doe@example.com?a=1", "https://x.example/thanks"),
    ("https://x.example/thanks/john.doe@example.com/done", "https://x.example/thanks"),
    ("https://x.example/u/john.doe%40example.com", "https://x.example/u"),
    ("https://x.example/u/john.doe%2540example.com/x", "https://x.example/u"),
    ("https://x.example/u/john.doe\uff20example.com", "https://x.example/u"),
    ("https://x.example/t;email=john@example.com", "https://x.example/t"),
    ("https://x.example/t;jsessionid=abc/next", "https://x.example/t/next"),
    ("https://x.example/t?tel=2133734253", "https://x.example/t"),
    ("https://x.example/t?phone=4155550188&utm_medium=cpc", "https://x.example/t?utm_medium=cpc"),
    ("https://x.example/t?email=john%2540example.com", "https://x.example/t"),
    (
        "https://x.example/t?utm_content=john%2540example.com&utm_id=7",
        "https://x.example/t?utm_id=7",
    ),
    ("https://x.example/t?utm_term=+14155550123&utm_id=7", "https://x.example/t?utm_id=7"),
    ("https://x.example/t?utm_content=4155550188", "https://x.example/t"),
    ("https://x.example/t?utm_content=%28415%29%20555-0166", "https://x.example/t"),
    ("https://x.example/t?utm_content=j\uff20example.org", "https://x.example/t"),
    ("https://x.example/t?gclid=jane@example.org", "https://x.example/t"),
    ("https://x.example/call/415-555-0188/now", "https://x.example/call"),
    ("https://x.example/p/%252B1%2520415%2520555%25200188", "https://x.example/p"),
    ("https://x.example/%2B14155550123", "https://x.example/"),
]


@pytest.mark.parametrize(("raw", "kept"), PERSONAL_URLS)
def test_personal_data_never_stays_in_a_page_url(raw: str, kept: str) -> None:
    page = sanitize_page_url("page.referrer", raw)
    assert page.url == kept
    for secret in ("john", "John", "Doe", "Boston", "02134", "Evergreen", "4155550", "555"):
        assert secret not in page.url


def test_a_url_ttclid_that_is_not_storable_is_not_taken() -> None:
    page = sanitize_page_url("page.url", "https://acme.example/?ttclid=abc%00def&utm_id=1")
    assert (page.url, page.ttclid) == ("https://acme.example/?utm_id=1", None)


@pytest.mark.parametrize(
    "url",
    [
        "https://acme.example/blog/2024-03-01/post",
        "https://acme.example/p/123456",
        "https://203.0.113.7:8080/landing",
        "https://acme.example/",
        "https://acme.example",
    ],
)
def test_ordinary_paths_stay(url: str) -> None:
    assert sanitize_page_url("page.url", url).url == url


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
        sanitize_page_url("page.referrer", raw)
    assert error.value.field == "page.referrer"


def test_hostile_urls_cost_time_linear_in_their_size() -> None:
    """The URL limit bounds the work: 2,048 characters at most, each looked at a bounded
    number of times (no phone parser on query values or path segments)."""
    hostile = [
        "https://acme.example/?"
        + "&".join(f"utm_{i}=%2B44%2020%207946%200{i:03}" for i in range(90)),
        "https://acme.example/" + "/".join(f"%25252B44-20-7946-{i:04}x" for i in range(90)),
        "https://acme.example/?" + "&".join(f"p{i}=v{i}" for i in range(400)),
        "https://acme.example/" + ";a=b" * 500,
    ]
    started = time.process_time()
    for _ in range(10):
        for url in hostile:
            sanitize_page_url("page.url", url[:2048])
    per_url = (time.process_time() - started) / (10 * len(hostile))
    assert per_url < 0.005, per_url
