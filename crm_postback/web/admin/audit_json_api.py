"""/admin/api/audit: the audit trail, newest first."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from crm_postback.commands.lookups import MAX_BIG_ID, is_row_id, load_event_set
from crm_postback.configuration import audit
from crm_postback.web.admin.json_api_support import API_ERRORS, ApiAdmin, fail, in_thread
from models import DEFAULT_WORKSPACE_ID
from models.db import session_scope

router = APIRouter(prefix="/api", tags=["admin"], responses=API_ERRORS)


@router.get("/audit", summary="The audit trail, newest first")
async def audit_api(
    admin: ApiAdmin, event_set: str | None = None, limit: int = 100, before: int | None = None
) -> Any:
    if not 1 <= limit <= 1000:
        raise fail(422, "limit", "must be 1 to 1000")
    if before is not None and not is_row_id(before, MAX_BIG_ID):
        raise fail(422, "before", "must be an audit entry id")

    def read() -> dict[str, Any]:
        with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
            selected = load_event_set(session, event_set).id if event_set else None
            found = audit.entries(session, event_set_id=selected, limit=limit, before_id=before)
            return {"entries": [audit.entry_dict(e) for e in found]}

    return await in_thread(read)
