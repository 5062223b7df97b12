"""Who is logged in (server-side session behind a signed cookie), in which workspace, and
CSRF checks.

The workspace of a request is resolved here, once, for every page and JSON API route
(`page_admin`, and `json_api_support.api_admin` through `resolve_workspace`): the admin must
be a member of it (any role: reading needs no more) or an instance administrator. A
workspace they are not a member of is answered exactly like one that does not exist (404).
What a role may change is checked by the commands (`unit_of_work(requires=...)`), never here.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from crm_postback.commands.authentication import resume_admin_session
from crm_postback.commands.lookups import NotFound
from crm_postback.commands.unit_of_work import Actor, unit_of_work
from crm_postback.configuration.admin_accounts import Admin, Membership, csrf_matches
from crm_postback.configuration.workspaces import NO_SUCH_WORKSPACE
from crm_postback.core.errors import FieldError
from models import Role

# The cookie session's key for the workspace a browser last chose.
REMEMBERED = "workspace"
# The hidden field of every form: the workspace of the page that rendered it.
FORM_WORKSPACE = "workspace"


class LoginRequired(Exception):
    """Answered with a redirect to the login page."""


class CsrfRejected(Exception):
    """Answered with 403: the form did not carry this session's token, or came from elsewhere."""


def no_such_workspace() -> NotFound:
    return NotFound([FieldError("workspace", NO_SUCH_WORKSPACE)])


def resolve_workspace(admin: Admin, wanted: str | None, remembered: str | None = None) -> Admin:
    """The admin in the workspace named (`wanted`: 404 if they are not a member, like a
    workspace that does not exist), else the remembered one if still theirs, else the
    default workspace if a member, else their first by name."""
    if wanted is not None:
        found = admin.membership(wanted.strip())
        if found is None:
            raise no_such_workspace()
        return admin.in_workspace(found)
    chosen: Membership | None = admin.membership(remembered) if remembered else None
    chosen = chosen or admin.default_membership()
    if chosen is None:
        raise NotFound([FieldError("workspace", "you are not a member of any workspace")])
    return admin.in_workspace(chosen)


def logged_in(request: Request) -> Admin:
    """The logged-in admin, before any workspace is chosen (logging out needs none)."""
    session_id = request.session.get("sid")
    admin = None
    if isinstance(session_id, str):
        admin = resume_admin_session(session_id)
    if admin is None:
        request.session.pop("sid", None)
        raise LoginRequired()
    return admin


async def page_admin(request: Request) -> Admin:
    """The logged-in admin in the workspace the request names.

    A page (GET): `?workspace=NAME` (then remembered in the cookie session, for navigation),
    else the remembered one, else the default rule. A form (POST): the workspace the page
    that rendered it showed, from its hidden `workspace` field (`page_rendering.form_fields`),
    never the remembered one: another tab may have switched since. `?workspace=` on a post
    must name one of the admin's workspaces (404) and, with the field, the same one (else
    refused, nothing changed). A post naming none (not one of these pages' forms) gets the
    JSON API's rule: the default workspace, else the admin's first.
    """
    admin = await run_in_threadpool(logged_in, request)
    if request.method in ("GET", "HEAD"):
        wanted = request.query_params.get("workspace")
        remembered = request.session.get(REMEMBERED)
        resolved = resolve_workspace(
            admin, wanted, remembered if isinstance(remembered, str) else None
        )
    else:
        form = await request.form()
        field = form.get(FORM_WORKSPACE)
        in_form = field if isinstance(field, str) and field else None
        in_url = request.query_params.get("workspace")
        if in_url is not None:
            resolve_workspace(admin, in_url)  # not theirs: 404, like a page
        if in_form is not None and in_url is not None and in_form.strip() != in_url.strip():
            raise CsrfRejected()  # a form of another workspace: nothing is changed
        wanted = in_form or in_url
        resolved = resolve_workspace(admin, wanted)
        if wanted is None:
            return resolved
    # The answer's redirect shows the workspace the form acted in.
    if request.session.get(REMEMBERED) != resolved.current.name:
        request.session[REMEMBERED] = resolved.current.name
    return resolved


AdminDep = Annotated[Admin, Depends(page_admin)]
LoggedInDep = Annotated[Admin, Depends(logged_in)]


def instance_admin_only(admin: Admin) -> None:
    """What only instance administrators read (every workspace, every user): anyone else
    is answered as if it did not exist. Changing it is checked by the commands."""
    if not admin.instance_admin:
        raise NotFound([FieldError("page", "there is no such page")])


def actor_of(admin: Admin) -> Actor:
    """The commands' actor: who, in the request's workspace, with their role there."""
    member = admin.current
    return Actor(
        admin.actor,
        workspace_id=member.workspace_id,
        role=member.role,
        instance_admin=admin.instance_admin,
    )


def workspace_of(admin: Admin) -> int:
    """The workspace every session of the request is scoped to."""
    return admin.current.workspace_id


PREVIEW_ROLE = Role.EDITOR


@contextmanager
def preview_session(admin: Admin) -> Iterator[Session]:
    """A session for a preview (the exact request TikTok would get): it needs the editor's
    role, checked where every change is checked, by a unit of work that keeps nothing (a
    dry run). Use what it loaded inside the block: the rollback expires it."""
    with unit_of_work(actor_of(admin), requires=PREVIEW_ROLE, dry_run=True) as uow:
        yield uow.session


def require_preview(admin: Admin) -> None:
    """The preview's role, checked as its unit of work checks it (`Actor.require`), for an
    answer that shows the form's errors or a preview without opening one: a role that may
    not preview learns nothing about what it typed (403 before any field error)."""
    actor_of(admin).require(PREVIEW_ROLE)


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
