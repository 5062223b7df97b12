"""The audit trail page: every change of the workspace, who made it, before and after
(tokens masked; for viewers hidden). Instance administrators also see the instance's own
entries (workspaces, admin users, other users' tokens: no workspace) at `?scope=instance`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from crm_postback.commands.lookups import MAX_BIG_ID, row_id
from crm_postback.configuration import audit
from crm_postback.configuration.admin_accounts import Admin
from crm_postback.web.admin.page_rendering import render
from crm_postback.web.admin.security import AdminDep, instance_admin_only, workspace_of
from crm_postback.web.admin.token_display import shown_changes
from models import AuditEntry, EventSet
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50


def read_instance_entries(admin: Admin, limit: int, before_id: int | None) -> list[AuditEntry]:
    """For instance administrators only; anyone else gets the "no such page" 404."""
    instance_admin_only(admin)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        found = audit.instance_entries(session, limit=limit, before_id=before_id)
        session.expunge_all()
        return found


@router.get("/audit")
def audit_page(
    request: Request, admin: AdminDep, event_set: str = "", before: str = "", scope: str = ""
) -> HTMLResponse:
    before_id = row_id(before, MAX_BIG_ID)
    if scope == "instance":
        found = read_instance_entries(admin, PAGE_SIZE, before_id)
        return render(
            request,
            "audit.html",
            admin,
            entries=shown_changes(admin, found),
            names={},
            selected=None,
            instance=True,
            older=found[-1].id if len(found) == PAGE_SIZE else None,
        )
    with session_scope(workspace=workspace_of(admin)) as session:
        # A value that cannot be an id (not a number, too large) filters nothing, like none.
        selected = row_id(event_set)
        found = audit.entries(session, event_set_id=selected, limit=PAGE_SIZE, before_id=before_id)
        names = {es.id: es.name for es in session.scalars(select(EventSet).order_by(EventSet.name))}
        return render(
            request,
            "audit.html",
            admin,
            entries=shown_changes(admin, found),
            names=names,
            selected=selected,
            instance=False,
            older=found[-1].id if len(found) == PAGE_SIZE else None,
        )
