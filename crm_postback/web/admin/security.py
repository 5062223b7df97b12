"""Who is logged in (server-side session behind a signed cookie) and CSRF checks."""

from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from starlette.datastructures import FormData

from crm_postback.commands.authentication import resume_admin_session
from crm_postback.configuration.admin_accounts import Admin, csrf_matches


class LoginRequired(Exception):
    """Answered with a redirect to the login page."""


class CsrfRejected(Exception):
    """Answered with 403: the form did not carry this session's token, or came from elsewhere."""


def page_admin(request: Request) -> Admin:
    session_id = request.session.get("sid")
    admin = None
    if isinstance(session_id, str):
        admin = resume_admin_session(session_id)
    if admin is None:
        request.session.pop("sid", None)
        raise LoginRequired()
    return admin


AdminDep = Annotated[Admin, Depends(page_admin)]


def same_origin(request: Request) -> bool:
    """A browser sends Origin with every POST; one from another site is refused."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host


async def checked_form(request: Request, expected: str | None) -> FormData:
    form = await request.form()
    if not same_origin(request) or not csrf_matches(expected, str(form.get("csrf_token", ""))):
        raise CsrfRejected()
    return form


def login_csrf(request: Request) -> str:
    """The token for the login form, kept in the (not yet logged-in) cookie session."""
    token = request.session.get("login_csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["login_csrf"] = token
    return token
