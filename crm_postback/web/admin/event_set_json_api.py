"""/admin/api/event-sets: list, read, create, change, pause, resume, verify, apply a preset."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from crm_postback.commands.lookups import load_event_set
from crm_postback.commands.manage_event_sets import (
    AddEventSet,
    PauseEventSet,
    ResumeEventSet,
    UpdateEventSet,
    VerifyEventSet,
    add_event_set,
    pause_event_set,
    resume_event_set,
    update_event_set,
    verify_event_set,
)
from crm_postback.commands.manage_mappings import ApplyPreset, apply_preset
from crm_postback.configuration.admin_accounts import Admin
from crm_postback.configuration.event_set_service import (
    KEEP,
    Keep,
    event_age_limit,
    event_set_snapshot,
)
from crm_postback.configuration.mapping_presets import LEAD_GENERATION
from crm_postback.configuration.mapping_service import list_mappings
from crm_postback.core.settings import get_settings
from crm_postback.operations.postback_reports import status_counts
from crm_postback.web.admin.json_api_support import (
    API_ERRORS,
    ApiAdmin,
    fail,
    in_thread,
    read_object,
    reject_unknown,
    text_field,
)
from crm_postback.web.admin.mapping_json_api import mapping_json, saved_json
from crm_postback.web.admin.security import actor_of, workspace_of
from crm_postback.web.admin.token_display import shown_token
from models import EventSet
from models.db import session_scope

router = APIRouter(prefix="/api", tags=["admin"], responses=API_ERRORS)

CREATE_FIELDS = {
    "name",
    "event_set_id",
    "access_token",
    "kind",
    "advertiser_id",
    "lead_event_source",
    "default_currency",
    "test_event_code",
    "limited_data_use",
    "max_event_age_days",
    "preset",
}
PATCH_FIELDS = {
    "name",
    "advertiser_id",
    "lead_event_source",
    "default_currency",
    "test_event_code",
    "access_token",
    "limited_data_use",
    "max_event_age_days",
}


def _flag(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise fail(422, name, "must be true or false")
    return value


def _days(body: dict[str, Any]) -> float | None:
    """A number of days or null (the event source's default); the range is the command's."""
    value = body.get("max_event_age_days")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise fail(422, "max_event_age_days", "must be a number of days, or null")
    return value


def event_set_json(admin: Admin, event_set: EventSet) -> dict[str, Any]:
    """`max_event_age_days` is the set's own limit (null: the default), and
    `effective_max_event_age_days` the one applied."""
    return {
        "id": event_set.id,
        **event_set_snapshot(event_set),
        "effective_max_event_age_days": event_age_limit(event_set, get_settings()),
        "access_token": shown_token(admin, event_set.sealed_token),
        "created_at": event_set.created_at.isoformat(),
        "updated_at": event_set.updated_at.isoformat(),
    }


@router.get("/event-sets", summary="List event sets (tokens masked)")
async def list_event_sets(admin: ApiAdmin) -> Any:
    def read() -> list[dict[str, Any]]:
        with session_scope(workspace=workspace_of(admin)) as session:
            rows = session.scalars(select(EventSet).order_by(EventSet.name))
            return [event_set_json(admin, es) for es in rows]

    return {"event_sets": await in_thread(read)}


@router.post("/event-sets", status_code=201, summary="Create an event set")
async def create_event_set_api(request: Request, admin: ApiAdmin) -> Any:
    body = await read_object(request)
    reject_unknown(body, CREATE_FIELDS)
    for name in ("name", "event_set_id", "access_token"):
        if not text_field(body, name):
            raise fail(422, name, "is required")
    wanted = AddEventSet(
        name=str(body["name"]),
        source_id=str(body["event_set_id"]),
        access_token=str(body["access_token"]),
        kind=text_field(body, "kind") or "crm",
        lead_event_source=text_field(body, "lead_event_source") or "crm-postback",
        test_event_code=text_field(body, "test_event_code"),
        advertiser_id=text_field(body, "advertiser_id"),
        default_currency=text_field(body, "default_currency"),
        limited_data_use=bool(_flag(body, "limited_data_use")),
        max_event_age_days=_days(body),
        preset=text_field(body, "preset"),
    )
    created = await in_thread(add_event_set, wanted, actor_of(admin))
    return JSONResponse(event_set_json(admin, created), status_code=201)


@router.get("/event-sets/{reference}", summary="One event set, by name or TikTok ID")
async def get_event_set_api(reference: str, admin: ApiAdmin) -> Any:
    def read() -> dict[str, Any]:
        with session_scope(workspace=workspace_of(admin)) as session:
            event_set = load_event_set(session, reference)
            return {
                **event_set_json(admin, event_set),
                "mappings": [mapping_json(m) for m in list_mappings(session, event_set)],
                "postbacks": status_counts(session).get(event_set.name, {}),
            }

    return await in_thread(read)


@router.patch(
    "/event-sets/{reference}",
    summary="Change name, advertiser_id, lead_event_source, default_currency, "
    "test_event_code (null turns test events off), limited_data_use, max_event_age_days "
    "(null: the event source's default) or replace access_token",
)
async def patch_event_set(reference: str, request: Request, admin: ApiAdmin) -> Any:
    body = await read_object(request)
    reject_unknown(body, PATCH_FIELDS)

    def clearable(name: str) -> str | Keep | None:
        return text_field(body, name) if name in body else KEEP

    wanted = UpdateEventSet(
        reference,
        name=text_field(body, "name"),
        lead_event_source=text_field(body, "lead_event_source"),
        advertiser_id=clearable("advertiser_id"),
        default_currency=clearable("default_currency"),
        test_event_code=clearable("test_event_code"),
        access_token=text_field(body, "access_token"),
        limited_data_use=_flag(body, "limited_data_use"),
        max_event_age_days=_days(body) if "max_event_age_days" in body else KEEP,
    )
    updated = await in_thread(update_event_set, wanted, actor_of(admin))
    return event_set_json(admin, updated.event_set)


@router.post("/event-sets/{reference}/pause", summary="Hold the event set's postbacks")
async def pause_api(reference: str, request: Request, admin: ApiAdmin) -> Any:
    body = await read_object(request) if await request.body() else {}
    reason = text_field(body, "reason") or f"paused by {admin.username}"
    paused = await in_thread(pause_event_set, PauseEventSet(reference, reason), actor_of(admin))
    return event_set_json(admin, paused)


@router.post("/event-sets/{reference}/resume", summary="Send held postbacks again")
async def resume_api(reference: str, admin: ApiAdmin) -> Any:
    resumed = await in_thread(resume_event_set, ResumeEventSet(reference), actor_of(admin))
    return event_set_json(admin, resumed)


@router.post(
    "/event-sets/{reference}/verify",
    summary="Check the event set ID with TikTok (GET /open_api/v1.3/crm/list/)",
)
async def verify_api(reference: str, admin: ApiAdmin) -> Any:
    return asdict(await in_thread(verify_event_set, VerifyEventSet(reference), actor_of(admin)))


@router.post(
    "/event-sets/{reference}/preset",
    summary="Create a preset's mappings the event set lacks: {preset: lead-generation}",
)
async def preset_api(reference: str, request: Request, admin: ApiAdmin) -> Any:
    body = await read_object(request) if await request.body() else {}
    reject_unknown(body, {"preset"})
    wanted = ApplyPreset(reference, text_field(body, "preset") or LEAD_GENERATION)
    applied = await in_thread(apply_preset, wanted, actor_of(admin))
    return {
        "preset": applied.preset,
        "summary": applied.summary,
        "created": [saved_json(saved) for saved in applied.created],
        "present": [saved_json(saved) for saved in applied.present],
    }
