"""The admin JSON API (/admin/api): the page's operations, for automation.

Authentication: `Authorization: Bearer pba_…`, a personal admin token
(`postback admin token-create USER`), so every change is audited as `api:<user>`. Ingest API
keys (`pbk_…`) are refused: a routing system's key cannot change configuration. A logged-in
browser session also works, with its CSRF token in an `X-CSRF-Token` header for writes.
Errors are `{"errors": [{"pointer", "field", "message"}]}`, like the ingest API.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_postback.configuration import audit
from crm_postback.configuration.admin_accounts import (
    Admin,
    TokenRefused,
    authenticate_token,
    resume_session,
)
from crm_postback.configuration.admin_accounts import csrf_matches as _csrf_matches
from crm_postback.configuration.event_set_service import (
    create_event_set,
    get_event_set,
    pause,
    resume,
    rotate_token,
    update_event_set,
)
from crm_postback.configuration.event_set_verification import verify_event_set
from crm_postback.configuration.mapping_preview import DraftMapping, preview
from crm_postback.configuration.mapping_service import (
    add_mapping,
    delete_mapping,
    describe_mapping,
    list_mappings,
    update_mapping,
)
from crm_postback.configuration.mapping_yaml import (
    condition_text,
    export_mappings,
    import_mappings,
    parse_mapping_entry,
)
from crm_postback.core.errors import FieldError, InputRejected
from crm_postback.core.settings import get_settings
from crm_postback.core.token_vault import token_hint
from crm_postback.operations.postback_reports import status_counts
from crm_postback.web.admin import delivery
from crm_postback.web.body import read_json
from crm_postback.web.errors import RequestRejected, error_response, problems_from_fields
from crm_postback.web.shapes import Problem
from models import EventSet, Mapping
from models.db import session_scope

DESCRIPTION = __doc__ or ""
router = APIRouter(prefix="/api", tags=["admin"])
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class ApiFailure(Exception):
    def __init__(
        self, status: int, errors: list[FieldError], headers: dict[str, str] | None = None
    ):
        super().__init__("; ".join(str(e) for e in errors))
        self.status = status
        self.errors = errors
        self.headers = headers


def _fail(status: int, field: str | None, message: str) -> ApiFailure:
    return ApiFailure(status, [FieldError(field or "", message)])


async def _api_failure(_: Request, error: Exception) -> Response:
    assert isinstance(error, ApiFailure)
    problems = [
        Problem(pointer=None, field=None, message=e.message)
        if not e.field
        else problems_from_fields([e], "")[0]
        for e in error.errors
    ]
    return error_response(error.status, problems, error.headers)


async def _rejected(_: Request, error: Exception) -> Response:
    assert isinstance(error, RequestRejected)
    return error_response(error.status, error.problems, error.headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiFailure, _api_failure)
    app.add_exception_handler(RequestRejected, _rejected)


def api_admin(request: Request) -> Admin:
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    with session_scope() as session:
        if scheme.lower() == "bearer" and credentials.strip():
            try:
                admin = authenticate_token(session, credentials.strip())
            except TokenRefused as refused:
                challenge = {"WWW-Authenticate": 'Bearer realm="crm-postback admin"'}
                raise ApiFailure(
                    refused.status,
                    [FieldError("Authorization", str(refused))],
                    challenge if refused.status == 401 else None,
                ) from None
            session.commit()
            return admin
        session_id = request.session.get("sid")
        found = (
            resume_session(session, get_settings(), session_id)
            if isinstance(session_id, str)
            else None
        )
        session.commit()
    if found is None:
        raise ApiFailure(
            401,
            [FieldError("Authorization", "send an admin token: Authorization: Bearer pba_…")],
            {"WWW-Authenticate": 'Bearer realm="crm-postback admin"'},
        )
    if request.method not in SAFE_METHODS and not _csrf_matches(
        found.csrf_token, request.headers.get("x-csrf-token")
    ):
        raise _fail(403, "X-CSRF-Token", "a browser session must send its CSRF token")
    return found


ApiAdmin = Annotated[Admin, Depends(api_admin)]


def _rejected_input(error: InputRejected, status: int = 422) -> ApiFailure:
    return ApiFailure(status, list(error.errors))


def _find(session: Session, reference: str) -> EventSet:
    try:
        return get_event_set(session, reference)
    except InputRejected as error:
        raise ApiFailure(404, list(error.errors)) from None


def _mapping_of(session: Session, event_set: EventSet, mapping_id: int) -> Mapping:
    mapping = session.get(Mapping, mapping_id)
    if mapping is None or mapping.event_set_id != event_set.id:
        raise _fail(404, "mapping_id", f"event set {event_set.name!r} has no mapping {mapping_id}")
    return mapping


def event_set_json(event_set: EventSet) -> dict[str, Any]:
    return {
        "id": event_set.id,
        **audit.event_set_snapshot(event_set),
        "access_token": token_hint(event_set.sealed_token, get_settings()),
        "created_at": event_set.created_at.isoformat(),
        "updated_at": event_set.updated_at.isoformat(),
    }


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


async def _body(request: Request) -> dict[str, Any]:
    document = await read_json(request)
    if not isinstance(document, dict):
        raise RequestRejected(
            422, [Problem(pointer="", field="body", message="must be a JSON object")]
        )
    return document


def _threaded(function: Any) -> Any:
    return run_in_threadpool(function)


# --- event sets -------------------------------------------------------------------------


@router.get("/event-sets", summary="List event sets (tokens masked)")
async def list_event_sets(admin: ApiAdmin) -> Any:
    def read() -> list[dict[str, Any]]:
        with session_scope() as session:
            rows = session.scalars(select(EventSet).order_by(EventSet.name))
            return [event_set_json(es) for es in rows]

    return {"event_sets": await _threaded(read)}


EVENT_SET_CREATE_FIELDS = {
    "name",
    "event_set_id",
    "access_token",
    "kind",
    "advertiser_id",
    "lead_event_source",
    "default_currency",
    "test_event_code",
}


def _unknown(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = [key for key in body if key not in allowed]
    if unknown:
        raise ApiFailure(
            422, [FieldError(str(key), "is not a known field") for key in unknown[:20]]
        )


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise _fail(422, name, "must be a string")
    return value


@router.post("/event-sets", status_code=201, summary="Create an event set")
async def create_event_set_api(request: Request, admin: ApiAdmin) -> Any:
    body = await _body(request)
    _unknown(body, EVENT_SET_CREATE_FIELDS)
    for name in ("name", "event_set_id", "access_token"):
        if not _text(body, name):
            raise _fail(422, name, "is required")

    def create() -> dict[str, Any]:
        with session_scope() as session:
            try:
                event_set = create_event_set(
                    session,
                    get_settings(),
                    name=str(body["name"]),
                    source_id=str(body["event_set_id"]),
                    access_token=str(body["access_token"]),
                    kind=_text(body, "kind") or "crm",
                    lead_event_source=_text(body, "lead_event_source") or "crm-postback",
                    test_event_code=_text(body, "test_event_code"),
                    advertiser_id=_text(body, "advertiser_id"),
                    default_currency=_text(body, "default_currency"),
                    actor=admin.actor,
                )
            except InputRejected as error:
                raise _rejected_input(error) from None
            session.commit()
            return event_set_json(event_set)

    return JSONResponse(await _threaded(create), status_code=201)


@router.get("/event-sets/{reference}", summary="One event set, by name or TikTok ID")
async def get_event_set_api(reference: str, admin: ApiAdmin) -> Any:
    def read() -> dict[str, Any]:
        with session_scope() as session:
            event_set = _find(session, reference)
            return {
                **event_set_json(event_set),
                "mappings": [mapping_json(m) for m in list_mappings(session, event_set)],
                "postbacks": status_counts(session).get(event_set.name, {}),
            }

    return await _threaded(read)


@router.patch(
    "/event-sets/{reference}",
    summary="Change name, advertiser_id, lead_event_source, default_currency, "
    "test_event_code (null turns test events off) or replace access_token",
)
async def patch_event_set(reference: str, request: Request, admin: ApiAdmin) -> Any:
    body = await _body(request)
    _unknown(
        body,
        {
            "name",
            "advertiser_id",
            "lead_event_source",
            "default_currency",
            "test_event_code",
            "access_token",
        },
    )
    changes: dict[str, Any] = {}
    for name in ("advertiser_id", "default_currency", "test_event_code"):
        if name in body:
            changes[name] = _text(body, name)
    for name in ("name", "lead_event_source"):
        if body.get(name) is not None:
            changes[name] = _text(body, name)
    token = _text(body, "access_token")

    def save() -> dict[str, Any]:
        with session_scope() as session:
            event_set = _find(session, reference)
            try:
                update_event_set(session, event_set, actor=admin.actor, **changes)
                if token is not None:
                    rotate_token(session, get_settings(), event_set, token, actor=admin.actor)
            except InputRejected as error:
                raise _rejected_input(error) from None
            session.commit()
            return event_set_json(event_set)

    return await _threaded(save)


@router.post("/event-sets/{reference}/pause", summary="Hold the event set's postbacks")
async def pause_api(reference: str, request: Request, admin: ApiAdmin) -> Any:
    body = await _body(request) if await request.body() else {}
    reason = _text(body, "reason") or f"paused by {admin.username}"

    def act() -> dict[str, Any]:
        with session_scope() as session:
            event_set = _find(session, reference)
            pause(event_set, reason, actor=admin.actor)
            session.commit()
            return event_set_json(event_set)

    return await _threaded(act)


@router.post("/event-sets/{reference}/resume", summary="Send held postbacks again")
async def resume_api(reference: str, admin: ApiAdmin) -> Any:
    def act() -> dict[str, Any]:
        with session_scope() as session:
            event_set = _find(session, reference)
            resume(session, event_set, actor=admin.actor)
            session.commit()
            return event_set_json(event_set)

    return await _threaded(act)


@router.post(
    "/event-sets/{reference}/verify",
    summary="Check the event set ID with TikTok (GET /open_api/v1.3/crm/list/)",
)
async def verify_api(reference: str, admin: ApiAdmin) -> Any:
    def act() -> dict[str, Any]:
        with session_scope() as session:
            event_set = _find(session, reference)
            return asdict(verify_event_set(event_set, get_settings()))

    return await _threaded(act)


# --- mappings ---------------------------------------------------------------------------


def _entry(body: dict[str, Any]) -> Any:
    entry, errors = parse_mapping_entry(body)
    if entry is None:
        raise ApiFailure(422, errors)
    return entry


@router.get("/event-sets/{reference}/mappings", summary="The event set's mappings")
async def list_mappings_api(reference: str, admin: ApiAdmin) -> Any:
    def read() -> dict[str, Any]:
        with session_scope() as session:
            event_set = _find(session, reference)
            return {"mappings": [mapping_json(m) for m in list_mappings(session, event_set)]}

    return await _threaded(read)


@router.post(
    "/event-sets/{reference}/mappings",
    status_code=201,
    summary="Create a mapping: {trigger, event, enabled, when, properties}",
)
async def create_mapping_api(reference: str, request: Request, admin: ApiAdmin) -> Any:
    entry = _entry(await _body(request))

    def create() -> dict[str, Any]:
        with session_scope() as session:
            event_set = _find(session, reference)
            mapping = add_mapping(
                session,
                event_set,
                **entry.fields(),
                actor=admin.actor,
            )
            session.commit()
            return mapping_json(mapping)

    return JSONResponse(await _threaded(create), status_code=201)


@router.get("/event-sets/{reference}/mappings/{mapping_id}", summary="One mapping")
async def get_mapping_api(reference: str, mapping_id: int, admin: ApiAdmin) -> Any:
    def read() -> dict[str, Any]:
        with session_scope() as session:
            return mapping_json(_mapping_of(session, _find(session, reference), mapping_id))

    return await _threaded(read)


@router.put(
    "/event-sets/{reference}/mappings/{mapping_id}",
    summary="Replace a mapping; with `version`, refused (409) if it changed since",
)
async def put_mapping_api(
    reference: str, mapping_id: int, request: Request, admin: ApiAdmin
) -> Any:
    entry = _entry(await _body(request))

    def save() -> dict[str, Any]:
        with session_scope() as session:
            mapping = _mapping_of(session, _find(session, reference), mapping_id)
            if entry.version is not None and entry.version != mapping.version:
                raise _fail(
                    409,
                    "version",
                    f"mapping {mapping.id} is at v{mapping.version}, not v{entry.version}: "
                    "someone changed it; read it again",
                )
            update_mapping(
                session,
                mapping,
                **entry.fields(),
                actor=admin.actor,
            )
            session.commit()
            return mapping_json(mapping)

    return await _threaded(save)


@router.delete(
    "/event-sets/{reference}/mappings/{mapping_id}",
    status_code=204,
    summary="Delete a mapping (its postbacks are kept)",
)
async def delete_mapping_api(reference: str, mapping_id: int, admin: ApiAdmin) -> Response:
    def act() -> None:
        with session_scope() as session:
            mapping = _mapping_of(session, _find(session, reference), mapping_id)
            delete_mapping(session, mapping, actor=admin.actor)
            session.commit()

    await _threaded(act)
    return Response(status_code=204)


@router.get("/event-sets/{reference}/mappings.yaml", summary="Export the mappings as YAML")
async def export_api(reference: str, admin: ApiAdmin) -> Response:
    def read() -> str:
        with session_scope() as session:
            event_set = _find(session, reference)
            return export_mappings(event_set, list_mappings(session, event_set))

    return Response(await _threaded(read), media_type="application/yaml; charset=utf-8")


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
        raise _fail(422, "body", "must be UTF-8 YAML") from None

    def act() -> dict[str, Any]:
        with session_scope() as session:
            event_set = _find(session, reference)
            try:
                result = import_mappings(
                    session, event_set, text, actor=admin.actor, dry_run=dry_run
                )
            except InputRejected as error:
                raise _rejected_input(error) from None
            if not dry_run:
                session.commit()
            return {
                "dry_run": dry_run,
                "summary": result.summary(),
                "created": len(result.created),
                "updated": [m.id for m in result.updated],
                "deleted": result.deleted,
                "unchanged": [m.id for m in result.unchanged],
            }

    return await _threaded(act)


@router.post(
    "/event-sets/{reference}/preview",
    summary="The exact request TikTok would get: {trigger: {...}} or {trigger_id}, "
    "optionally with an unsaved {mapping: {...}, replaces: id}",
)
async def preview_api(reference: str, request: Request, admin: ApiAdmin) -> Any:
    body = await _body(request)
    _unknown(body, {"trigger", "trigger_id", "mapping", "replaces"})
    draft = None
    if body.get("mapping") is not None:
        entry, errors = parse_mapping_entry(body["mapping"], "mapping.")
        if entry is None:
            raise ApiFailure(422, errors)
        replaces = body.get("replaces")
        if replaces is not None and (not isinstance(replaces, int) or isinstance(replaces, bool)):
            raise _fail(422, "replaces", "must be a mapping id")
        draft = DraftMapping(
            entry.trigger_type,
            entry.event_name,
            entry.conditions,
            entry.properties,
            entry.enabled,
            replaces=replaces,
        )
    trigger = body.get("trigger")
    trigger_id = body.get("trigger_id")
    if trigger is not None and not isinstance(trigger, dict):
        raise _fail(422, "trigger", "must be an object (a trigger as the ingest API takes it)")
    if trigger_id is not None and (not isinstance(trigger_id, int) or isinstance(trigger_id, bool)):
        raise _fail(422, "trigger_id", "must be a trigger id")

    def act() -> dict[str, Any]:
        with session_scope() as session:
            event_set = _find(session, reference)
            try:
                shown = preview(
                    session,
                    get_settings(),
                    event_set,
                    trigger=trigger,
                    trigger_id=trigger_id,
                    draft=draft,
                )
            except InputRejected as error:
                raise _rejected_input(error) from None
            return shown.as_dict()

    return await _threaded(act)


# --- delivery and audit -----------------------------------------------------------------


@router.get("/delivery", summary="Postback counts by event set and status, TikTok's last errors")
async def delivery_api(admin: ApiAdmin, event_set: str | None = None) -> Any:
    def read() -> dict[str, Any]:
        with session_scope() as session:
            selected = _find(session, event_set).id if event_set else None
            return {
                "counts": status_counts(session),
                "last_errors": [
                    {**asdict(row), "attempted_at": row.attempted_at.isoformat()}
                    for row in delivery.last_errors(session, selected)
                ],
            }

    return await _threaded(read)


@router.post(
    "/postbacks/replay",
    summary="Re-queue postbacks: {ids: [...]} (dead, failed or expired) or "
    "{event_set: name} (its dead ones)",
)
async def replay_api(request: Request, admin: ApiAdmin) -> Any:
    body = await _body(request)
    _unknown(body, {"ids", "event_set"})
    ids = body.get("ids") or []
    if not isinstance(ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in ids
    ):
        raise _fail(422, "ids", "must be a list of postback ids")
    reference = _text(body, "event_set")

    def act() -> dict[str, Any]:
        with session_scope() as session:
            event_set_id = _find(session, reference).id if reference else None
            try:
                queued, asked = delivery.replay_postbacks(
                    session, actor=admin.actor, ids=ids, event_set_id=event_set_id
                )
            except InputRejected as error:
                raise _rejected_input(error) from None
            session.commit()
        delivery.dispatch(queued)
        return {"requested": asked, "requeued": queued}

    return await _threaded(act)


@router.get("/audit", summary="The audit trail, newest first")
async def audit_api(
    admin: ApiAdmin, event_set: str | None = None, limit: int = 100, before: int | None = None
) -> Any:
    if not 1 <= limit <= 1000:
        raise _fail(422, "limit", "must be 1 to 1000")

    def read() -> dict[str, Any]:
        with session_scope() as session:
            selected = _find(session, event_set).id if event_set else None
            found = audit.entries(session, event_set_id=selected, limit=limit, before_id=before)
            return {"entries": [audit.entry_dict(e) for e in found]}

    return await _threaded(read)
