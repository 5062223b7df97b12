"""The event set pages: list, create, show, edit, and the actions (pause, resume, test code,
verify, replace token, mapping preset). Changes go through `commands.manage_event_sets` (the
preset: `commands.manage_mappings`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select
from starlette.datastructures import FormData

from crm_postback.commands.lookups import NotFound, load_event_set
from crm_postback.commands.manage_event_sets import (
    AddEventSet,
    PauseEventSet,
    ReplaceToken,
    ResumeEventSet,
    UpdateEventSet,
    VerifyEventSet,
    add_event_set,
    pause_event_set,
    replace_token,
    resume_event_set,
    update_event_set,
    verify_event_set,
)
from crm_postback.commands.manage_mappings import ApplyPreset, apply_preset
from crm_postback.commands.unit_of_work import NotPermitted
from crm_postback.configuration import audit
from crm_postback.configuration.admin_accounts import Admin
from crm_postback.configuration.event_set_service import event_age_limit
from crm_postback.configuration.mapping_presets import LEAD_GENERATION, PRESETS, preset_mappings
from crm_postback.configuration.mapping_service import (
    describe_mapping,
    event_name_warnings,
    list_mappings,
)
from crm_postback.core.errors import FieldError, InputRejected
from crm_postback.core.settings import get_settings
from crm_postback.operations.postback_reports import status_counts
from crm_postback.tiktok.event_catalogue import STANDARD_EVENTS, SUPPORTED_CURRENCIES
from crm_postback.web.admin.forms import error_map
from crm_postback.web.admin.page_rendering import (
    STATUS_ORDER,
    flash,
    recent_leads,
    render,
    see_other,
)
from crm_postback.web.admin.security import AdminDep, actor_of, checked_form, workspace_of
from crm_postback.web.admin.token_display import shown_changes, shown_token
from mappings.rules import Condition, PropertyRules
from models import EventSet, Mapping
from models.db import session_scope

router = APIRouter(include_in_schema=False)
# `/event-sets/{id}/{action}` alone: registered after every other page, which it would shadow.
action_router = APIRouter(include_in_schema=False)

EVENT_SET_FIELDS = (
    "name",
    "event_set_id",
    "kind",
    "advertiser_id",
    "access_token",
    "lead_event_source",
    "currency",
    "test_event_code",
    "max_event_age_days",
)
CHECKBOXES = ("limited_data_use", "preset")


@router.get("/event-sets")
def event_sets_page(request: Request, admin: AdminDep) -> HTMLResponse:
    with session_scope(workspace=workspace_of(admin)) as session:
        rows = list(session.scalars(select(EventSet).order_by(EventSet.name)))
        mapping_counts = dict(
            session.execute(
                select(Mapping.event_set_id, func.count()).group_by(Mapping.event_set_id)
            ).all()
        )
        counts = status_counts(session)
        items = [
            {
                "event_set": es,
                "token": shown_token(admin, es.sealed_token),
                "mappings": mapping_counts.get(es.id, 0),
                "counts": counts.get(es.name, {}),
            }
            for es in rows
        ]
    return render(request, "event_sets.html", admin, items=items)


def _form_values_of(event_set: EventSet | None) -> dict[str, str]:
    if event_set is None:
        return {"kind": "crm", "lead_event_source": "crm-postback"}
    age = event_set.max_event_age_days
    return {
        "limited_data_use": "on" if event_set.limited_data_use else "",
        "max_event_age_days": f"{age:g}" if age is not None else "",
        "name": event_set.name,
        "event_set_id": event_set.source_id,
        "kind": event_set.kind,
        "advertiser_id": event_set.advertiser_id or "",
        "lead_event_source": event_set.lead_event_source,
        "currency": event_set.default_currency or "",
        "test_event_code": event_set.test_event_code or "",
    }


def _render_form(
    request: Request,
    admin: Admin,
    event_set: EventSet | None,
    values: dict[str, str],
    errors: dict[str, str],
    token: str | None = None,
) -> HTMLResponse:
    return render(
        request,
        "event_set_form.html",
        admin,
        400 if errors else 200,
        event_set=event_set,
        values=values,
        errors=errors,
        token=token,
        currencies=sorted(SUPPORTED_CURRENCIES),
        age_defaults=_age_defaults(),
        presets=PRESETS,
    )


def _age_defaults() -> dict[str, str]:
    settings = get_settings()
    return {kind: f"{settings.event_age_limit_days(kind, None):g}" for kind in ("crm", "web")}


def _age(text: str) -> float | None:
    """The form's age field: empty is the event source's default."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise InputRejected.one("max_event_age_days", "must be a number of days") from None


