"""The audit trail page: every change, who made it, before and after (tokens masked)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from crm_postback.commands.lookups import MAX_BIG_ID, row_id
from crm_postback.configuration import audit
from crm_postback.web.admin.page_rendering import render
from crm_postback.web.admin.security import AdminDep
from models import DEFAULT_WORKSPACE_ID, EventSet
from models.db import session_scope

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50


@router.get("/audit")
def audit_page(
    request: Request, admin: AdminDep, event_set: str = "", before: str = ""
) -> HTMLResponse:
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        # A value that cannot be an id (not a number, too large) filters nothing, like none.
        selected = row_id(event_set)
        found = audit.entries(
            session,
            event_set_id=selected,
            limit=PAGE_SIZE,
            before_id=row_id(before, MAX_BIG_ID),
        )
        names = {es.id: es.name for es in session.scalars(select(EventSet).order_by(EventSet.name))}
        return render(
            request,
            "audit.html",
            admin,
            entries=[(e, audit.changes(e)) for e in found],
            names=names,
            selected=selected,
            older=found[-1].id if len(found) == PAGE_SIZE else None,
        )
