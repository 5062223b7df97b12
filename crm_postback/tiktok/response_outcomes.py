"""The one place that decides what a TikTok answer means (contract §4.2)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    DELIVERED = "delivered"
    THROTTLED = "throttled"  # retry later, slower
    TRANSIENT = "transient"  # retry on the ladder
    AUTH = "auth"  # token or permission problem: pause the event set, keep the events
    INVALID = "invalid"  # TikTok rejected the payload: final for the event


DELIVERED_CODES = frozenset({0, 20001, 40050})  # 20001 partial OK, 40050 duplicated request
THROTTLE_CODES = frozenset({40100, 40132, 61000})
AUTH_CODES = frozenset({40001, 40003, 40102, 40104, 40105})
INVALID_CODES = frozenset({40000, 40002, 40061, 40062, 40063})
TRANSIENT_CODES = frozenset({50000, 50002, 60001})


@dataclass(frozen=True)
class Answer:
    outcome: Outcome
    http_status: int | None
    code: int | None
    message: str
    request_id: str | None
    duration_ms: int | None = None


def classify_code(code: int) -> Outcome:
    if code in DELIVERED_CODES:
        return Outcome.DELIVERED
    if code in THROTTLE_CODES:
        return Outcome.THROTTLED
    if code in AUTH_CODES:
        return Outcome.AUTH
    if code in INVALID_CODES:
        return Outcome.INVALID
    if code in TRANSIENT_CODES or 51000 <= code <= 53999:
        return Outcome.TRANSIENT
    if 40000 <= code <= 49999:
        return Outcome.INVALID
    # Unknown codes are retried: the ladder bounds the cost, and dropping an event is worse.
    return Outcome.TRANSIENT


def classify_status(http_status: int) -> Outcome:
    if http_status == 429:
        return Outcome.THROTTLED
    if http_status in (401, 403):
        return Outcome.AUTH
    if 400 <= http_status < 500 and http_status not in (408, 409, 425):
        return Outcome.INVALID
    return Outcome.TRANSIENT


def classify_response(http_status: int, body: Any, duration_ms: int | None = None) -> Answer:
    """Body `code` first (TikTok answers business errors with HTTP 200), HTTP status second."""
    code = body.get("code") if isinstance(body, dict) else None
    if isinstance(code, int) and not isinstance(code, bool):
        return Answer(
            outcome=classify_code(code),
            http_status=http_status,
            code=code,
            message=str(body.get("message") or ""),
            request_id=_request_id(body),
            duration_ms=duration_ms,
        )
    # A 2xx without a TikTok body is ambiguous; resending is safe because event_id dedups.
    outcome = classify_status(http_status) if http_status >= 300 else Outcome.TRANSIENT
    return Answer(
        outcome=outcome,
        http_status=http_status,
        code=None,
        message=f"HTTP {http_status} without a TikTok response body",
        request_id=None,
        duration_ms=duration_ms,
    )


def classify_network_error(error: Exception, duration_ms: int | None = None) -> Answer:
    """Timeouts and connection errors: ambiguous, so retried with the same event_id."""
    return Answer(
        outcome=Outcome.TRANSIENT,
        http_status=None,
        code=None,
        message=f"{type(error).__name__}: no answer from TikTok",
        request_id=None,
        duration_ms=duration_ms,
    )


def _request_id(body: dict[str, Any]) -> str | None:
    value = body.get("request_id")
    return str(value) if value else None