@router.get("/event-sets/new")
def event_set_new(request: Request, admin: AdminDep) -> HTMLResponse:
    return _render_form(request, admin, None, _form_values_of(None), {})


def _typed_values(form: FormData) -> dict[str, str]:
    values = {name: str(form.get(name, "")).strip() for name in EVENT_SET_FIELDS}
    for name in CHECKBOXES:
        values[name] = "on" if form.get(name) else ""
    return values


@router.post("/event-sets/new")
async def event_set_create(request: Request, admin: AdminDep) -> Response:
    form = await checked_form(request, admin.csrf_token)
    values = _typed_values(form)
    try:
        wanted = AddEventSet(
            name=values["name"],
            source_id=values["event_set_id"],
            access_token=str(form.get("access_token", "")),
            kind=values["kind"] or "crm",
            lead_event_source=values["lead_event_source"] or "crm-postback",
            test_event_code=values["test_event_code"] or None,
            advertiser_id=values["advertiser_id"] or None,
            default_currency=values["currency"] or None,
            limited_data_use=bool(values["limited_data_use"]),
            max_event_age_days=_age(values["max_event_age_days"]),
            preset=LEAD_GENERATION if values["preset"] else None,
        )
        created = await run_in_threadpool(add_event_set, wanted, actor_of(admin))
    except NotPermitted:
        raise
    except InputRejected as rejected:
        values.pop("access_token", None)  # never sent back, even masked
        return _render_form(request, admin, None, values, error_map(rejected.errors))
    if values["preset"]:
        flash(request, f"Event set {values['name']!r} created with the lead-generation mappings.")
    else:
        flash(request, f"Event set {values['name']!r} created. Now add its mappings.")
    return see_other(request, f"/event-sets/{created.id}")


@router.get("/event-sets/{event_set_id}")
def event_set_page(request: Request, event_set_id: int, admin: AdminDep) -> HTMLResponse:
    with session_scope(workspace=workspace_of(admin)) as session:
        event_set = load_event_set(session, event_set_id)
        rows = [
            {
                "mapping": m,
                "standard": m.event_name in STANDARD_EVENTS,
                "conditions": [Condition.model_validate(c).describe() for c in m.conditions],
                "properties": _properties_text(m),
                "summary": describe_mapping(m),
                "warnings": [w.message for w in event_name_warnings(m.event_name, event_set.kind)],
            }
            for m in list_mappings(session, event_set)
        ]
        changes = audit.entries(session, event_set_id=event_set.id, limit=8)
        return render(
            request,
            "event_set.html",
            admin,
            event_set=event_set,
            token=shown_token(admin, event_set.sealed_token),
            rows=rows,
            counts=status_counts(session).get(event_set.name, {}),
            statuses=STATUS_ORDER,
            changes=shown_changes(admin, changes),
            leads=recent_leads(session, event_set.id),
            age_limit=f"{event_age_limit(event_set, get_settings()):g}",
            preset_names=[
                (m.trigger_type, m.event_name)
                for m in preset_mappings(LEAD_GENERATION, event_set.kind)
            ],
        )


def _properties_text(mapping: Mapping) -> list[str]:
    rules = PropertyRules.model_validate(mapping.properties or {})
    return [
        f"{name} {'←' if from_attribute else '='} {value}"
        for name, from_attribute, value in rules.describe()
    ]


