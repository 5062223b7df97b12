"""Logging in and out of the admin pages.

The bookkeeping of a login (the failed-attempt counter, the session row) is kept by
`configuration.admin_accounts` and committed by `commands.authentication` (`log_in`,
`log_out`); it is not an admin's change to audit.
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
from crm_postback.web.admin.page_rendering import flash, render, root, see_other
from crm_postback.web.admin.security import AdminDep, checked_form, login_csrf, same_origin

router = APIRouter(include_in_schema=False)


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
    form = await request.form()
    expected = request.session.get("login_csrf")
    if not same_origin(request) or not csrf_matches(expected, str(form.get("csrf_token", ""))):
        token = login_csrf(request)
        error = "the login form expired; please try again"
        return render(request, "login.html", None, 403, login_csrf=token, next="", error=error)
    username = str(form.get("username", ""))
    password = str(form.get("password", ""))
    next_url = str(form.get("next", ""))

    def attempt() -> str | LoginRefused:
        try:
            return log_in(username, password)
        except LoginRefused as refused:
            return refused

    outcome = await run_in_threadpool(attempt)
    if isinstance(outcome, LoginRefused):
        return render(
            request,
            "login.html",
            None,
            401,
            login_csrf=login_csrf(request),
            next=next_url,
            error=str(outcome),
            username=username,
        )
    request.session.clear()
    request.session["sid"] = outcome
    return RedirectResponse(_safe_next(request, next_url), status_code=303)


@router.post("/logout")
async def logout(request: Request, admin: AdminDep) -> Response:
    await checked_form(request, admin.csrf_token)
    session_id = request.session.get("sid")

    await run_in_threadpool(log_out, str(session_id))
    request.session.clear()
    flash(request, "You are logged out.")
    return see_other(request, "/login")


@router.get("/")
def home(request: Request, admin: AdminDep) -> Response:
    return see_other(request, "/event-sets")
