"""Reading request bodies: a size limit before anything is parsed, then strict JSON."""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_postback.core.settings import get_settings
from crm_postback.web.errors import (
    BodyTooLarge,
    RequestRejected,
    error_response,
    too_large,
)
from crm_postback.web.shapes import Problem


class BodySizeLimit:
    """413 for a body over MAX_REQUEST_BYTES: at once when Content-Length says so, otherwise
    as soon as the streamed body passes the limit (chunked uploads are never read whole)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = get_settings().max_request_bytes
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await error_response(413, [too_large(limit)])(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError("a number too large to store")
    return number


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


async def read_json(request: Request) -> Any:
    """The parsed body; 422 for anything that is not strict JSON (no NaN or Infinity)."""
    # Any Content-Type is read as JSON: `curl -d` without -H is a common first try.
    raw = await request.body()
    try:
        return json.loads(raw, parse_float=_finite, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        message = f"is not valid JSON ({error.msg} at line {error.lineno} column {error.colno})"
    except (ValueError, RecursionError) as error:
        message = f"is not valid JSON ({error if isinstance(error, ValueError) else 'too deep'})"
    raise RequestRejected(422, [Problem(pointer="", field="body", message=message)])