@router.get("/event-sets/{event_set_id}/edit")
def event_set_edit(request: Request, event_set_id: int, admin: AdminDep) -> HTMLResponse:
    with session_scope(workspace=workspace_of(admin)) as session:
        event_set = load_event_set(session, event_set_id)
        return _render_form(
            request,
            admin,
            event_set,
            _form_values_of(event_set),
            {},
            token=shown_token(admin, event_set.sealed_token),
        )


@router.post("/event-sets/{event_set_id}/edit")
async def event_set_save(request: Request, event_set_id: int, admin: AdminDep) -> Response:
    form = await checked_form(request, admin.csrf_token)
    values = _typed_values(form)
    new_token = str(form.get("access_token", ""))
    try:
        wanted = UpdateEventSet(
            event_set_id,
            name=values["name"],
            advertiser_id=values["advertiser_id"],
            lead_event_source=values["lead_event_source"],
            default_currency=values["currency"],
            test_event_code=values["test_event_code"],
            access_token=new_token if new_token.strip() else None,
            limited_data_use=bool(values["limited_data_use"]),
            max_event_age_days=_age(values["max_event_age_days"]),
        )
        await run_in_threadpool(update_event_set, wanted, actor_of(admin))
    except NotFound:
        raise
    except NotPermitted:
        raise
    except InputRejected as rejected:
        with session_scope(workspace=workspace_of(admin)) as session:
            event_set = load_event_set(session, event_set_id)
            hint = shown_token(admin, event_set.sealed_token)
            values["event_set_id"], values["kind"] = event_set.source_id, event_set.kind
            errors = error_map(rejected.errors)
            return _render_form(request, admin, event_set, values, errors, hint)
    flash(request, "Event set saved." + (" The token was replaced." if new_token.strip() else ""))
    return see_other(request, f"/event-sets/{event_set_id}")


def _test_code(form: FormData) -> str | None:
    code = str(form.get("test_event_code", "")).strip() or None
    if form.get("turn") == "off":
        return None
    if code is None:
        raise InputRejected.one("test_event_code", "type the code from TikTok's Test Events tab")
    return code


def _act(action: str, event_set_id: int, form: FormData, admin: Admin) -> tuple[str, str]:
    actor = actor_of(admin)
    if action == "pause":
        reason = str(form.get("reason", "")).strip() or f"paused by {admin.username}"
        pause_event_set(PauseEventSet(event_set_id, reason), actor)
        return "ok", "Paused: postbacks are held (nothing is dropped)."
    if action == "resume":
        resume_event_set(ResumeEventSet(event_set_id), actor)
        return "ok", "Resumed: held postbacks go out with the next sweep."
    if action == "test-code":
        code = _test_code(form)
        update_event_set(UpdateEventSet(event_set_id, test_event_code=code), actor)
        if code:
            return "ok", f"Test events on: every request carries test_event_code {code!r}."
        return "ok", "Test events off: events count for real."
    if action == "token":
        replace_token(ReplaceToken(event_set_id, str(form.get("access_token", ""))), actor)
        return "ok", "Token replaced."
    if action == "preset":
        applied = apply_preset(ApplyPreset(event_set_id, LEAD_GENERATION), actor)
        return "ok", f"Lead-generation preset: {applied.summary}. Edit them like any mapping."
    result = verify_event_set(VerifyEventSet(event_set_id), actor)
    return ("ok" if result.ok else "error"), result.message


@action_router.post("/event-sets/{event_set_id}/{action}")
async def event_set_action(
    request: Request, event_set_id: int, action: str, admin: AdminDep
) -> Response:
    if action not in ("pause", "resume", "test-code", "verify", "token", "preset"):
        raise NotFound([FieldError("action", f"no action {action!r}")])
    form = await checked_form(request, admin.csrf_token)
    try:
        kind, message = await run_in_threadpool(_act, action, event_set_id, form, admin)
    except NotFound:
        raise
    except NotPermitted:
        raise
    except InputRejected as rejected:
        kind, message = "error", "; ".join(e.message for e in rejected.errors)
    flash(request, message, kind)
    return see_other(request, f"/event-sets/{event_set_id}")
