"""The match-quality page of an event set: the score, the one change that raises it most,
coverage per key (overall and per event name), keys dropped at the door, and a chart of the
last 14 days. Read-only: every role of the workspace may see it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from crm_postback.commands.lookups import load_event_set
from crm_postback.operations.diagnostics_text import KEY_LABELS
from crm_postback.operations.match_quality import match_quality
from crm_postback.web.admin.match_quality_chart import chart_lines, chart_svg
from crm_postback.web.admin.page_rendering import render
from crm_postback.web.admin.security import AdminDep, workspace_of
from models.db import session_scope

router = APIRouter(include_in_schema=False)


@router.get("/event-sets/{event_set_id}/match-quality")
def match_quality_page(request: Request, event_set_id: int, admin: AdminDep) -> HTMLResponse:
    with session_scope(workspace=workspace_of(admin)) as session:
        # Another workspace's event set is not found: the same 404 as one that does not exist.
        event_set = load_event_set(session, event_set_id)
        quality = match_quality(session, event_set.id)
        return render(
            request,
            "match_quality.html",
            admin,
            event_set=event_set,
            quality=quality,
            chart=chart_svg(quality),
            lines=chart_lines(quality),
            key_labels=KEY_LABELS,
        )
