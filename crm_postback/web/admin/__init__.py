"""The admin UI (/admin) and its JSON API (/admin/api), mounted into the main FastAPI app.

A sub-application of its own, so that its HTML error pages, session cookie and login
redirects never touch the ingest API's JSON-only behaviour. Every answer carries the
protective headers of `SecurityHeaders`; every error is a page, or under /api a JSON answer
in the ingest API's shape (`{"errors": [{"pointer", "field", "message"}]}`), 500 included.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_postback.commands.lookups import NotFound
from crm_postback.commands.unit_of_work import NotPermitted
from crm_postback.core.data_dir import ensure_private_dir
from crm_postback.core.settings import Settings, get_settings
from crm_postback.web.admin import (
    audit_json_api,
    audit_pages,
    delivery_json_api,
    delivery_pages,
    event_set_json_api,
    event_set_pages,
    login_pages,
    mapping_json_api,
    mapping_pages,
    match_quality_pages,
    member_json_api,
    member_pages,
    preview_pages,
)
from crm_postback.web.admin.json_api_support import (
    DESCRIPTION,
    install_error_handlers,
    validation_problems,
)
from crm_postback.web.admin.page_rendering import flash, render, root, templates
from crm_postback.web.admin.security import CsrfRejected, LoginRequired
from crm_postback.web.errors import BodyTooLarge, error_response, too_large
from crm_postback.web.shapes import Problem

HERE = Path(__file__).parent
COOKIE = "crm_postback_admin"
DOCS_PATH = "/api/docs"

# The pages load only their own script and stylesheet (no inline code, no other host), are
# never framed and send no form elsewhere.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
# FastAPI's Swagger UI page: its script and stylesheet from jsDelivr and an inline start-up
# script; nothing on it comes from a caller.
DOCS_POLICY = (
    "default-src 'none'; script-src https://cdn.jsdelivr.net 'unsafe-inline'; "
    "style-src https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class SecurityHeaders:
    """Adds the Content-Security-Policy and the headers above to every admin answer (a
    header an answer already set is kept). With `prefix`, only to answers under that path:
    the web app wraps everything in it for /admin, so an answer made outside the admin app
    (the outer 413 for a Content-Length over the limit, the redirect from /admin to /admin/,
    a 500 answered by Starlette outside the admin's middleware) carries them too."""

    def __init__(self, app: ASGIApp, prefix: str | None = None) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or (
            self.prefix is not None
            and path != self.prefix
            and not path.startswith(self.prefix + "/")
        ):
            await self.app(scope, receive, send)
            return
        docs = path.endswith(DOCS_PATH)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", DOCS_POLICY if docs else PAGE_POLICY)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)


def session_secret(settings: Settings) -> str:
    """SESSION_SECRET, or a random key kept in the data dir (created once, mode 0600)."""
    if settings.session_secret:
        return settings.session_secret
    path = settings.postback_data_dir / "session.key"
    if not path.exists():
        ensure_private_dir(path.parent)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def _page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    return render(request, "error.html", None, status_code=status, title=title, message=message)


def _in_api(request: Request) -> bool:
    return request.url.path.startswith(root(request) + "/api")


async def _login_required(request: Request, _: Exception) -> Response:
    target = root(request) + "/login"
    if request.method == "GET":
        path = request.url.path
        if request.url.query:
            path += "?" + request.url.query
        target += "?next=" + quote(path, safe="")
    else:
        flash(request, "Your session ended; log in again and redo the change.", "error")
    return RedirectResponse(target, status_code=303)


async def _csrf(request: Request, _: Exception) -> Response:
    return _page(
        request,
        403,
        "This form has expired",
        "The form did not carry this session's security token (or came from another site). "
        "Nothing was changed. Go back, reload the page and try again.",
    )


async def _not_found(request: Request, error: Exception) -> Response:
    """An event set, mapping or page action that does not exist: the 404 page (the JSON
    API answers its own 404s before this)."""
    assert isinstance(error, NotFound)
    return _page(request, 404, "Not found", error.message)


ROLE_REFUSED = "Your role in this workspace does not allow this. Nothing was changed."


async def _not_permitted(request: Request, error: Exception) -> Response:
    """A change (or preview) the admin's role in the workspace does not allow: 403, from
    the commands' one check (`unit_of_work(requires=...)`)."""
    assert isinstance(error, NotPermitted)
    if _in_api(request):
        problems = [Problem(pointer=None, field=e.field, message=e.message) for e in error.errors]
        return error_response(403, problems)
    return _page(request, 403, "Not allowed", ROLE_REFUSED)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    if _in_api(request):
        problem = Problem(pointer=None, field=None, message=str(error.detail))
        return error_response(error.status_code, [problem], getattr(error, "headers", None))
    return _page(request, error.status_code, "Something is not right", str(error.detail))


async def _invalid_request(request: Request, error: Exception) -> Response:
    """A path or query value of the wrong type (`/event-sets/abc`): 422 naming the parameter
    on the JSON API, without the value; on the pages such a URL names nothing: 404."""
    assert isinstance(error, RequestValidationError)
    if _in_api(request):
        return error_response(422, validation_problems(error))
    return _page(request, 404, "Not found", "There is no such page.")


async def _too_large(request: Request, error: Exception) -> Response:
    assert isinstance(error, BodyTooLarge)
    if _in_api(request):
        return error_response(413, [too_large(error.limit)])
    return _page(request, 413, "Too large", f"The form is larger than {error.limit} bytes.")


# Starlette answers a 500 outside every middleware of the admin app: the headers are set
# here (the web app's SecurityHeaders adds them too; the admin app may run on its own).
_UNEXPECTED_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": PAGE_POLICY,
} | SECURITY_HEADERS


