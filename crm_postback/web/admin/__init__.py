"""The admin UI (/admin) and its JSON API (/admin/api), mounted into the main FastAPI app.

A sub-application of its own, so that its HTML error pages, session cookie and login
redirects never touch the ingest API's JSON-only behaviour.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from crm_postback.commands.lookups import NotFound
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
    preview_pages,
)
from crm_postback.web.admin.json_api_support import DESCRIPTION, install_error_handlers
from crm_postback.web.admin.page_rendering import flash, render, root
from crm_postback.web.admin.security import CsrfRejected, LoginRequired

HERE = Path(__file__).parent
COOKIE = "crm_postback_admin"


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


async def _login_required(request: Request, _: Exception) -> Response:
    target = root(request) + "/login"
    if request.method == "GET":
        path = request.url.path
        if request.url.query:
            path += "?" + request.url.query
        from urllib.parse import quote

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


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    if request.url.path.startswith(root(request) + "/api"):
        from crm_postback.web.errors import error_response
        from crm_postback.web.shapes import Problem

        problem = Problem(pointer=None, field=None, message=str(error.detail))
        return error_response(error.status_code, [problem])
    return _page(request, error.status_code, "Something is not right", str(error.detail))


def create_admin_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    admin = FastAPI(
        title="crm-postback admin API",
        version="1",
        description=DESCRIPTION,
        docs_url="/api/docs",
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
    admin.add_exception_handler(StarletteHTTPException, _http_error)
    install_error_handlers(admin)
    admin.mount("/static", StaticFiles(directory=HERE / "static"), name="admin-static")
    for api in (event_set_json_api, mapping_json_api, delivery_json_api, audit_json_api):
        admin.include_router(api.router)
    for pages in (
        login_pages,
        event_set_pages,
        mapping_pages,
        preview_pages,
        delivery_pages,
        audit_pages,
    ):
        admin.include_router(pages.router)
    # Last: `POST /event-sets/{id}/{action}` would shadow the pages' more specific routes.
    admin.include_router(event_set_pages.action_router)
    return admin
