"""/admin/api/audit: the workspace's audit trail, newest first (token fields hidden for
viewers); `?scope=instance`: the instance's own entries, for instance administrators."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from crm_postback.commands.lookups import MAX_BIG_ID, is_row_id, load_event_set
from crm_postback.configuration import audit
from crm_postback.web.admin.audit_pages import read_instance_entries
from crm_postback.web.admin.json_api_support import API_ERRORS, ApiAdmin, fail, in_thread
from crm_postback.web.admin.security import workspace_of
from crm_postback.web.admin.token_display import shown_entry_dict
from models.db import session_scope

router = APIRouter(prefix="/api", tags=["admin"], responses=API_ERRORS)


@router.get("/audit", summary="The audit trail, newest first")
async def audit_api(
    admin: ApiAdmin,
    event_set: str | None = None,
    limit: int = 100,
    before: int | None = None,
    scope: str | None = None,
) -> Any:
    if not 1 <= limit <= 1000:
        raise fail(422, "limit", "must be 1 to 1000")
    if before is not None and not is_row_id(before, MAX_BIG_ID):
        raise fail(422, "before", "must be an audit entry id")
    if scope not in (None, "workspace", "instance"):
        raise fail(422, "scope", "must be workspace or instance")

    def read() -> dict[str, Any]:
        if scope == "instance":
            found = read_instance_entries(admin, limit, before)
            return {"entries": [shown_entry_dict(admin, e) for e in found]}
        with session_scope(workspace=workspace_of(admin)) as session:
            selected = load_event_set(session, event_set).id if event_set else None
            found = audit.entries(session, event_set_id=selected, limit=limit, before_id=before)
            return {"entries": [shown_entry_dict(admin, e) for e in found]}

    return await in_thread(read)
