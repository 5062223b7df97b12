"""The admin JSON API (/admin/api): the page's operations, for automation.

Authentication: `Authorization: Bearer pba_…`, a personal admin token
(`postback admin token-create USER`), so every change is audited as `api:<user>`. Ingest API
keys (`pbk_…`) are refused: a routing system's key cannot change configuration. A logged-in
browser session also works, with its CSRF token in an `X-CSRF-Token` header for writes.

Workspace: `X-Workspace: NAME` (or `?workspace=NAME`); without it the default workspace if
the token's user is a member of it, else their first by name. A workspace they are not a
member of is a 404, like one that does not exist. A change their role there does not allow
is a 403 (viewer: reads; editor: + mappings, preview, replay; owner: + event sets, tokens,
members); viewers get no token in any form (`"hidden for viewers"`).

Errors are `{"errors": [{"pointer", "field", "message"}]}`, like the ingest API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ParamSpec, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from crm_postback.commands.authentication import identify_admin_token, resume_admin_session
from crm_postback.commands.lookups import NotFound
from crm_postback.commands.manage_mappings import VersionConflict
from crm_postback.commands.unit_of_work import NotPermitted
from crm_postback.configuration.admin_accounts import (
    Admin,
    TokenRefused,
    csrf_matches,
)
from crm_postback.core.errors import FieldError, InputRejected
from crm_postback.web.admin.security import resolve_workspace
from crm_postback.web.body import read_json
from crm_postback.web.errors import (
    RequestRejected,
    dotted,
    error_response,
    problems_from_fields,
)
from crm_postback.web.shapes import ErrorAnswer, Problem

DESCRIPTION = __doc__ or ""
_ERRORS = {
    401: "No admin token (or browser session), or not a valid one",
    403: "A revoked token or disabled user, a browser session without its CSRF header, or "
    "a change the caller's role in the workspace does not allow",
    404: "No such workspace (or not the caller's), event set, mapping or route",
    409: "The mapping changed since the version given",
    413: "The body is larger than MAX_REQUEST_BYTES",
    422: "A field, body, path or query parameter is refused; each problem is named",
    500: "Internal error; retrying is safe",
}
# Every route of the JSON API may answer these, always as {"errors": [...]}.
API_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorAnswer, "description": text} for status, text in _ERRORS.items()
}
# For a route whose own answer is not JSON (the YAML export): FastAPI would document a
# "model" error in the route's media type, yet errors are always JSON.
API_ERRORS_IN_JSON: dict[int | str, dict[str, Any]] = {
    status: {
        "description": text,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorAnswer"}}},
    }
    for status, text in _ERRORS.items()
}
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
Result = TypeVar("Result")
Params = ParamSpec("Params")


class ApiFailure(Exception):
    def __init__(
        self, status: int, errors: list[FieldError], headers: dict[str, str] | None = None
    ):
        super().__init__("; ".join(str(e) for e in errors))
        self.status = status
        self.errors = errors
        self.headers = headers


def fail(status: int, field: str | None, message: str) -> ApiFailure:
    return ApiFailure(status, [FieldError(field or "", message)])


def _named(field: str) -> str:
    """A dotted field as it may be named back: a part that is not a plain name (a key a
    caller invented: it may be anything, an email included) is `<redacted>`. Only a short
    run of ASCII digits is a list index: str.isdigit() also takes "\u00b2" (int() refuses it)
    and 5,000 digits (past int()'s string limit)."""
    return dotted([int(p) if _is_index(p) else p for p in field.split(".")])


def _is_index(part: str) -> bool:
    return part.isascii() and part.isdigit() and len(part) <= 9


async def _api_failure(_: Request, error: Exception) -> Response:
    assert isinstance(error, ApiFailure)
    problems = [
        Problem(pointer=None, field=None, message=e.message)
        if not e.field
        else problems_from_fields([FieldError(_named(e.field), e.message)], "")[0]
        for e in error.errors
    ]
    return error_response(error.status, problems, error.headers)


async def _rejected(_: Request, error: Exception) -> Response:
    assert isinstance(error, RequestRejected)
    return error_response(error.status, error.problems, error.headers)


def validation_problems(error: RequestValidationError) -> list[Problem]:
    """A path or query parameter of the wrong type, named (`path.mapping_id`), never echoed."""
    problems: list[Problem] = []
    for item in error.errors()[:20]:
        location, *rest = item["loc"] or ("request",)
        field = f"{location}.{dotted(rest)}" if rest else str(location)
        message = (
            "is required"
            if item["type"] == "missing"
            else _TYPE_MESSAGES.get(item["type"], "is not valid here")
        )
        if field not in {p.field for p in problems}:
            problems.append(Problem(pointer=None, field=field, message=message))
    return problems


_TYPE_MESSAGES = {
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "greater_than_equal": "is too small",
    "less_than_equal": "is too large",
}


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiFailure, _api_failure)
    app.add_exception_handler(RequestRejected, _rejected)


def api_admin(request: Request) -> Admin:
    """The token's admin, or a logged-in browser's (with its CSRF header for writes), in the
    workspace of `X-Workspace` (or `?workspace=`), else the default rule."""
    wanted = request.headers.get("x-workspace") or request.query_params.get("workspace")
    try:
        return resolve_workspace(_api_caller(request), wanted)
    except NotFound as missing:
        raise ApiFailure(404, list(missing.errors)) from None


def _api_caller(request: Request) -> Admin:
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        try:
            return identify_admin_token(credentials.strip())
        except TokenRefused as refused:
            challenge = {"WWW-Authenticate": 'Bearer realm="crm-postback admin"'}
            raise ApiFailure(
                refused.status,
                [FieldError("Authorization", str(refused))],
                challenge if refused.status == 401 else None,
            ) from None
    session_id = request.session.get("sid")
    found = resume_admin_session(session_id) if isinstance(session_id, str) else None
    if found is None:
        raise ApiFailure(
            401,
            [FieldError("Authorization", "send an admin token: Authorization: Bearer pba_…")],
            {"WWW-Authenticate": 'Bearer realm="crm-postback admin"'},
        )
    if request.method not in SAFE_METHODS and not csrf_matches(
        found.csrf_token, request.headers.get("x-csrf-token")
    ):
        raise fail(403, "X-CSRF-Token", "a browser session must send its CSRF token")
    return found


ApiAdmin = Annotated[Admin, Depends(api_admin)]


async def in_thread(
    function: Callable[Params, Result], *args: Params.args, **kwargs: Params.kwargs
) -> Result:
    """`function(*args, **kwargs)` (a command or a read) off the event loop: unknown
    entities are 404, a stale version 409, refused input 422."""
    try:
        return await run_in_threadpool(function, *args, **kwargs)
    except NotFound as missing:
        raise ApiFailure(404, list(missing.errors)) from None
    except NotPermitted as refused:
        raise ApiFailure(403, list(refused.errors)) from None
    except VersionConflict as conflict:
        raise ApiFailure(409, list(conflict.errors)) from None
    except InputRejected as error:
        raise ApiFailure(422, list(error.errors)) from None


async def read_object(request: Request) -> dict[str, Any]:
    document = await read_json(request)
    if not isinstance(document, dict):
        raise RequestRejected(
            422, [Problem(pointer="", field="body", message="must be a JSON object")]
        )
    return document


def reject_unknown(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = [key for key in body if key not in allowed]
    if unknown:
        raise ApiFailure(
            422, [FieldError(dotted([str(key)]), "is not a known field") for key in unknown[:20]]
        )


def text_field(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise fail(422, name, "must be a string")
    return value
