"""The mapping pages: the form (create, edit, with its preview), enable/disable, delete,
YAML export. Changes go through `commands.manage_mappings`."""

from __future__ import annotations

import re
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from crm_postback.commands.lookups import NotFound, load_event_set, load_mapping
from crm_postback.commands.manage_mappings import (
    AddMapping,
    DeleteMapping,
    MappingInput,
    SetMappingEnabled,
    UpdateMapping,
    add_mapping,
    delete_mapping,
    set_mapping_enabled,
    update_mapping,
)
from crm_postback.commands.unit_of_work import NotPermitted
from crm_postback.configuration.admin_accounts import Admin
from crm_postback.configuration.mapping_preview import DraftMapping, Preview
from crm_postback.configuration.mapping_service import checked_event_name, list_mappings
from crm_postback.configuration.mapping_yaml import export_mappings, parse_mapping_entry
from crm_postback.core.errors import FieldError, InputRejected
from crm_postback.tiktok.event_catalogue import CONTENT_TYPES, STANDARD_EVENTS, SUPPORTED_CURRENCIES
from crm_postback.web.admin.forms import CUSTOM, OPERATORS, MappingForm, error_map
from crm_postback.web.admin.page_rendering import (
    flash,
    recent_leads,
    render,
    see_other,
)
from crm_postback.web.admin.preview_pages import PreviewInput, run_preview
from crm_postback.web.admin.security import (
    AdminDep,
    actor_of,
    checked_form,
    preview_session,
    require_preview,
    workspace_of,
)
from mappings.validation import BUILT_IN_TRIGGERS
from models import EventSet, Mapping, Trigger
from models.db import session_scope

router = APIRouter(include_in_schema=False)
_NOT_IN_FALLBACK = re.compile(r"[^A-Za-z0-9._-]+")


def attachment(filename: str) -> str:
    """Content-Disposition for any name (RFC 6266): an ASCII `filename` for old clients and
    the exact name as `filename*=UTF-8''…` (RFC 5987). Both are escaped, so no text of the
    name (a line break above all) reaches the header as it is."""
    fallback = _NOT_IN_FALLBACK.sub("_", filename).strip("_.-") or "mappings.yaml"
    exact = quote(filename.encode("utf-8", "replace"), safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}"


@router.get("/event-sets/{event_set_id}/mappings.yaml")
def export_yaml(request: Request, event_set_id: int, admin: AdminDep) -> Response:
    with session_scope(workspace=workspace_of(admin)) as session:
        event_set = load_event_set(session, event_set_id)
        text = export_mappings(event_set, list_mappings(session, event_set))
        filename = f"{event_set.name}-mappings.yaml"
    return Response(
        text,
        media_type="application/yaml; charset=utf-8",
        headers={"Content-Disposition": attachment(filename)},
    )


