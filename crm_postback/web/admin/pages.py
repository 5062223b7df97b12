"""The admin pages: event sets, mappings (with preview), delivery, audit, login."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from crm_postback.configuration import audit
from crm_postback.configuration.admin_accounts import (
    Admin,
    LoginRefused,
    authenticate,
    csrf_matches,
    end_session,
    start_session,
)
from crm_postback.configuration.event_set_service import (
    create_event_set,
    pause,
    resume,
    rotate_token,
    set_test_event_code,
    update_event_set,
)
from crm_postback.configuration.event_set_verification import verify_event_set
from crm_postback.configuration.mapping_preview import DraftMapping, Preview, preview
from crm_postback.configuration.mapping_service import (
    add_mapping,
    delete_mapping,
    describe_mapping,
    list_mappings,
    update_mapping,
)
from crm_postback.configuration.mapping_yaml import export_mappings, parse_mapping_entry
from crm_postback.core.errors import InputRejected
from crm_postback.core.settings import get_settings
from crm_postback.core.token_vault import token_hint
from crm_postback.operations.postback_reports import lead_history, status_counts
from crm_postback.tiktok.event_catalogue import CONTENT_TYPES, STANDARD_EVENTS, SUPPORTED_CURRENCIES
from crm_postback.web.admin import delivery
from crm_postback.web.admin.forms import CUSTOM, OPERATORS, MappingForm, error_map
from crm_postback.web.admin.security import AdminDep, checked_form, login_csrf, same_origin
from mappings.validation import BUILT_IN_TRIGGERS
from models import EventSet, Lead, Mapping, Postback, Trigger
from models.db import session_scope

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.filters["pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False)
templates.env.filters["compact"] = lambda value: json.dumps(value, ensure_ascii=False)
templates.env.filters["when"] = lambda value: f"{value:%Y-%m-%d %H:%M:%S} UTC" if value else "—"

STATUS_ORDER = (
    "pending",
    "sending",
    "retrying",
    "delivered",
    "failed",
    "dead",
    "expired",
    "unmapped",
)
EVENT_SET_FIELDS = (
    "name",
    "event_set_id",
    "kind",
    "advertiser_id",
    "access_token",
    "lead_event_source",
    "currency",
    "test_event_code",
)


def root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def see_other(request: Request, path: str) -> RedirectResponse:
    return RedirectResponse(root(request) + path, status_code=303)


def flash(request: Request, message: str, kind: str = "ok") -> None:
    messages = list(request.session.get("flash", []))
    messages.append([kind, message])
    request.session["flash"] = messages


def render(
    request: Request,
    name: str,
    admin: Admin | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    messages = request.session.pop("flash", [])
    return templates.TemplateResponse(
        request,
        name,
        {
            "admin": admin,
            "csrf": admin.csrf_token if admin else None,
            "root": root(request),
            "flashes": messages,
            **context,
        },
        status_code=status_code,
        headers={"Cache-Control": "no-store"},
    )


def _event_set(session: Session, event_set_id: int) -> EventSet:
    event_set = session.get(EventSet, event_set_id)
    if event_set is None:
        raise NotFound(f"there is no event set {event_set_id}")
    return event_set


def _mapping(session: Session, event_set: EventSet, mapping_id: int) -> Mapping:
    mapping = session.get(Mapping, mapping_id)
    if mapping is None or mapping.event_set_id != event_set.id:
        raise NotFound(f"event set {event_set.name!r} has no mapping {mapping_id}")
    return mapping


class NotFound(Exception):
    pass


# --- login ------------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, next: str = "") -> HTMLResponse:
    token = login_csrf(request)
    return render(request, "login.html", None, login_csrf=token, next=next, error=None)


def _safe_next(request: Request, target: str) -> str:
    prefix = root(request) + "/"
    if target.startswith(prefix) and not target.startswith("//") and "\\" not in target:
        return target
    return root(request) + "/event-sets"


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    expected = request.session.get("login_csrf")
    if not same_origin(request) or not csrf_matches(expected, str(form.get("csrf_token", ""))):
        token = login_csrf(request)
        error = "the login form expired; please try again"
        return render(request, "login.html", None, 403, login_csrf=token, next="", error=error)
    username = str(form.get("username", ""))
    password = str(form.get("password", ""))
    next_url = str(form.get("next", ""))

    def attempt() -> str | LoginRefused:
        with session_scope() as session:
            try:
                user = authenticate(session, get_settings(), username, password)
            except LoginRefused as refused:
                session.commit()  # the failed-attempt counter
                return refused
            session_id = start_session(session, get_settings(), user)
            session.commit()
            return session_id

    outcome = await run_in_threadpool(attempt)
    if isinstance(outcome, LoginRefused):
        return render(
            request,
            "login.html",
            None,
            401,
            login_csrf=login_csrf(request),
            next=next_url,
            error=str(outcome),
            username=username,
        )
    request.session.clear()
    request.session["sid"] = outcome
    return RedirectResponse(_safe_next(request, next_url), status_code=303)


@router.post("/logout")
async def logout(request: Request, admin: AdminDep) -> Response:
    await checked_form(request, admin.csrf_token)
    session_id = request.session.get("sid")

    def end() -> None:
        with session_scope() as session:
            end_session(session, str(session_id))
            session.commit()

    await run_in_threadpool(end)
    request.session.clear()
    flash(request, "You are logged out.")
    return see_other(request, "/login")


@router.get("/")
def home(request: Request, admin: AdminDep) -> Response:
    return see_other(request, "/event-sets")


# --- event sets -------------------------------------------------------------------------


@router.get("/event-sets")
def event_sets_page(request: Request, admin: AdminDep) -> HTMLResponse:
    settings = get_settings()
    with session_scope() as session:
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
                "token": token_hint(es.sealed_token, settings),
                "mappings": mapping_counts.get(es.id, 0),
                "counts": counts.get(es.name, {}),
            }
            for es in rows
        ]
    return render(request, "event_sets.html", admin, items=items)


def _event_set_form_values(event_set: EventSet | None) -> dict[str, str]:
    if event_set is None:
        return {"kind": "crm", "lead_event_source": "crm-postback"}
    return {
        "name": event_set.name,
        "event_set_id": event_set.source_id,
        "kind": event_set.kind,
        "advertiser_id": event_set.advertiser_id or "",
        "lead_event_source": event_set.lead_event_source,
        "currency": event_set.default_currency or "",
        "test_event_code": event_set.test_event_code or "",
    }


def _render_event_set_form(
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
    )


@router.get("/event-sets/new")
def event_set_new(request: Request, admin: AdminDep) -> HTMLResponse:
    return _render_event_set_form(request, admin, None, _event_set_form_values(None), {})


def _form_values(form: FormData) -> dict[str, str]:
    return {name: str(form.get(name, "")).strip() for name in EVENT_SET_FIELDS}


@router.post("/event-sets/new")
async def event_set_create(request: Request, admin: AdminDep) -> Response:
    form = await checked_form(request, admin.csrf_token)
    values = _form_values(form)
    token = str(form.get("access_token", ""))

    def create() -> int | dict[str, str]:
        with session_scope() as session:
            try:
                event_set = create_event_set(
                    session,
                    get_settings(),
                    name=values["name"],
                    source_id=values["event_set_id"],
                    access_token=token,
                    kind=values["kind"] or "crm",
                    lead_event_source=values["lead_event_source"] or "crm-postback",
                    test_event_code=values["test_event_code"] or None,
                    advertiser_id=values["advertiser_id"] or None,
                    default_currency=values["currency"] or None,
                    actor=admin.actor,
                )
            except InputRejected as rejected:
                return error_map(rejected.errors)
            session.commit()
            return event_set.id

    outcome = await run_in_threadpool(create)
    if isinstance(outcome, dict):
        values.pop("access_token", None)  # never sent back, even masked
        return _render_event_set_form(request, admin, None, values, outcome)
    flash(request, f"Event set {values['name']!r} created. Now add its mappings.")
    return see_other(request, f"/event-sets/{outcome}")


@router.get("/event-sets/{event_set_id}")
def event_set_page(request: Request, event_set_id: int, admin: AdminDep) -> HTMLResponse:
    settings = get_settings()
    with session_scope() as session:
        event_set = _event_set(session, event_set_id)
        mappings = list_mappings(session, event_set)
        rows = [
            {
                "mapping": m,
                "standard": m.event_name in STANDARD_EVENTS,
                "conditions": _conditions_text(m),
                "properties": _properties_text(m),
                "summary": describe_mapping(m),
            }
            for m in mappings
        ]
        counts = status_counts(session).get(event_set.name, {})
        changes = audit.entries(session, event_set_id=event_set.id, limit=8)
        leads = _recent_leads(session, event_set.id)
        return render(
            request,
            "event_set.html",
            admin,
            event_set=event_set,
            token=token_hint(event_set.sealed_token, settings),
            rows=rows,
            counts=counts,
            statuses=STATUS_ORDER,
            changes=[(e, audit.changes(e)) for e in changes],
            leads=leads,
        )


def _conditions_text(mapping: Mapping) -> list[str]:
    from mappings.rules import Condition

    return [Condition.model_validate(c).describe() for c in mapping.conditions]


def _properties_text(mapping: Mapping) -> list[str]:
    from mappings.rules import PropertyRules

    rules = PropertyRules.model_validate(mapping.properties or {})
    return [
        f"{name} {'←' if from_attribute else '='} {value}"
        for name, from_attribute, value in rules.describe()
    ]


def _recent_leads(session: Session, event_set_id: int, limit: int = 20) -> list[str]:
    return list(
        session.scalars(
            select(Trigger.lead_ref)
            .where(Trigger.event_set_id == event_set_id)
            .group_by(Trigger.lead_ref)
            .order_by(func.max(Trigger.id).desc())
            .limit(limit)
        )
    )


@router.get("/event-sets/{event_set_id}/edit")
def event_set_edit(request: Request, event_set_id: int, admin: AdminDep) -> HTMLResponse:
    settings = get_settings()
    with session_scope() as session:
        event_set = _event_set(session, event_set_id)
        return _render_event_set_form(
            request,
            admin,
            event_set,
            _event_set_form_values(event_set),
            {},
            token=token_hint(event_set.sealed_token, settings),
        )


@router.post("/event-sets/{event_set_id}/edit")
async def event_set_save(request: Request, event_set_id: int, admin: AdminDep) -> Response:
    form = await checked_form(request, admin.csrf_token)
    values = _form_values(form)
    new_token = str(form.get("access_token", ""))

    def save() -> dict[str, str] | None:
        settings = get_settings()
        with session_scope() as session:
            event_set = _event_set(session, event_set_id)
            try:
                update_event_set(
                    session,
                    event_set,
                    actor=admin.actor,
                    name=values["name"],
                    advertiser_id=values["advertiser_id"],
                    lead_event_source=values["lead_event_source"],
                    default_currency=values["currency"],
                    test_event_code=values["test_event_code"],
                )
                if new_token.strip():
                    rotate_token(session, settings, event_set, new_token, actor=admin.actor)
            except InputRejected as rejected:
                return error_map(rejected.errors)
            session.commit()
            return None

    errors = await run_in_threadpool(save)
    if errors:
        with session_scope() as session:
            event_set = _event_set(session, event_set_id)
            hint = token_hint(event_set.sealed_token, get_settings())
            values["event_set_id"], values["kind"] = event_set.source_id, event_set.kind
            return _render_event_set_form(request, admin, event_set, values, errors, hint)
    flash(request, "Event set saved." + (" The token was replaced." if new_token.strip() else ""))
    return see_other(request, f"/event-sets/{event_set_id}")


@router.get("/event-sets/{event_set_id}/mappings.yaml")
def export_yaml(request: Request, event_set_id: int, admin: AdminDep) -> Response:
    with session_scope() as session:
        event_set = _event_set(session, event_set_id)
        text = export_mappings(event_set, list_mappings(session, event_set))
        filename = f"{event_set.name}-mappings.yaml".replace('"', "")
    return Response(
        text,
        media_type="application/yaml; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# --- mappings ---------------------------------------------------------------------------


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


def _run_preview(
    session: Session,
    event_set: EventSet,
    given: PreviewInput,
    trigger_type: str,
    draft: DraftMapping | None,
) -> tuple[Preview | None, list[str]]:
    try:
        if given.trigger_id:
            if not given.trigger_id.isdigit():
                return None, ["trigger id: must be a number"]
            result = preview(
                session, get_settings(), event_set, trigger_id=int(given.trigger_id), draft=draft
            )
            return result, []
        if given.sample:
            try:
                trigger = json.loads(given.sample)
            except json.JSONDecodeError as error:
                return None, [f"sample trigger: not valid JSON ({error.msg}, line {error.lineno})"]
            if not isinstance(trigger, dict):
                return None, ["sample trigger: must be a JSON object like the ingest API takes"]
        else:
            if not given.lead_id:
                return None, ["lead id: pick a stored lead (or paste a sample trigger)"]
            try:
                attributes = json.loads(given.attributes or "{}")
            except json.JSONDecodeError as error:
                return None, [f"attributes: not valid JSON ({error.msg})"]
            trigger = {
                "type": trigger_type or given.trigger_type,
                "lead_id": given.lead_id,
                "attributes": attributes,
            }
        return preview(session, get_settings(), event_set, trigger=trigger, draft=draft), []
    except InputRejected as rejected:
        return None, [str(e) for e in rejected.errors]


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
        leads=_recent_leads(session, event_set.id),
        given=given,
        shown=shown,
        preview_errors=preview_errors or [],
    )


@router.get("/event-sets/{event_set_id}/mappings/new")
def mapping_new(request: Request, event_set_id: int, admin: AdminDep) -> HTMLResponse:
    with session_scope() as session:
        event_set = _event_set(session, event_set_id)
        form = MappingForm(trigger="lead.submitted")
        return _mapping_form_page(
            request, admin, session, event_set, None, form, {}, PreviewInput()
        )


@router.get("/event-sets/{event_set_id}/mappings/{mapping_id}")
def mapping_edit(
    request: Request, event_set_id: int, mapping_id: int, admin: AdminDep
) -> HTMLResponse:
    with session_scope() as session:
        event_set = _event_set(session, event_set_id)
        mapping = _mapping(session, event_set, mapping_id)
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


def _mapping_submit(
    request: Request,
    admin: Admin,
    event_set_id: int,
    mapping_id: int | None,
    data: FormData,
) -> Response:
    form = MappingForm.from_form(data)
    given = PreviewInput.from_form(data)
    action = str(data.get("action", "save"))
    entry_dict, form_errors = form.entry()
    entry, entry_errors = parse_mapping_entry(entry_dict)
    errors = error_map(form_errors + entry_errors)
    with session_scope() as session:
        event_set = _event_set(session, event_set_id)
        mapping = _mapping(session, event_set, mapping_id) if mapping_id is not None else None
        if errors or entry is None:
            return _mapping_form_page(
                request, admin, session, event_set, mapping, form, errors, given, status_code=400
            )
        if action == "preview":
            draft = DraftMapping(
                entry.trigger_type,
                entry.event_name,
                entry.conditions,
                entry.properties,
                entry.enabled,
                replaces=mapping_id,
            )
            shown, problems = _run_preview(session, event_set, given, entry.trigger_type, draft)
            return _mapping_form_page(
                request, admin, session, event_set, mapping, form, {}, given, shown, problems
            )
        try:
            if mapping is None:
                mapping = add_mapping(
                    session,
                    event_set,
                    **entry.fields(),
                    actor=admin.actor,
                )
                verb = "created"
            else:
                before = mapping.version
                update_mapping(
                    session,
                    mapping,
                    **entry.fields(),
                    actor=admin.actor,
                )
                verb = "saved" if mapping.version != before else "unchanged"
        except InputRejected as rejected:
            return _mapping_form_page(
                request,
                admin,
                session,
                event_set,
                mapping,
                form,
                error_map(rejected.errors),
                given,
                status_code=400,
            )
        session.commit()
        flash(
            request,
            f"Mapping {mapping.id} {verb} (v{mapping.version}): {describe_mapping(mapping)}",
        )
        return see_other(request, f"/event-sets/{event_set_id}")


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


@router.post("/event-sets/{event_set_id}/mappings/{mapping_id}/{action}")
async def mapping_action(
    request: Request, event_set_id: int, mapping_id: int, action: str, admin: AdminDep
) -> Response:
    if action not in ("toggle", "delete"):
        raise NotFound(f"no action {action!r}")
    await checked_form(request, admin.csrf_token)

    def act() -> str:
        with session_scope() as session:
            event_set = _event_set(session, event_set_id)
            mapping = _mapping(session, event_set, mapping_id)
            label = describe_mapping(mapping)
            if action == "delete":
                delete_mapping(session, mapping, actor=admin.actor)
                message = f"Mapping {mapping_id} deleted ({label}). Its postbacks are kept."
            else:
                update_mapping(session, mapping, enabled=not mapping.enabled, actor=admin.actor)
                state = "enabled" if mapping.enabled else "disabled"
                message = f"Mapping {mapping_id} {state} (v{mapping.version})."
            session.commit()
            return message

    flash(request, await run_in_threadpool(act))
    return see_other(request, f"/event-sets/{event_set_id}")


# --- preview ----------------------------------------------------------------------------


def _preview_page(
    request: Request, admin: Admin, event_set_id: int, given: PreviewInput, run: bool
) -> HTMLResponse:
    with session_scope() as session:
        event_set = _event_set(session, event_set_id)
        shown, problems = (None, [])
        if run:
            shown, problems = _run_preview(session, event_set, given, given.trigger_type, None)
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
            leads=_recent_leads(session, event_set.id),
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


# --- delivery ---------------------------------------------------------------------------


@router.get("/delivery")
def delivery_page(
    request: Request, admin: AdminDep, lead: str = "", event_set: str = ""
) -> HTMLResponse:
    with session_scope() as session:
        selected = int(event_set) if event_set.isdigit() else None
        names = {es.id: es.name for es in session.scalars(select(EventSet).order_by(EventSet.name))}
        counts = status_counts(session)
        history = lead_history(session, lead.strip()) if lead.strip() else None
        return render(
            request,
            "delivery.html",
            admin,
            names=names,
            counts=counts,
            statuses=STATUS_ORDER,
            errors=delivery.last_errors(session, selected),
            selected=selected,
            lead=lead.strip(),
            history=history,
            replayable=delivery.REPLAYABLE,
            dead=delivery.dead_counts(session),
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
    form = await checked_form(request, admin.csrf_token)
    ids = [int(v) for v in form.getlist("postback_id") if str(v).isdigit()]
    event_set_id = str(form.get("event_set_id", ""))
    lead = str(form.get("lead", "")).strip()

    def act() -> tuple[str, str]:
        with session_scope() as session:
            try:
                queued, asked = delivery.replay_postbacks(
                    session,
                    actor=admin.actor,
                    ids=ids,
                    event_set_id=int(event_set_id) if event_set_id.isdigit() else None,
                )
            except (InputRejected, ValueError) as error:
                return "error", str(error)
            session.commit()
        delivery.dispatch(queued)
        not_rebuilt = asked - len(queued)
        message = f"{len(queued)} postback(s) re-queued with the same event_id."
        if not_rebuilt:
            message += f" {not_rebuilt} could not be rebuilt (see the lead's history)."
        return ("ok" if queued or not asked else "error"), message

    kind, message = await run_in_threadpool(act)
    flash(request, message, kind)
    target = "/delivery" + (f"?lead={lead}" if lead else "")
    return see_other(request, target)


# --- audit ------------------------------------------------------------------------------


@router.get("/audit")
def audit_page(
    request: Request, admin: AdminDep, event_set: str = "", before: str = ""
) -> HTMLResponse:
    with session_scope() as session:
        selected = int(event_set) if event_set.isdigit() else None
        found = audit.entries(
            session,
            event_set_id=selected,
            limit=50,
            before_id=int(before) if before.isdigit() else None,
        )
        names = {es.id: es.name for es in session.scalars(select(EventSet).order_by(EventSet.name))}
        return render(
            request,
            "audit.html",
            admin,
            entries=[(e, audit.changes(e)) for e in found],
            names=names,
            selected=selected,
            older=found[-1].id if len(found) == 50 else None,
        )


# Registered last: `/event-sets/{id}/{action}` must not shadow the routes above.
@router.post("/event-sets/{event_set_id}/{action}")
async def event_set_action(
    request: Request, event_set_id: int, action: str, admin: AdminDep
) -> Response:
    if action not in ("pause", "resume", "test-code", "verify", "token"):
        raise NotFound(f"no action {action!r}")
    form = await checked_form(request, admin.csrf_token)

    def act() -> tuple[str, str]:
        settings = get_settings()
        with session_scope() as session:
            event_set = _event_set(session, event_set_id)
            try:
                if action == "pause":
                    reason = str(form.get("reason", "")).strip() or f"paused by {admin.username}"
                    pause(event_set, reason, actor=admin.actor)
                    message = ("ok", "Paused: postbacks are held (nothing is dropped).")
                elif action == "resume":
                    resume(session, event_set, actor=admin.actor)
                    message = ("ok", "Resumed: held postbacks go out with the next sweep.")
                elif action == "test-code":
                    code = str(form.get("test_event_code", "")).strip() or None
                    if form.get("turn") == "off":
                        code = None
                    elif code is None:
                        raise InputRejected.one(
                            "test_event_code", "type the code from TikTok's Test Events tab"
                        )
                    set_test_event_code(session, event_set, code, actor=admin.actor)
                    message = (
                        "ok",
                        f"Test events on: every request carries test_event_code {code!r}."
                        if code
                        else "Test events off: events count for real.",
                    )
                elif action == "token":
                    rotate_token(
                        session,
                        settings,
                        event_set,
                        str(form.get("access_token", "")),
                        actor=admin.actor,
                    )
                    message = ("ok", "Token replaced.")
                else:
                    result = verify_event_set(event_set, settings)
                    message = ("ok" if result.ok else "error", result.message)
            except InputRejected as rejected:
                return ("error", "; ".join(e.message for e in rejected.errors))
            session.commit()
            return message

    kind, message = await run_in_threadpool(act)
    flash(request, message, kind)
    return see_other(request, f"/event-sets/{event_set_id}")
