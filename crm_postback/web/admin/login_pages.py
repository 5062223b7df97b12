"""Logging in and out of the admin pages.

The bookkeeping of a login (the failed-attempt counter, the session row) is kept by
`configuration.admin_accounts` and committed by `commands.authentication` (`log_in`,
`log_out`); it is not an admin's change to audit.

Each client address may try ADMIN_LOGIN_RATE_LIMIT logins (429 with Retry-After beyond,
before the form is read); the counts are this app's own unless RATE_LIMIT_STORAGE_URL
shares them. A refused login is one answer whatever was wrong, and never shows what was
typed.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from crm_postback.commands.authentication import log_in, log_out
from crm_postback.configuration.admin_accounts import (
    LoginRefused,
    csrf_matches,
)
from crm_postback.core.rate_limits import Busy, RateLimit
from crm_postback.core.settings import Settings, get_settings
from crm_postback.web.admin.page_rendering import flash, render, root, see_other
from crm_postback.web.admin.security import (
    AdminDep,
    LoggedInDep,
    checked_form,
    login_csrf,
    same_origin,
)

router = APIRouter(include_in_schema=False)
LOGIN_RATE_LIMIT = "admin-login"


def login_rate_limit(settings: Settings) -> RateLimit:
    """A limiter of login attempts per client address (with counts of its own in memory)."""
    return RateLimit(
        LOGIN_RATE_LIMIT, settings.admin_login_rate_limit, settings.rate_limit_storage_url
    )


def _rate_limit_of(request: Request) -> RateLimit:
    """The admin app's limiter, made again only when its settings change (tests)."""
    settings = get_settings()
    limit: RateLimit | None = getattr(request.app.state, "login_rate_limit", None)
    wanted = (settings.admin_login_rate_limit, settings.rate_limit_storage_url)
    if limit is None or (limit.rate, limit.storage_url) != wanted:
        limit = login_rate_limit(settings)
        request.app.state.login_rate_limit = limit
    return limit


def _login_form(
    request: Request, status: int, error: str, next_url: str = "", retry_after: int = 0
) -> HTMLResponse:
    response = render(
        request,
        "login.html",
        None,
        status,
        login_csrf=login_csrf(request),
        next=next_url,
        error=error,
    )
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


@router.get("/login")
def login_page(request: Request, next: str = "") -> HTMLResponse:
    token = login_csrf(request)
    return render(request, "login.html", None, login_csrf=token, next=next, error=None)


def _safe_next(request: Request, target: str) -> str:
    prefix = root(request) + "/"
    if target.startswith(prefix) and not target.startswith("//") and "\\" not in target:
        return target
    return root(request) + "/event-sets"


@router.post("/login")
async def login(request: Request) -> Response:
    client = request.client.host if request.client else "unknown"
    verdict = await run_in_threadpool(_rate_limit_of(request).hit, client)  # may wait on Redis
    if not verdict.allowed:
        seconds = verdict.retry_after_seconds
        error = f"too many login attempts from your address; try again in {seconds} s"
        return _login_form(request, 429, error, retry_after=seconds)
    form = await request.form()
    expected = request.session.get("login_csrf")
    if not same_origin(request) or not csrf_matches(expected, str(form.get("csrf_token", ""))):
        return _login_form(request, 403, "the login form expired; please try again")
    username = str(form.get("username", ""))
    password = str(form.get("password", ""))
    next_url = str(form.get("next", ""))

    def attempt() -> str | LoginRefused | Busy:
        try:
            return log_in(username, password)
        except (LoginRefused, Busy) as refused:
            return refused

    outcome = await run_in_threadpool(attempt)
    if isinstance(outcome, Busy):
        error = "the server is busy checking other logins; try again in a moment"
        return _login_form(request, 503, error, next_url, outcome.retry_after_seconds)
    if isinstance(outcome, LoginRefused):
        return _login_form(request, 401, str(outcome), next_url)
    request.session.clear()
    request.session["sid"] = outcome
    return RedirectResponse(_safe_next(request, next_url), status_code=303)


@router.post("/logout")
async def logout(request: Request, admin: LoggedInDep) -> Response:
    await checked_form(request, admin.csrf_token)
    session_id = request.session.get("sid")

    await run_in_threadpool(log_out, str(session_id))
    request.session.clear()
    flash(request, "You are logged out.")
    return see_other(request, "/login")


@router.get("/")
def home(request: Request, admin: AdminDep) -> Response:
    return see_other(request, "/event-sets")
