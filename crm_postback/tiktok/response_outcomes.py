"""The one place that decides what a TikTok answer means (contract §4.1, §4.2).

Only an answer in TikTok's envelope (a JSON object with an integer `code` within the stored
column's range; `message` optional) speaks for TikTok: only such an answer can reject events.
Anything else that comes back (an HTML error page, a JSON without the envelope, a body too
large to be TikTok's) is a delivery problem: a 2xx, the edge's 408/409/425/429/5xx are retried
(transient, throttled) as documented, and every other status means the request did not reach
TikTok (a wrong base URL, a proxy).

What an answer leaves in the database and the logs is bounded here, so nothing TikTok (or
whatever answered) sends can overflow a column: see the *_CHARS and CODE_* constants.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    DELIVERED = "delivered"
    THROTTLED = "throttled"  # retry later, slower
    TRANSIENT = "transient"  # retry on the ladder
    AUTH = "auth"  # token or permission problem: pause the event set, keep the events
    INVALID = "invalid"  # TikTok rejected the payload: final for the event
    # Answered, but not by TikTok (no envelope, a non-2xx status TikTok's edge does not use):
    # retry on the ladder and pause the event set until an operator fixed the address or the
    # proxy.
    NOT_TIKTOK = "not_tiktok"


DELIVERED_CODES = frozenset({0, 20001, 40050})  # 20001 partial OK, 40050 duplicated request
THROTTLE_CODES = frozenset({40100, 40132, 61000})
AUTH_CODES = frozenset({40001, 40003, 40102, 40104, 40105})
INVALID_CODES = frozenset({40000, 40002, 40061, 40062, 40063})
TRANSIENT_CODES = frozenset({50000, 50002, 60001})
# HTTP statuses of TikTok's edge without a body code (contract §4.2: "HTTP 429 / 5xx with no
# JSON: retry"); 408, 409 and 425 ask for the same request again.
RETRY_STATUSES = frozenset({408, 409, 425})

# The columns an answer is stored in (models.postbacks: `code` INTEGER, `request_id`
# VARCHAR(128), messages cut to 2,000 characters). A code outside INTEGER is not TikTok's.
CODE_MIN, CODE_MAX = -(2**31), 2**31 - 1
REQUEST_ID_CHARS = 128
MESSAGE_CHARS = 2000
# No more of an answer is read: TikTok's are well under a kilobyte.
MAX_ANSWER_BYTES = 1_000_000

_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}/[A-Za-z0-9!#$&^_.+-]{1,64}")


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
    """An answer without TikTok's envelope, by its HTTP status alone."""
    if http_status == 429:
        return Outcome.THROTTLED
    # A 2xx without the envelope may be TikTok's own answer cut or garbled on the way: retried
    # like an error of the edge, without pausing the set.
    if 200 <= http_status <= 299 or http_status >= 500 or http_status in RETRY_STATUSES:
        return Outcome.TRANSIENT
    # 1xx, 3xx and every other 4xx without TikTok's body: something else answered.
    return Outcome.NOT_TIKTOK


def classify_response(
    http_status: int, body: Any, duration_ms: int | None = None, *, described: str | None = None
) -> Answer:
    """`body` is the parsed JSON (None when there was none). TikTok's envelope decides first
    (TikTok answers business errors with HTTP 200), the HTTP status only without one.
    `described` says what came instead of an envelope, for the message."""
    envelope = _envelope(body)
    if envelope is not None:
        code, message, request_id = envelope
        return Answer(
            outcome=classify_code(code),
            http_status=http_status,
            code=code,
            message=message,
            request_id=request_id,
            duration_ms=duration_ms,
        )
    what = described or _describe(body)
    return Answer(
        outcome=classify_status(http_status),
        http_status=http_status,
        code=None,
        message=f"HTTP {http_status} without TikTok's response envelope ({what})",
        request_id=None,
        duration_ms=duration_ms,
    )


def classify_answer(
    http_status: int,
    raw: bytes,
    *,
    content_type: str | None,
    complete: bool,
    duration_ms: int | None = None,
) -> Answer:
    """An answer as read off the wire: at most MAX_ANSWER_BYTES of its body (`complete`
    False when there was more), and its Content-Type header."""
    media_type = _media_type(content_type)
    if not complete:
        return classify_response(
            http_status,
            None,
            duration_ms,
            described=f"{media_type}, over {MAX_ANSWER_BYTES:,} bytes; not read further",
        )
    body = _parse_json(raw)
    described = None
    if body is None:
        described = f"{media_type}, {len(raw):,} bytes, not JSON" if raw else "an empty body"
    return classify_response(http_status, body, duration_ms, described=described)


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


def classify_deadline(
    seconds: float, http_status: int | None = None, duration_ms: int | None = None
) -> Answer:
    """No complete answer within the request's total deadline: ambiguous, like a timeout."""
    started = f"HTTP {http_status}, " if http_status is not None else ""
    return Answer(
        outcome=Outcome.TRANSIENT,
        http_status=http_status,
        code=None,
        message=f"no complete answer within the {seconds:g} s deadline ({started}given up)",
        request_id=None,
        duration_ms=duration_ms,
    )


def _envelope(body: Any) -> tuple[int, str, str | None] | None:
    """(code, message, request_id) of TikTok's envelope, bounded to their columns; None when
    `body` is not one."""
    if not isinstance(body, dict):
        return None
    code = body.get("code")
    # type() rather than isinstance(): JSON true is not a code.
    if type(code) is not int or not CODE_MIN <= code <= CODE_MAX:
        return None
    request_id = body.get("request_id")
    # TikTok's request_id is a string; anything else names no request we could quote.
    bounded_id = request_id[:REQUEST_ID_CHARS] if isinstance(request_id, str) else None
    return code, _message_text(body.get("message")), bounded_id or None


def _message_text(message: Any) -> str:
    """The envelope's message as stored: a string or a number's text, cut to the column;
    empty when there is none (missing, null, an array or object)."""
    if isinstance(message, str):
        return message[:MESSAGE_CHARS]
    if isinstance(message, bool | int | float):
        # Bounded: json.loads refuses integers over 4,300 digits.
        return json.dumps(message)[:MESSAGE_CHARS]
    return ""


def _parse_json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, digits beyond int's limit
        return None


def _describe(body: Any) -> str:
    if body is None:
        return "no JSON body"
    if isinstance(body, dict):
        return "a JSON object without an integer code"
    if isinstance(body, list):
        return "a JSON array"
    return f"a JSON {type(body).__name__}"


def _media_type(content_type: str | None) -> str:
    """The header's media type when it looks like one; never the header's own text else."""
    if content_type:
        match = _MEDIA_TYPE.match(content_type.strip())
        if match:
            return match.group(0).lower()
    return "no media type"
