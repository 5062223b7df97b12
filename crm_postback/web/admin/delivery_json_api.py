"""/admin/api/delivery and /admin/api/postbacks/replay: counts, TikTok's last errors, replay."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request

from crm_postback.commands.replay_postbacks import ReplayPostbacks, replay_postbacks
from crm_postback.commands.unit_of_work import Actor
from crm_postback.operations import delivery_overview
from crm_postback.operations.postback_reports import status_counts
from crm_postback.operations.replay import ReplaySelection
from crm_postback.web.admin.json_api_support import (
    ApiAdmin,
    call_command,
    fail,
    find_event_set,
    read_object,
    reject_unknown,
    text_field,
    threaded,
)
from models import PostbackStatus
from models.db import session_scope

router = APIRouter(prefix="/api", tags=["admin"])


@router.get("/delivery", summary="Postback counts by event set and status, TikTok's last errors")
async def delivery_api(admin: ApiAdmin, event_set: str | None = None) -> Any:
    def read() -> dict[str, Any]:
        with session_scope() as session:
            selected = find_event_set(session, event_set).id if event_set else None
            return {
                "counts": status_counts(session),
                "last_errors": [
                    {**asdict(row), "attempted_at": row.attempted_at.isoformat()}
                    for row in delivery_overview.last_errors(session, selected)
                ],
            }

    return await threaded(read)


@router.post(
    "/postbacks/replay",
    summary="Re-queue postbacks: {ids: [...]} (dead, failed or expired) or "
    "{event_set: name} (its dead ones)",
)
async def replay_api(request: Request, admin: ApiAdmin) -> Any:
    body = await read_object(request)
    reject_unknown(body, {"ids", "event_set"})
    ids = body.get("ids") or []
    if not isinstance(ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in ids
    ):
        raise fail(422, "ids", "must be a list of postback ids")
    reference = text_field(body, "event_set")
    if ids:  # any replayable status; limited to the event set if one is named too
        selection = ReplaySelection(ids=ids, event_set=reference)
    elif reference:
        selection = ReplaySelection(event_set=reference, statuses=[PostbackStatus.DEAD])
    else:
        selection = ReplaySelection()
    outcome = await call_command(replay_postbacks, ReplayPostbacks(selection), Actor(admin.actor))
    return {"requested": outcome.requested, "requeued": outcome.requeued}
