"""What a TikTok answer means (contract §4.1, §4.2): only TikTok's envelope speaks for TikTok."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from crm_postback.tiktok.response_outcomes import (
    CODE_MAX,
    CODE_MIN,
    MAX_ANSWER_BYTES,
    MESSAGE_CHARS,
    REQUEST_ID_CHARS,
    Answer,
    Outcome,
    classify_answer,
    classify_code,
    classify_deadline,
    classify_network_error,
    classify_response,
    classify_status,
)
from models import DeliveryAttempt, Postback

CODE_TABLE: list[tuple[int, Outcome]] = [
    (0, Outcome.DELIVERED),
    (20001, Outcome.DELIVERED),  # partial OK
    (40050, Outcome.DELIVERED),  # duplicated request
    (40100, Outcome.THROTTLED),
    (40132, Outcome.THROTTLED),
    (61000, Outcome.THROTTLED),
    (40001, Outcome.AUTH),
    (40102, Outcome.AUTH),
    (40104, Outcome.AUTH),
    (40105, Outcome.AUTH),
    (40000, Outcome.INVALID),
    (40002, Outcome.INVALID),
    (40061, Outcome.INVALID),
    (40062, Outcome.INVALID),
    (40063, Outcome.INVALID),
    (50000, Outcome.TRANSIENT),
    (50002, Outcome.TRANSIENT),
    (51000, Outcome.TRANSIENT),
    (51012, Outcome.TRANSIENT),
    (51054, Outcome.TRANSIENT),
    (52001, Outcome.TRANSIENT),
    (53999, Outcome.TRANSIENT),
    (60001, Outcome.TRANSIENT),
    (99999, Outcome.TRANSIENT),  # unknown: retried
    (1, Outcome.TRANSIENT),
    (40999, Outcome.INVALID),  # unknown 4xxxx: parameter-type error
    (41234, Outcome.INVALID),
    (49999, Outcome.INVALID),
]


@pytest.mark.parametrize(("code", "outcome"), CODE_TABLE)
def test_classify_code(code: int, outcome: Outcome) -> None:
    assert classify_code(code) is outcome


@pytest.mark.parametrize(("code", "outcome"), CODE_TABLE)
def test_body_code_classified_with_http_200(code: int, outcome: Outcome) -> None:
    body = {"code": code, "message": f"msg {code}", "request_id": "req-1", "data": {}}
    answer = classify_response(200, body)
    assert answer.outcome is outcome
    assert answer.code == code
    assert answer.http_status == 200


STATUS_TABLE: list[tuple[int, Outcome]] = [
    (429, Outcome.THROTTLED),
    (500, Outcome.TRANSIENT),
    (502, Outcome.TRANSIENT),
    (503, Outcome.TRANSIENT),
    (504, Outcome.TRANSIENT),
    # Without TikTok's envelope no 4xx rejects events or blames the token: a proxy, a wrong
    # base URL or a firewall answered.
    (401, Outcome.NOT_TIKTOK),
    (403, Outcome.NOT_TIKTOK),
    (400, Outcome.NOT_TIKTOK),
    (404, Outcome.NOT_TIKTOK),
    (413, Outcome.NOT_TIKTOK),
    (418, Outcome.NOT_TIKTOK),
    (301, Outcome.NOT_TIKTOK),
    (200, Outcome.TRANSIENT),
    (204, Outcome.TRANSIENT),
    (408, Outcome.TRANSIENT),
    (409, Outcome.TRANSIENT),
    (425, Outcome.TRANSIENT),
]


@pytest.mark.parametrize(("status", "outcome"), STATUS_TABLE)
def test_http_status_without_body(status: int, outcome: Outcome) -> None:
    assert classify_status(status) is outcome
    for body in (None, "<html>Bad Gateway</html>", {}, {"message": "no code"}, [], {"code": "0"}):
        answer = classify_response(status, body)
        assert answer.outcome is outcome, body
        assert answer.code is None
        assert answer.request_id is None
        assert answer.http_status == status
        assert str(status) in answer.message


@pytest.mark.parametrize("status", [200, 201, 204, 299])
@pytest.mark.parametrize("body", [None, "", "OK", {}, {"code": "0"}, {"message": "ok"}])
def test_2xx_without_tiktok_body_is_transient(status: int, body: Any) -> None:
    """Not delivered and not TikTok's word, but a 2xx may be TikTok's own answer garbled on
    the way: retried on the ladder, the event set not paused."""
    answer = classify_response(status, body)
    assert answer.outcome is Outcome.TRANSIENT
    assert answer.code is None
    assert "without TikTok's response envelope" in answer.message


@pytest.mark.parametrize("status", [100, 301, 302, 304, 400, 401, 403, 404, 405, 413, 451])
def test_only_a_non_2xx_answer_tiktoks_edge_does_not_use_is_not_tiktoks(status: int) -> None:
    assert classify_response(status, None).outcome is Outcome.NOT_TIKTOK


@pytest.mark.parametrize(
    ("status", "code", "outcome"),
    [
        (500, 0, Outcome.DELIVERED),
        (429, 0, Outcome.DELIVERED),
        (200, 40100, Outcome.THROTTLED),
        (500, 40002, Outcome.INVALID),
        (400, 50000, Outcome.TRANSIENT),
        (401, 40100, Outcome.THROTTLED),
        (503, 40105, Outcome.AUTH),
    ],
)
def test_body_code_wins_over_http_status(status: int, code: int, outcome: Outcome) -> None:
    answer = classify_response(status, {"code": code, "message": "m"})
    assert answer.outcome is outcome
    assert answer.http_status == status
    assert answer.code == code


def test_request_id_message_and_duration_carried() -> None:
    body = {
        "code": 40002,
        "message": "Invalid value for event_id: not a valid string.",
        "request_id": "2023031413000000000000000000",
    }
    answer = classify_response(200, body, duration_ms=123)
    assert answer == Answer(
        outcome=Outcome.INVALID,
        http_status=200,
        code=40002,
        message="Invalid value for event_id: not a valid string.",
        request_id="2023031413000000000000000000",
        duration_ms=123,
    )


@pytest.mark.parametrize(
    "body",
    [
        {"code": 0, "message": "OK"},
        {"code": 0, "message": "OK", "request_id": ""},
        {"code": 0, "message": "OK", "request_id": None},
        {"code": 0, "message": "OK", "request_id": 12345},  # not TikTok's: quotes nothing
        {"code": 0, "message": "OK", "request_id": ["x"]},
    ],
)
def test_an_envelope_without_a_usable_request_id_still_counts(body: dict[str, Any]) -> None:
    answer = classify_response(200, body)
    assert answer.outcome is Outcome.DELIVERED
    assert answer.request_id is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"code": 0}, ""),
        ({"code": 0, "message": None}, ""),
        ({"code": 0, "message": 7}, "7"),
        ({"code": 0, "message": 2.5}, "2.5"),
        ({"code": 0, "message": True}, "true"),
        ({"code": 0, "message": ["a", "b"]}, ""),
        ({"code": 0, "message": {"text": "OK"}}, ""),
        ({"code": 0, "message": 10**4000}, "1" + "0" * (MESSAGE_CHARS - 1)),
    ],
)
def test_the_message_is_optional_in_the_envelope(body: dict[str, Any], message: str) -> None:
    """{"code": 0, "message": null} was no envelope: resent, and the event set paused."""
    answer = classify_response(200, body)
    assert answer.outcome is Outcome.DELIVERED
    assert answer.code == 0
    assert answer.message == message


def test_a_rejection_without_a_message_still_rejects() -> None:
    answer = classify_response(200, {"code": 40002, "request_id": "r-1"})
    assert (answer.outcome, answer.message, answer.request_id) == (Outcome.INVALID, "", "r-1")


@pytest.mark.parametrize(
    "body",
    [
        {"code": CODE_MAX + 1, "message": "OK"},
        {"code": CODE_MIN - 1, "message": "OK"},
        {"code": 2**70, "message": "OK"},
        {"code": 0.0, "message": "OK"},
        {"code": "0", "message": "OK"},
        {"code": None, "message": "OK"},
        {"message": "OK"},
    ],
)
@pytest.mark.parametrize(
    ("status", "outcome"), [(200, Outcome.TRANSIENT), (404, Outcome.NOT_TIKTOK)]
)
def test_no_envelope_without_an_integer_code_in_range(
    body: Any, status: int, outcome: Outcome
) -> None:
    answer = classify_response(status, body)
    assert answer.outcome is outcome
    assert answer.code is None


def test_codes_at_the_column_bounds_are_kept() -> None:
    for code in (CODE_MIN, CODE_MAX):
        assert classify_response(200, {"code": code, "message": "m"}).code == code


def test_request_id_and_message_are_cut_to_their_columns() -> None:
    body = {"code": 40002, "message": "m" * 10_000, "request_id": "r" * 5_000}
    answer = classify_response(200, body)
    assert answer.request_id == "r" * REQUEST_ID_CHARS
    assert answer.message == "m" * MESSAGE_CHARS


def test_the_bounds_are_the_columns() -> None:
    """The contract may not import the tables; this keeps its bounds and theirs the same."""
    for column in (Postback.__table__.c.last_request_id, DeliveryAttempt.__table__.c.request_id):
        assert getattr(column.type, "length", None) == REQUEST_ID_CHARS


@pytest.mark.parametrize(
    ("raw", "content_type", "described"),
    [
        (b"<html>404</html>", "text/html; charset=utf-8", "text/html, 16 bytes, not JSON"),
        (b"\xff\xfe\x00", "application/json", "application/json, 3 bytes, not JSON"),
        (b"", None, "an empty body"),
        (b"[1]", "application/json", "a JSON array"),
        (b"{}", "application/json", "a JSON object without an integer code"),
        (b"[" * 50_000, None, "no media type, 50,000 bytes, not JSON"),
        (b'{"code": ' + b"9" * 5000 + b"}", None, "not JSON"),
        (b"x", "text/html\r\nSet-Cookie: a=b jane@example.com", "text/html, 1 bytes"),
        (b"x", "jane@example.com", "no media type"),
    ],
)
def test_an_answer_off_the_wire_is_described_not_quoted(
    raw: bytes, content_type: str | None, described: str
) -> None:
    answer = classify_answer(404, raw, content_type=content_type, complete=True)
    assert answer.outcome is Outcome.NOT_TIKTOK
    assert described in answer.message
    assert "jane" not in answer.message and "Set-Cookie" not in answer.message


def test_an_answer_off_the_wire_in_the_envelope_counts() -> None:
    raw = b'{"code": 40002, "message": "Invalid value for event_id", "request_id": "r-1"}'
    answer = classify_answer(200, raw, content_type="application/json", complete=True)
    assert (answer.outcome, answer.code, answer.request_id) == (Outcome.INVALID, 40002, "r-1")


@pytest.mark.parametrize(
    ("status", "outcome"), [(200, Outcome.TRANSIENT), (404, Outcome.NOT_TIKTOK)]
)
def test_an_answer_over_the_cap_is_not_parsed(status: int, outcome: Outcome) -> None:
    raw = b'{"code": 0, "message": "OK"}'
    answer = classify_answer(status, raw, content_type="application/json", complete=False)
    assert answer.outcome is outcome
    assert f"over {MAX_ANSWER_BYTES:,} bytes" in answer.message


def test_a_missed_deadline_is_ambiguous_like_a_timeout() -> None:
    answer = classify_deadline(30, 200, duration_ms=30_010)
    assert answer.outcome is Outcome.TRANSIENT
    assert "30 s deadline" in answer.message and answer.http_status == 200


@pytest.mark.parametrize(
    "error",
    [
        requests.Timeout("read timed out"),
        requests.ConnectionError("refused"),
        TimeoutError(),
        OSError("reset"),
    ],
)
def test_network_error_is_transient(error: Exception) -> None:
    answer = classify_network_error(error, duration_ms=3050)
    assert answer.outcome is Outcome.TRANSIENT
    assert answer.http_status is None
    assert answer.code is None
    assert answer.request_id is None
    assert answer.duration_ms == 3050
    assert type(error).__name__ in answer.message


def test_outcome_values_are_stable_strings() -> None:
    assert {o.value for o in Outcome} == {
        "delivered",
        "throttled",
        "transient",
        "auth",
        "invalid",
        "not_tiktok",
    }
    outcome_chars = getattr(DeliveryAttempt.__table__.c.outcome.type, "length", 0)
    assert all(len(o.value) <= outcome_chars for o in Outcome)
    assert Outcome.DELIVERED == "delivered"


def test_boolean_code_is_not_a_tiktok_code() -> None:
    answer = classify_response(200, {"code": False, "message": "OK"})
    assert answer.outcome is Outcome.TRANSIENT
    assert answer.code is None
