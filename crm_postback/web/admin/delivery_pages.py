"""The delivery page: counts by status, TikTok's last errors, one lead's postbacks, replay,
and recording that a lead withdrew consent."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select

from crm_postback.commands.lookups import MAX_BIG_ID, NotFound, row_id
from crm_postback.commands.replay_postbacks import ReplayPostbacks, replay_postbacks
from crm_postback.commands.unit_of_work import NotPermitted
from crm_postback.commands.withdraw_consent import (
    UNKNOWN_LEAD,
    WithdrawConsent,
    withdraw_consent,
)
from crm_postback.configuration.event_set_service import is_plain_text
from crm_postback.core.errors import FieldError, InputRejected
from crm_postback.operations import delivery_overview
from crm_postback.operations.postback_reports import lead_history, status_counts
from crm_postback.web.admin.page_rendering import STATUS_ORDER, flash, render, see_other
from crm_postback.web.admin.security import AdminDep, actor_of, checked_form, workspace_of
from models import REPLAYABLE_STATUSES, EventSet, Lead, Postback
from models.db import session_scope

router = APIRouter(include_in_schema=False)


@router.get("/delivery")
def delivery_page(
    request: Request, admin: AdminDep, lead: str = "", event_set: str = ""
) -> HTMLResponse:
    lead = lead.strip()
    if len(lead) > 256 or not is_plain_text(lead):
        lead = ""  # no lead id is like that; PostgreSQL would refuse a NUL in the query
    with session_scope(workspace=workspace_of(admin)) as session:
        selected = row_id(event_set)
        names = {es.id: es.name for es in session.scalars(select(EventSet).order_by(EventSet.name))}
        history = lead_history(session, lead) if lead else None
        return render(
            request,
            "delivery.html",
            admin,
            names=names,
            counts=status_counts(session),
            statuses=STATUS_ORDER,
            errors=delivery_overview.last_errors(session, selected),
            selected=selected,
            lead=lead,
            history=history,
            replayable=REPLAYABLE_STATUSES,
            dead=delivery_overview.dead_counts(session),
            recent_leads=list(
                session.scalars(
                    select(Postback.lead_ref)
                    .group_by(Postback.lead_ref)
                    .order_by(func.max(Postback.id).desc())
                    .limit(10)
                )
            ),
            known_lead=history is not None
            and session.scalar(select(Lead.id).where(Lead.lead_ref == history.lead_ref))
            is not None,
        )


@router.post("/delivery/replay")
async def delivery_replay(request: Request, admin: AdminDep) -> Response:
    """The chosen postbacks (dead, failed or expired), or an event set's dead ones."""
    form = await checked_form(request, admin.csrf_token)
    chosen = [row_id(str(v), MAX_BIG_ID) for v in form.getlist("postback_id")]
    event_set_text = str(form.get("event_set_id", "")).strip()
    event_set_id = row_id(event_set_text)
    lead = str(form.get("lead", "")).strip()
    ids = [i for i in chosen if i is not None]
    try:
        if len(ids) != len(chosen):
            raise InputRejected.one("postback_id", "must be postback ids")
        if event_set_text and event_set_id is None:
            raise InputRejected.one("event_set_id", "there is no event set with this id")
        wanted = ReplayPostbacks.chosen_or_dead(ids, event_set_id)
        outcome = await run_in_threadpool(replay_postbacks, wanted, actor_of(admin))
    except NotPermitted:
        raise
    except InputRejected as error:
        flash(request, str(error), "error")
    else:
        message = f"{len(outcome.requeued)} postback(s) re-queued with the same event_id."
        if outcome.not_rebuilt:
            message += f" {outcome.not_rebuilt} could not be rebuilt (see the lead's history)."
        flash(request, message, "ok" if outcome.requeued or not outcome.requested else "error")
    return see_other(request, "/delivery" + (f"?{urlencode({'lead': lead})}" if lead else ""))


@router.post("/delivery/withdraw-consent")
async def delivery_withdraw_consent(request: Request, admin: AdminDep) -> Response:
    """Editors and owners: the lead withdrew consent; nothing more is sent for it."""
    form = await checked_form(request, admin.csrf_token)
    lead = str(form.get("lead", "")).strip()
    if not lead or len(lead) > 256 or not is_plain_text(lead):
        raise NotFound([FieldError("lead_id", UNKNOWN_LEAD)])
    # An unknown lead is the 404 page, a viewer the 403 one (the command's own checks).
    outcome = await run_in_threadpool(withdraw_consent, WithdrawConsent(lead), actor_of(admin))
    flash(request, outcome.message, "ok")
    return see_other(request, "/delivery?" + urlencode({"lead": lead}))
