"""HTTP responses the simulator sends, independent of the server plumbing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

JSON = "application/json; charset=utf-8"
HTML = "text/html; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = JSON
    # TikTok's body code, when there is one; counted in the simulator's stats.
    code: int | None = None


def json_response(payload: object, status: int = 200) -> Response:
    return Response(status, json.dumps(payload, separators=(",", ":")).encode())


def envelope(
    code: int,
    message: str,
    request_id: str,
    data: dict[str, Any] | None = None,
    *,
    status: int = 200,
) -> Response:
    """TikTok's response envelope; business errors travel in `code` with HTTP 200."""
    payload = {"code": code, "message": message, "request_id": request_id, "data": data or {}}
    return Response(status, json.dumps(payload, separators=(",", ":")).encode(), code=code)


def html_response(status: int, title: str) -> Response:
    body = (
        f"<html><head><title>{title}</title></head><body><center><h1>{title}</h1></center>"
        "<hr><center>nginx</center></body></html>"
    )
    return Response(status, body.encode(), content_type=HTML)


def control_error(message: str, status: int = 400) -> Response:
    return json_response({"error": message}, status)
