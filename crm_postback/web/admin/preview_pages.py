"""The preview page: the exact request TikTok would get for a trigger, sending nothing.
`PreviewInput` and `run_preview` also serve the mapping form's "Preview payload"."""

from __future__ import annotations

import json
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from crm_postback.commands.lookups import MAX_BIG_ID, load_event_set, row_id
from crm_postback.commands.unit_of_work import NotPermitted
from crm_postback.configuration.admin_accounts import Admin
from crm_postback.configuration.mapping_preview import DraftMapping, Preview, preview
from crm_postback.configuration.mapping_service import list_mappings
from crm_postback.core.errors import InputRejected
from crm_postback.core.settings import get_settings
from crm_postback.web.admin.page_rendering import recent_leads, render
from crm_postback.web.admin.security import AdminDep, checked_form, preview_session, workspace_of
from mappings.validation import BUILT_IN_TRIGGERS
from models import EventSet, Trigger
from models.db import session_scope

router = APIRouter(include_in_schema=False)


@dataclass
class PreviewInput:
    lead_id: str = ""
    trigger_type: str = ""
    attributes: str = "{}"
    sample: str = ""
    trigger_id: str = ""

    @classmethod
    def from_form(cls, form: FormData) -> PreviewInput:
        return cls(
            lead_id=str(form.get("preview_lead", "")).strip(),
            trigger_type=str(form.get("preview_type", "")).strip(),
            attributes=str(form.get("preview_attributes", "")).strip() or "{}",
            sample=str(form.get("preview_sample", "")).strip(),
            trigger_id=str(form.get("preview_trigger_id", "")).strip(),
        )


def run_preview(
    session: Session,
    event_set: EventSet,
    given: PreviewInput,
    trigger_type: str,
    draft: DraftMapping | None,
) -> tuple[Preview | None, list[str]]:
    try:
        if given.trigger_id:
            trigger_id = row_id(given.trigger_id, MAX_BIG_ID)
            if trigger_id is None:
                return None, ["trigger id: must be the id of a stored trigger"]
            result = preview(session, get_settings(), event_set, trigger_id=trigger_id, draft=draft)
            return result, []
        if given.sample:
            try:
                trigger = json.loads(given.sample)
            except json.JSONDecodeError as error:
                return None, [f"sample trigger: not valid JSON ({error.msg}, line {error.lineno})"]
            except (ValueError, RecursionError):
                return None, ["sample trigger: not valid JSON (too deep, or a number too long)"]
            if not isinstance(trigger, dict):
                return None, ["sample trigger: must be a JSON object like the ingest API takes"]
        else:
            if not given.lead_id:
                return None, ["lead id: pick a stored lead (or paste a sample trigger)"]
            try:
                attributes = json.loads(given.attributes or "{}")
            except json.JSONDecodeError as error:
                return None, [f"attributes: not valid JSON ({error.msg})"]
            except (ValueError, RecursionError):
                return None, ["attributes: not valid JSON (too deep, or a number too long)"]
            trigger = {
                "type": trigger_type or given.trigger_type,
                "lead_id": given.lead_id,
                "attributes": attributes,
            }
        return preview(session, get_settings(), event_set, trigger=trigger, draft=draft), []
    except NotPermitted:
        raise
    except InputRejected as rejected:
        return None, [str(e) for e in rejected.errors]


def _preview_page(
    request: Request, admin: Admin, event_set_id: int, given: PreviewInput, run: bool
) -> HTMLResponse:
    opened = preview_session(admin) if run else session_scope(workspace=workspace_of(admin))
    with opened as session:
        event_set = load_event_set(session, event_set_id)
        shown: Preview | None = None
        problems: list[str] = []
        if run:
            shown, problems = run_preview(session, event_set, given, given.trigger_type, None)
        triggers = list(
            session.scalars(
                select(Trigger)
                .where(Trigger.event_set_id == event_set.id)
                .order_by(Trigger.id.desc())
                .limit(15)
            )
        )
        types = sorted({m.trigger_type for m in list_mappings(session, event_set)})
        return render(
            request,
            "preview.html",
            admin,
            event_set=event_set,
            given=given,
            shown=shown,
            preview_errors=problems,
            triggers=triggers,
            leads=recent_leads(session, event_set.id),
            trigger_types=sorted(set(types) | set(BUILT_IN_TRIGGERS)),
        )


@router.get("/event-sets/{event_set_id}/preview")
def preview_page(
    request: Request, event_set_id: int, admin: AdminDep, trigger_id: str = ""
) -> HTMLResponse:
    given = PreviewInput(trigger_id=trigger_id)
    return _preview_page(request, admin, event_set_id, given, run=bool(trigger_id))


@router.post("/event-sets/{event_set_id}/preview")
async def preview_run(request: Request, event_set_id: int, admin: AdminDep) -> HTMLResponse:
    form = await checked_form(request, admin.csrf_token)
    given = PreviewInput.from_form(form)
    return await run_in_threadpool(_preview_page, request, admin, event_set_id, given, True)
