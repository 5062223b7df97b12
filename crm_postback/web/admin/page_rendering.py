"""What every admin page shares: templates, flashes, redirects, recent leads for the forms."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_postback.configuration.admin_accounts import Admin
from models import Role, Trigger

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.filters["pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False)
templates.env.filters["compact"] = lambda value: json.dumps(value, ensure_ascii=False)
templates.env.filters["when"] = lambda value: f"{value:%Y-%m-%d %H:%M:%S} UTC" if value else "—"

STATUS_ORDER = (
    "pending",
    "sending",
    "retrying",
    "delivered",
    "failed",
    "dead",
    "expired",
    "unmapped",
    "no_match_key",
    "consent_withdrawn",
)


def root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def see_other(request: Request, path: str) -> RedirectResponse:
    return RedirectResponse(root(request) + path, status_code=303)


def flash(request: Request, message: str, kind: str = "ok") -> None:
    messages = list(request.session.get("flash", []))
    messages.append([kind, message])
    request.session["flash"] = messages


def form_fields(csrf: str | None, workspace: str | None) -> Markup:
    """The hidden fields every form of the pages carries: the session's CSRF token and the
    workspace the page showed (a post acts there, whatever another tab chose since)."""
    fields = f'<input type="hidden" name="csrf_token" value="{escape(csrf or "")}">'
    if workspace:
        fields += f'<input type="hidden" name="workspace" value="{escape(workspace)}">'
    return Markup(fields)


def render(
    request: Request,
    name: str,
    admin: Admin | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """The page, with the header's workspace switcher (the admin's workspaces only) and
    what the admin's role may use (buttons a role cannot use are hidden; the commands
    refuse them anyway)."""
    messages = request.session.pop("flash", [])
    workspace = admin.workspace if admin else None
    return templates.TemplateResponse(
        request,
        name,
        {
            "admin": admin,
            "csrf": admin.csrf_token if admin else None,
            "form_fields": form_fields(
                admin.csrf_token if admin else None, workspace.name if workspace else None
            ),
            "root": root(request),
            "flashes": messages,
            "workspace": workspace,
            "workspaces": admin.memberships if admin else (),
            "can_edit": bool(admin and admin.may(Role.EDITOR)),
            "can_own": bool(admin and admin.may(Role.OWNER)),
            "sees_tokens": bool(admin and admin.may(Role.EDITOR)),
            **context,
        },
        status_code=status_code,
        headers={"Cache-Control": "no-store"},
    )


def recent_leads(session: Session, event_set_id: int, limit: int = 20) -> list[str]:
    return list(
        session.scalars(
            select(Trigger.lead_ref)
            .where(Trigger.event_set_id == event_set_id)
            .group_by(Trigger.lead_ref)
            .order_by(func.max(Trigger.id).desc())
            .limit(limit)
        )
    )
