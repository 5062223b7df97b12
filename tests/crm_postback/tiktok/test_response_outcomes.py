"""What a TikTok answer means (contract §4.2)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from crm_postback.tiktok.response_outcomes import (
    Answer,
    Outcome,
    classify_code,
    classify_network_error,
    classify_response,
    classify_status,
)

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
    (401, Outcome.AUTH),
    (403, Outcome.AUTH),
    (400, Outcome.INVALID),
    (404, Outcome.INVALID),
    (413, Outcome.INVALID),
    (408, Outcome.TRANSIENT),
    (409, Outcome.TRANSIENT),
    (425, Outcome.TRANSIENT),
]


@pytest.mark.parametrize(("status", "outcome"), STATUS_TABLE)
def test_http_status_without_body(status: int, outcome: Outcome) -> None:
    assert classify_status(status) is outcome
    for body in (None, "<html>Bad Gateway</html>", {}, {"message": "no code"}, []):
        answer = classify_response(status, body)
        assert answer.outcome is outcome, body
        assert answer.code is None
        assert answer.request_id is None
        assert answer.http_status == status
        assert str(status) in answer.message


@pytest.mark.parametrize("status", [200, 201, 204, 299])
@pytest.mark.parametrize("body", [None, "", "OK", {}, {"code": "0"}, {"message": "ok"}])
def test_2xx_without_tiktok_body_is_transient(status: int, body: Any) -> None:
    answer = classify_response(status, body)
    assert answer.outcome is Outcome.TRANSIENT
    assert answer.code is None


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
    ("body", "message", "request_id"),
    [
        ({"code": 0}, "", None),
        ({"code": 0, "message": None, "request_id": ""}, "", None),
        ({"code": 0, "message": "OK", "request_id": 12345}, "OK", "12345"),
    ],
)
def test_missing_message_and_request_id(
    body: dict[str, Any], message: str, request_id: str | None
) -> None:
    answer = classify_response(200, body)
    assert answer.message == message
    assert answer.request_id == request_id


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
    assert {o.value for o in Outcome} == {"delivered", "throttled", "transient", "auth", "invalid"}
    assert Outcome.DELIVERED == "delivered"


def test_boolean_code_is_not_a_tiktok_code() -> None:
    answer = classify_response(200, {"code": False})
    assert answer.outcome is Outcome.TRANSIENT
    assert answer.code is None