def _mapping_form_page(
    request: Request,
    admin: Admin,
    session: Session,
    event_set: EventSet,
    mapping: Mapping | None,
    form: MappingForm,
    errors: dict[str, str],
    given: PreviewInput,
    shown: Preview | None = None,
    preview_errors: list[str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    known_triggers = sorted(
        set(BUILT_IN_TRIGGERS)
        | set(
            session.scalars(
                select(Trigger.trigger_type).where(Trigger.event_set_id == event_set.id).distinct()
            )
        )
        | {m.trigger_type for m in list_mappings(session, event_set)}
    )
    shown_fields = {
        "trigger",
        "event",
        "properties.value_from",
        "properties.value",
        "properties.currency",
        "properties.currency_from",
        "properties.order_id_from",
        "properties.content_type",
        "properties.description",
    }
    by_place: dict[str, str] = {}
    for name, message in errors.items():
        parts = name.split(".")
        # A condition's problem is shown on its row: `when.2.value` on row 2.
        place = ".".join(parts[:2]) if parts[0] == "when" and len(parts) > 2 else name
        by_place[place] = f"{by_place[place]}; {message}" if place in by_place else message
    errors = by_place
    other_errors = [
        message
        for name, message in errors.items()
        if name not in shown_fields and not name.startswith("when.")
    ]
    return render(
        request,
        "mapping_form.html",
        admin,
        status_code,
        event_set=event_set,
        mapping=mapping,
        form=form,
        errors=errors,
        other_errors=other_errors,
        standard_events=sorted(STANDARD_EVENTS),
        custom=CUSTOM,
        operators=OPERATORS,
        currencies=sorted(SUPPORTED_CURRENCIES),
        content_types=sorted(CONTENT_TYPES),
        known_triggers=known_triggers,
        leads=recent_leads(session, event_set.id),
        given=given,
        shown=shown,
        preview_errors=preview_errors or [],
    )


@router.get("/event-sets/{event_set_id}/mappings/new")
def mapping_new(request: Request, event_set_id: int, admin: AdminDep) -> HTMLResponse:
    with session_scope(workspace=workspace_of(admin)) as session:
        event_set = load_event_set(session, event_set_id)
        form = MappingForm(trigger="lead.submitted")
        return _mapping_form_page(
            request, admin, session, event_set, None, form, {}, PreviewInput()
        )


@router.get("/event-sets/{event_set_id}/mappings/{mapping_id}")
def mapping_edit(
    request: Request, event_set_id: int, mapping_id: int, admin: AdminDep
) -> HTMLResponse:
    with session_scope(workspace=workspace_of(admin)) as session:
        event_set = load_event_set(session, event_set_id)
        mapping = load_mapping(session, mapping_id, event_set.id)
        form = MappingForm.from_mapping(
            mapping.trigger_type,
            mapping.event_name,
            mapping.enabled,
            mapping.conditions,
            mapping.properties,
        )
        return _mapping_form_page(
            request, admin, session, event_set, mapping, form, {}, PreviewInput()
        )


def _save(
    admin: Admin, event_set_id: int, mapping_id: int | None, wanted: MappingInput
) -> tuple[str, list[str]]:
    """Saves through the command; returns the flash message and the warnings to show."""
    actor = actor_of(admin)
    if mapping_id is None:
        saved = add_mapping(AddMapping(event_set_id, wanted), actor)
    else:
        saved = update_mapping(UpdateMapping(mapping_id, wanted, event_set=event_set_id), actor)
    mapping = saved.mapping
    message = f"Mapping {mapping.id} {saved.outcome} (v{mapping.version}): {saved.summary}"
    return message, [f"{w.field}: {w.message}" for w in saved.warnings]


def _mapping_submit(
    request: Request,
    admin: Admin,
    event_set_id: int,
    mapping_id: int | None,
    data: FormData,
) -> Response:
    # Every answer but a save is the form again, with its errors or a preview: the
    # preview's role first, before the form is read (a save is checked by its command).
    require_preview(admin)
    form = MappingForm.from_form(data)
    given = PreviewInput.from_form(data)
    action = str(data.get("action", "save"))
    entry_dict, form_errors = form.entry()
    # The event name is checked for the event set's kind by the save, or below for a preview.
    entry, entry_errors = parse_mapping_entry(entry_dict, kind=None)
    errors = error_map(form_errors + entry_errors)
    if entry is not None and not errors and action != "preview":
        try:
            message, warnings = _save(
                admin, event_set_id, mapping_id, MappingInput.from_entry(entry)
            )
        except NotFound:
            raise
        except NotPermitted:
            raise
        except InputRejected as rejected:
            errors = error_map(rejected.errors)
        else:
            flash(request, message)
            for warning in warnings:
                flash(request, warning, "warn")
            return see_other(request, f"/event-sets/{event_set_id}")
    previewing = entry is not None and not errors
    opened = preview_session(admin) if previewing else session_scope(workspace=workspace_of(admin))
    with opened as session:
        event_set = load_event_set(session, event_set_id)
        mapping = (
            load_mapping(session, mapping_id, event_set.id) if mapping_id is not None else None
        )
        if entry is not None and not errors:
            kept = mapping.event_name if mapping is not None else None
            try:
                checked_event_name(entry.event_name, event_set.kind, kept=kept)
            except InputRejected as rejected:
                errors = error_map(rejected.errors)
        if errors or entry is None:
            return _mapping_form_page(
                request, admin, session, event_set, mapping, form, errors, given, status_code=400
            )
        draft = DraftMapping(
            entry.trigger_type,
            entry.event_name,
            entry.conditions,
            entry.properties,
            entry.enabled,
            replaces=mapping_id,
        )
        shown, problems = run_preview(session, event_set, given, entry.trigger_type, draft)
        return _mapping_form_page(
            request, admin, session, event_set, mapping, form, {}, given, shown, problems
        )


@router.post("/event-sets/{event_set_id}/mappings/new")
async def mapping_create(request: Request, event_set_id: int, admin: AdminDep) -> Response:
    data = await checked_form(request, admin.csrf_token)
    return await run_in_threadpool(_mapping_submit, request, admin, event_set_id, None, data)


@router.post("/event-sets/{event_set_id}/mappings/{mapping_id}")
async def mapping_save(
    request: Request, event_set_id: int, mapping_id: int, admin: AdminDep
) -> Response:
    data = await checked_form(request, admin.csrf_token)
    return await run_in_threadpool(_mapping_submit, request, admin, event_set_id, mapping_id, data)


def _toggle_or_delete(admin: Admin, event_set_id: int, mapping_id: int, action: str) -> str:
    actor = actor_of(admin)
    if action == "delete":
        deleted = delete_mapping(DeleteMapping(mapping_id, event_set=event_set_id), actor)
        return f"Mapping {mapping_id} deleted ({deleted.summary}). Its postbacks are kept."
    saved = set_mapping_enabled(
        SetMappingEnabled(mapping_id, enabled=None, event_set=event_set_id), actor
    )
    state = "enabled" if saved.mapping.enabled else "disabled"
    return f"Mapping {mapping_id} {state} (v{saved.mapping.version})."


@router.post("/event-sets/{event_set_id}/mappings/{mapping_id}/{action}")
async def mapping_action(
    request: Request, event_set_id: int, mapping_id: int, action: str, admin: AdminDep
) -> Response:
    if action not in ("toggle", "delete"):
        raise NotFound([FieldError("action", f"no action {action!r}")])
    await checked_form(request, admin.csrf_token)
    message = await run_in_threadpool(_toggle_or_delete, admin, event_set_id, mapping_id, action)
    flash(request, message)
    return see_other(request, f"/event-sets/{event_set_id}")
