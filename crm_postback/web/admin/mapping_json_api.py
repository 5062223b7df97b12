"""/admin/api/event-sets/{reference}/mappings: mappings, their YAML, and the preview."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from crm_postback.commands.lookups import MAX_BIG_ID, is_row_id, load_event_set, load_mapping
from crm_postback.commands.manage_mappings import (
    AddMapping,
    DeleteMapping,
    ImportMappingYaml,
    MappingInput,
    MappingSaved,
    UpdateMapping,
    add_mapping,
    delete_mapping,
    import_mapping_yaml,
    update_mapping,
)
from crm_postback.commands.unit_of_work import NotPermitted
from crm_postback.configuration.mapping_preview import DraftMapping, preview
from crm_postback.configuration.mapping_service import describe_mapping, list_mappings
from crm_postback.configuration.mapping_yaml import (
    MappingEntry,
    condition_text,
    export_mappings,
    parse_mapping_entry,
)
from crm_postback.core.errors import FieldError, InputRejected
from crm_postback.core.settings import get_settings
from crm_postback.web.admin.json_api_support import (
    API_ERRORS,
    API_ERRORS_IN_JSON,
    ApiAdmin,
    ApiFailure,
    fail,
    in_thread,
    read_object,
    reject_unknown,
)
from crm_postback.web.admin.security import actor_of, preview_session, workspace_of
from models import Mapping
from models.db import session_scope

router = APIRouter(prefix="/api", tags=["admin"], responses=API_ERRORS)


def mapping_json(mapping: Mapping) -> dict[str, Any]:
    return {
        "id": mapping.id,
        "version": mapping.version,
        "trigger": mapping.trigger_type,
        "event": mapping.event_name,
        "enabled": mapping.enabled,
        "when": [condition_text(c) for c in mapping.conditions],
        "properties": dict(mapping.properties or {}),
        "summary": describe_mapping(mapping),
        "updated_at": mapping.updated_at.isoformat(),
    }


def saved_json(saved: MappingSaved) -> dict[str, Any]:
    """A saved mapping, with what saving it had to say (`warnings`, often empty)."""
    return {**mapping_json(saved.mapping), "warnings": _warnings_json(saved.warnings)}


def _warnings_json(warnings: Sequence[FieldError]) -> list[dict[str, str]]:
    return [{"field": w.field, "message": w.message} for w in warnings]


def _entry(body: dict[str, Any]) -> MappingEntry:
    # The event name is checked for the event set's kind by the command (or the preview).
    entry, errors = parse_mapping_entry(body, kind=None)
    if entry is None:
        raise ApiFailure(422, errors)
    return entry


@router.get("/event-sets/{reference}/mappings", summary="The event set's mappings")
async def list_mappings_api(reference: str, admin: ApiAdmin) -> Any:
    def read() -> dict[str, Any]:
        with session_scope(workspace=workspace_of(admin)) as session:
            event_set = load_event_set(session, reference)
            return {"mappings": [mapping_json(m) for m in list_mappings(session, event_set)]}

    return await in_thread(read)


@router.post(
    "/event-sets/{reference}/mappings",
    status_code=201,
    summary="Create a mapping: {trigger, event, enabled, when, properties}",
)
async def create_mapping_api(reference: str, request: Request, admin: ApiAdmin) -> Any:
    wanted = MappingInput.from_entry(_entry(await read_object(request)))
    saved = await in_thread(add_mapping, AddMapping(reference, wanted), actor_of(admin))
    return JSONResponse(saved_json(saved), status_code=201)


@router.get("/event-sets/{reference}/mappings/{mapping_id}", summary="One mapping")
async def get_mapping_api(reference: str, mapping_id: int, admin: ApiAdmin) -> Any:
    def read() -> dict[str, Any]:
        with session_scope(workspace=workspace_of(admin)) as session:
            return mapping_json(load_mapping(session, mapping_id, reference))

    return await in_thread(read)


@router.put(
    "/event-sets/{reference}/mappings/{mapping_id}",
    summary="Replace a mapping; with `version`, refused (409) if it changed since",
)
async def put_mapping_api(
    reference: str, mapping_id: int, request: Request, admin: ApiAdmin
) -> Any:
    entry = _entry(await read_object(request))
    wanted = UpdateMapping(
        mapping_id,
        MappingInput.from_entry(entry),
        event_set=reference,
        expected_version=entry.version,
    )
    saved = await in_thread(update_mapping, wanted, actor_of(admin))
    return saved_json(saved)


@router.delete(
    "/event-sets/{reference}/mappings/{mapping_id}",
    status_code=204,
    summary="Delete a mapping (its postbacks are kept)",
)
async def delete_mapping_api(reference: str, mapping_id: int, admin: ApiAdmin) -> Response:
    wanted = DeleteMapping(mapping_id, event_set=reference)
    await in_thread(delete_mapping, wanted, actor_of(admin))
    return Response(status_code=204)


class YamlResponse(Response):
    media_type = "application/yaml"


@router.get(
    "/event-sets/{reference}/mappings.yaml",
    summary="Export the mappings as YAML",
    response_class=YamlResponse,  # documented as application/yaml text, not JSON
    responses=API_ERRORS_IN_JSON,
)
async def export_api(reference: str, admin: ApiAdmin) -> Response:
    def read() -> str:
        with session_scope(workspace=workspace_of(admin)) as session:
            event_set = load_event_set(session, reference)
            return export_mappings(event_set, list_mappings(session, event_set))

    return YamlResponse(await in_thread(read), media_type="application/yaml; charset=utf-8")


@router.put(
    "/event-sets/{reference}/mappings.yaml",
    summary="Import YAML: the event set's mappings become the file's (?dry_run=true to check)",
)
async def import_api(
    reference: str, request: Request, admin: ApiAdmin, dry_run: bool = False
) -> Any:
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise fail(422, "body", "must be UTF-8 YAML") from None
    wanted = ImportMappingYaml(text, event_set=reference, dry_run=dry_run)
    result = await in_thread(import_mapping_yaml, wanted, actor_of(admin))
    return {
        "dry_run": result.dry_run,
        "summary": result.summary,
        "created": result.created,
        "updated": result.updated,
        "deleted": result.deleted,
        "unchanged": result.unchanged,
        "warnings": _warnings_json(result.warnings),
    }


def _draft(body: dict[str, Any]) -> DraftMapping | None:
    if body.get("mapping") is None:
        return None
    entry, errors = parse_mapping_entry(body["mapping"], "mapping.", kind=None)
    if entry is None:
        raise ApiFailure(422, errors)
    replaces = body.get("replaces")
    if replaces is not None and not is_row_id(replaces):
        raise fail(422, "replaces", "must be a mapping id")
    return DraftMapping(
        entry.trigger_type,
        entry.event_name,
        entry.conditions,
        entry.properties,
        entry.enabled,
        replaces=replaces,
    )


@router.post(
    "/event-sets/{reference}/preview",
    summary="The exact request TikTok would get: {trigger: {...}} or {trigger_id}, "
    "optionally with an unsaved {mapping: {...}, replaces: id}",
)
async def preview_api(reference: str, request: Request, admin: ApiAdmin) -> Any:
    body = await read_object(request)
    reject_unknown(body, {"trigger", "trigger_id", "mapping", "replaces"})
    draft = _draft(body)
    trigger = body.get("trigger")
    trigger_id = body.get("trigger_id")
    if trigger is not None and not isinstance(trigger, dict):
        raise fail(422, "trigger", "must be an object (a trigger as the ingest API takes it)")
    if trigger_id is not None and not is_row_id(trigger_id, MAX_BIG_ID):
        raise fail(422, "trigger_id", "must be a trigger id")

    def act() -> dict[str, Any]:
        with preview_session(admin) as session:
            event_set = load_event_set(session, reference)
            try:
                shown = preview(
                    session,
                    get_settings(),
                    event_set,
                    trigger=trigger,
                    trigger_id=trigger_id,
                    draft=draft,
                )
            except NotPermitted:
                raise
            except InputRejected as error:
                raise ApiFailure(422, list(error.errors)) from None
            return shown.as_dict()

    return await in_thread(act)