async def _unexpected(request: Request, _: Exception) -> Response:
    """Anything else: a 500 in the face's own shape. The web app's middleware
    (web.errors.UnexpectedErrors) logs the traceback and keeps the connection open. The
    page is rendered without the session: this runs outside its middleware."""
    if _in_api(request):
        problem = Problem(pointer=None, field=None, message="internal error; retrying is safe")
        return error_response(500, [problem], _UNEXPECTED_HEADERS)
    return templates.TemplateResponse(
        request,
        "error.html",
        {
            "admin": None,
            "root": root(request),
            "flashes": [],
            "title": "Something went wrong",
            "message": "The server could not finish this. Nothing is lost; try again, and "
            "tell the operator if it keeps happening.",
        },
        status_code=500,
        headers=_UNEXPECTED_HEADERS,
    )


def create_admin_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    admin = FastAPI(
        title="crm-postback admin API",
        version="1",
        description=DESCRIPTION,
        docs_url=DOCS_PATH,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    admin.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(settings),
        session_cookie=COOKIE,
        max_age=settings.admin_session_max_hours * 3600,
        path="/admin",
        same_site="lax",
        https_only=settings.admin_cookie_secure,
    )
    admin.add_exception_handler(LoginRequired, _login_required)
    admin.add_exception_handler(CsrfRejected, _csrf)
    admin.add_exception_handler(NotFound, _not_found)
    admin.add_exception_handler(NotPermitted, _not_permitted)
    admin.add_exception_handler(StarletteHTTPException, _http_error)
    admin.add_exception_handler(RequestValidationError, _invalid_request)
    admin.add_exception_handler(BodyTooLarge, _too_large)
    admin.add_exception_handler(Exception, _unexpected)
    admin.add_middleware(SecurityHeaders)  # added last: outermost, on every answer
    install_error_handlers(admin)
    admin.mount("/static", StaticFiles(directory=HERE / "static"), name="admin-static")
    for api in (
        event_set_json_api,
        mapping_json_api,
        delivery_json_api,
        audit_json_api,
        member_json_api,
    ):
        admin.include_router(api.router)
    for pages in (
        login_pages,
        event_set_pages,
        match_quality_pages,
        mapping_pages,
        preview_pages,
        delivery_pages,
        audit_pages,
        member_pages,
    ):
        admin.include_router(pages.router)
    # Last: `POST /event-sets/{id}/{action}` would shadow the pages' more specific routes.
    admin.include_router(event_set_pages.action_router)
    return admin
