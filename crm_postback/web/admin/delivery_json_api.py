"""/admin/api/delivery, /admin/api/postbacks/replay and /admin/api/leads/{lead}/consent-withdrawal:
counts, TikTok's last errors, replay, a lead's withdrawn consent."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request

from crm_postback.commands.lookups import MAX_BIG_ID, is_row_id, load_event_set
from crm_postback.commands.replay_postbacks import ReplayPostbacks, replay_postbacks
from crm_postback.commands.unit_of_work import Actor
from crm_postback.commands.withdraw_consent import (
    ConsentWithdrawn,
    WithdrawConsent,
    withdraw_consent,
)
from crm_postback.intake.trigger_schemas import parse_lead_ref
from crm_postback.operations import delivery_overview
from crm_postback.operations.postback_reports import status_counts
from crm_postback.web import lead_paths  # noqa: F401 - registers the lead path convertors
from crm_postback.web.admin.json_api_support import (
    API_ERRORS,
    ApiAdmin,
    fail,
    in_thread,
    read_object,
    reject_unknown,
    text_field,
)
from crm_postback.web.admin.security import actor_of, workspace_of
from models.db import session_scope

router = APIRouter(prefix="/api", tags=["admin"], responses=API_ERRORS)


@router.get("/delivery", summary="Postback counts by event set and status, TikTok's last errors")
async def delivery_api(admin: ApiAdmin, event_set: str | None = None) -> Any:
    def read() -> dict[str, Any]:
        with session_scope(workspace=workspace_of(admin)) as session:
            selected = load_event_set(session, event_set).id if event_set else None
            return {
                "counts": status_counts(session),
                "last_errors": [
                    {**asdict(row), "attempted_at": row.attempted_at.isoformat()}
                    for row in delivery_overview.last_errors(session, selected)
                ],
            }

    return await in_thread(read)


@router.post(
    "/postbacks/replay",
    summary="Re-queue postbacks: {ids: [...]} (dead, failed or expired) or "
    "{event_set: name} (its dead ones)",
)
async def replay_api(request: Request, admin: ApiAdmin) -> Any:
    body = await read_object(request)
    reject_unknown(body, {"ids", "event_set"})
    ids = body.get("ids") or []
    if not isinstance(ids, list) or not all(is_row_id(i, MAX_BIG_ID) for i in ids):
        raise fail(422, "ids", "must be a list of postback ids")
    wanted = ReplayPostbacks.chosen_or_dead(ids, text_field(body, "event_set"))
    outcome = await in_thread(replay_postbacks, wanted, actor_of(admin))
    return {"requested": outcome.requested, "requeued": outcome.requeued}


def _withdraw(lead: str, actor: Actor) -> ConsentWithdrawn:
    return withdraw_consent(WithdrawConsent(parse_lead_ref(lead)), actor)


@router.post(
    "/leads/{lead_id:lead}/consent-withdrawal",
    summary="Record that a lead withdrew consent: its waiting postbacks end consent_withdrawn "
    "and nothing more is sent for it (editors and owners)",
)
async def consent_withdrawal_api(lead_id: str, admin: ApiAdmin) -> Any:
    """The page's 'consent withdrawn' button. The lead id is URL-encoded (`/` as `%2F`); a
    lead the workspace does not have is 404, whether another workspace has it or none. Not
    reversible; calling again changes nothing (`already_withdrawn`)."""
    outcome = await in_thread(_withdraw, lead_id, actor_of(admin))
    return {
        "status": "consent_withdrawn",
        "consent_withdrawn_at": outcome.withdrawn_at.isoformat(),
        "already_withdrawn": outcome.already_withdrawn,
        "postbacks_stopped": outcome.postbacks_stopped,
        "postbacks_in_flight": outcome.postbacks_in_flight,
    }
