"""Error answers: JSON pointers to each bad field, a human sentence, never an input value.

FastAPI's own 422 handler echoes the input; every handler here is replaced so that no value a
caller sent (a raw email or phone above all) can come back in a response or reach a log.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_postback.core.errors import FieldError
from crm_postback.web.shapes import Problem

log = logging.getLogger(__name__)

# A key a caller invented can itself be PII (an email or phone sent as a key name): only keys
# that look like plain identifiers are named in answers.
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")
REDACTED = "<redacted>"

_MESSAGES = {"missing": "is required", "extra_forbidden": "is not a known field"}


class RequestRejected(Exception):
    """Ends a request with `status` and `{"errors": [...]}`."""

    def __init__(
        self, status: int, problems: Sequence[Problem], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.status = status
        self.problems = list(problems)
        self.headers = headers


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over {limit} bytes")
        self.limit = limit


def _segment(part: str | int) -> str:
    if isinstance(part, int):
        return str(part)
    if not _PLAIN_KEY.fullmatch(part):
        return REDACTED
    return part.replace("~", "~0").replace("/", "~1")


def pointer(base: str, parts: Sequence[str | int]) -> str:
    """RFC 6901 pointer below `base` ("" is the whole document)."""
    return base + "".join("/" + _segment(p) for p in parts)


def dotted(parts: Sequence[str | int]) -> str:
    return ".".join(_segment(p) for p in parts) or "body"


def problems_from_fields(errors: Sequence[FieldError], base: str) -> list[Problem]:
    """Core errors name fields with dots (`match_keys.email.0`); their names are fixed ones."""
    problems = []
    for error in errors:
        parts: list[str | int] = [
            int(p) if p.isdigit() else p for p in error.field.split(".") if p != "body"
        ]
        problems.append(
            Problem(pointer=pointer(base, parts), field=error.field, message=error.message)
        )
    return problems


def error_response(
    status: int, problems: Sequence[Problem], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"errors": [p.model_dump() for p in problems]}, status_code=status, headers=headers
    )


async def _rejected(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestRejected)
    return error_response(error.status, error.problems, error.headers)


def too_large(limit: int) -> Problem:
    message = f"the request body is larger than {limit} bytes; send smaller batches"
    return Problem(pointer="", field="body", message=message)


async def _too_large(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, BodyTooLarge)
    return error_response(413, [too_large(error.limit)])


async def _request_validation(_: Request, error: Exception) -> JSONResponse:
    """Path, query and header parameters (bodies are parsed by the routes themselves)."""
    assert isinstance(error, RequestValidationError)
    problems = []
    for item in error.errors():
        location, *rest = item["loc"] or ("request",)
        message = _MESSAGES.get(item["type"], str(item["msg"]).removeprefix("Value error, "))
        field = f"{location}.{dotted(rest)}" if rest else str(location)
        problems.append(Problem(pointer=None, field=field, message=message))
    return error_response(422, problems)


async def _http_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    problem = Problem(pointer=None, field=None, message=str(error.detail))
    return error_response(error.status_code, [problem], getattr(error, "headers", None))


class UnexpectedErrors:
    """500 for an exception nothing else handled, on a connection that stays open.

    Not an exception handler: Starlette runs the handler for Exception in its outermost
    middleware, which re-raises after answering so that the server logs it, and uvicorn then
    closes the keep-alive connection under the client. Here the exception ends with the
    answer. The traceback goes to the log; the caller learns only that it may retry.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = finished = False

        async def tracked(message: Message) -> None:
            nonlocal started, finished
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finished = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as error:
            unavailable = database_unavailable(error)
            if unavailable:
                # Expected while the database restarts or fails over: one line, no traceback.
                log.warning(
                    "database unavailable (%s): answered 503",
                    type(getattr(error, "orig", None) or error).__name__,
                )
            else:
                log.exception("unhandled %s", type(error).__name__)
            if started and not finished:
                raise  # half an answer: only closing the connection can tell the client
            if not started:  # (a mounted app may have answered with its own error page)
                if unavailable:
                    await error_response(503, [DATABASE_UNAVAILABLE], headers={"Retry-After": "1"})(
                        scope, receive, send
                    )
                    return
                problem = Problem(
                    pointer=None, field=None, message="internal error; retrying is safe"
                )
                await error_response(500, [problem])(scope, receive, send)


DATABASE_UNAVAILABLE = Problem(
    pointer=None, field=None, message="the database is unavailable; retrying is safe"
)


def database_unavailable(error: BaseException) -> bool:
    """A database that cannot be reached (down, restarting, failing over, pool exhausted) as
    opposed to a fault in the request. The same request may be sent again: a trigger stored
    by a commit whose answer was lost is found by its idempotency key."""
    if isinstance(error, sa_exc.OperationalError | sa_exc.TimeoutError):
        return True
    return isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated


def install_error_handlers(app: FastAPI) -> None:
    """Handlers for the refusals; UnexpectedErrors (a middleware) answers everything else."""
    app.add_exception_handler(RequestRejected, _rejected)
    app.add_exception_handler(BodyTooLarge, _too_large)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_error)
