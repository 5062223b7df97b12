"""`POST /v1/leads/{lead_id}/consent-withdrawal`: a routing system records that a lead
withdrew consent (`crm_postback.commands.withdraw_consent`).

The key's workspace only: a lead of another workspace is answered like one nobody has (404,
the same text as the history's), and no answer repeats the lead id or anything sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from crm_postback.commands.lookups import NotFound
from crm_postback.commands.unit_of_work import Actor
from crm_postback.commands.withdraw_consent import WithdrawConsent, withdraw_consent
from crm_postback.configuration.api_keys import Caller
from crm_postback.intake.trigger_schemas import parse_lead_ref
from crm_postback.web import lead_paths  # noqa: F401 - registers the lead path convertors
from crm_postback.web.auth import LeadWriterDep
from crm_postback.web.errors import RequestRejected
from crm_postback.web.ingest import UNKNOWN_LEAD, LeadId, lead_path_problems, lead_route_errors
from models import Role

router = APIRouter(tags=["ingest"])


class ConsentWithdrawalAnswer(BaseModel):
    status: str = Field(
        "consent_withdrawn", description="Always consent_withdrawn: nothing more is sent"
    )
    consent_withdrawn_at: datetime = Field(description="When it was first recorded (UTC)")
    already_withdrawn: bool = Field(
        description="true: an earlier call recorded it; this one changed nothing else"
    )
    postbacks_stopped: int = Field(
        description="Postbacks of the lead that were waiting (pending or on the retry "
        "ladder): they end consent_withdrawn, visible in the lead's history"
    )
    postbacks_in_flight: int = Field(
        description="Postbacks a worker was sending at that moment: they may still arrive"
    )


def key_actor(caller: Caller) -> Actor:
    """The audit trail's name for a call with an API key (its permission is checked)."""
    return Actor(f"api-key:{caller.key_id}", caller.workspace_id, Role.EDITOR)


def _withdraw(lead_id: str, caller: Caller) -> ConsentWithdrawalAnswer:
    problems = lead_path_problems(lead_id)
    if problems:
        raise RequestRejected(422, problems)
    try:
        result = withdraw_consent(WithdrawConsent(parse_lead_ref(lead_id)), key_actor(caller))
    except NotFound:
        raise RequestRejected(404, [UNKNOWN_LEAD]) from None
    return ConsentWithdrawalAnswer(
        consent_withdrawn_at=result.withdrawn_at,
        already_withdrawn=result.already_withdrawn,
        postbacks_stopped=result.postbacks_stopped,
        postbacks_in_flight=result.postbacks_in_flight,
    )


@router.post(
    "/v1/leads/{lead_id:lead}/consent-withdrawal",
    summary="Record that a lead withdrew consent: nothing more is sent for it",
    response_model=ConsentWithdrawalAnswer,
    responses=lead_route_errors("leads:write"),
)
async def post_consent_withdrawal(lead_id: LeadId, caller: LeadWriterDep) -> Any:
    """Every postback of the lead not sent yet ends `consent_withdrawn`; triggers that arrive
    later are stored and end the same way, unsent. A postback a worker is sending at this
    moment may still arrive (`postbacks_in_flight`). Calling again changes nothing
    (`already_withdrawn`). Not reversible: a lead who consents again comes back under a new
    lead id; `postback erase-lead` erases its keys."""
    return await run_in_threadpool(_withdraw, lead_id, caller)
