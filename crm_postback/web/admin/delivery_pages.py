"""The delivery page: counts by status, TikTok's last errors, one lead's postbacks, replay."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select

from crm_postback.commands.replay_postbacks import ReplayPostbacks, replay_postbacks
from crm_postback.commands.unit_of_work import Actor
from crm_postback.core.errors import InputRejected
from crm_postback.operations import delivery_overview
from crm_postback.operations.postback_reports import lead_history, status_counts
from crm_postback.operations.replay import REPLAYABLE
from crm_postback.web.admin.page_rendering import STATUS_ORDER, flash, render, see_other
from crm_postback.web.admin.security import AdminDep, checked_form
from models import EventSet, Lead, Postback
from models.db import session_scope

router = APIRouter(include_in_schema=False)


@router.get("/delivery")
def delivery_page(
    request: Request, admin: AdminDep, lead: str = "", event_set: str = ""
) -> HTMLResponse:
    with session_scope() as session:
        selected = int(event_set) if event_set.isdigit() else None
        names = {es.id: es.name for es in session.scalars(select(EventSet).order_by(EventSet.name))}
        history = lead_history(session, lead.strip()) if lead.strip() else None
        return render(
            request,
            "delivery.html",
            admin,
            names=names,
            counts=status_counts(session),
            statuses=STATUS_ORDER,
            errors=delivery_overview.last_errors(session, selected),
            selected=selected,
            lead=lead.strip(),
            history=history,
            replayable=REPLAYABLE,
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
    ids = [int(str(v)) for v in form.getlist("postback_id") if str(v).isdigit()]
    event_set_id = str(form.get("event_set_id", ""))
    lead = str(form.get("lead", "")).strip()
    wanted = ReplayPostbacks.chosen_or_dead(
        ids, int(event_set_id) if event_set_id.isdigit() else None
    )
    try:
        outcome = await run_in_threadpool(replay_postbacks, wanted, Actor(admin.actor))
    except InputRejected as error:
        flash(request, str(error), "error")
    else:
        message = f"{len(outcome.requeued)} postback(s) re-queued with the same event_id."
        if outcome.not_rebuilt:
            message += f" {outcome.not_rebuilt} could not be rebuilt (see the lead's history)."
        flash(request, message, "ok" if outcome.requeued or not outcome.requested else "error")
    return see_other(request, "/delivery" + (f"?lead={lead}" if lead else ""))
