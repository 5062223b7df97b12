"""Routes for routing systems: triggers in (one or a batch), lead keys in, postback history out.

Bodies are parsed here rather than by FastAPI so that a batch is validated item by item (good
items are kept when one is bad) and every answer points at fields without echoing values.

Every route acts in the API key's workspace only: a trigger for an event set outside the key
(of another workspace, or not among the key's event sets) is answered as one for an event set
that does not exist, and a lead of another workspace is one that does not exist (404).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from crm_postback.api import IntakeScope, enqueue_triggers, upsert_lead_keys
from crm_postback.configuration.api_keys import Caller
from crm_postback.core.errors import InputRejected
from crm_postback.intake.trigger_schemas import TriggerIn, Unrepresentable, parse_lead_ref
from crm_postback.operations.postback_reports import LeadHistory, find_lead_history
from crm_postback.web import lead_paths  # noqa: F401 - registers the lead path convertors
from crm_postback.web.auth import HistoryReaderDep, LeadWriterDep, SenderDep
from crm_postback.web.body import parse_body
from crm_postback.web.errors import RequestRejected, problems_from_fields
from crm_postback.web.examples import LEAD_KEYS_EXAMPLES, TRIGGER_EXAMPLES
from crm_postback.web.shapes import (
    MAX_BATCH,
    ErrorAnswer,
    ItemAnswer,
    LeadKeysIn,
    LeadStored,
    Problem,
    TriggersAnswer,
)
from crm_postback.web.validation import validate
from models.db import session_scope

router = APIRouter(tags=["ingest"])


LeadId = Annotated[
    str,
    Path(min_length=1, max_length=128, description="Your id for the lead (URL-encoded)"),
]


def common_errors(permission: str) -> dict[int | str, dict[str, Any]]:
    """The answers every route of a routing system may give besides its own (OpenAPI)."""
    return {
        401: {"model": ErrorAnswer, "description": "No API key, or an unknown one"},
        403: {
            "model": ErrorAnswer,
            "description": f"The API key has been revoked, or lacks the {permission} permission",
        },
        413: {"model": ErrorAnswer, "description": "The body is larger than MAX_REQUEST_BYTES"},
        429: {
            "model": ErrorAnswer,
            "description": "The API key made more requests than its rate limit allows; "
            "Retry-After says in how many seconds to try again",
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait (a whole number, at least 1)",
                    "schema": {"type": "integer", "minimum": 1},
                }
            },
        },
        503: {
            "model": ErrorAnswer,
            "description": "The database is unavailable (restarting, failing over): nothing "
            "may be assumed stored; send the same request again after Retry-After seconds",
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait",
                    "schema": {"type": "integer", "minimum": 1},
                }
            },
        },
    }


def intake_scope(caller: Caller, strict: bool = False) -> IntakeScope:
    """Where the key may send: its workspace, and maybe only some of its event sets; strict
    when the key is or the request asks for it (?strict=true)."""
    return IntakeScope(caller.workspace_id, caller.event_set_ids, strict or caller.strict)


StrictQuery = Annotated[
    bool,
    Query(
        description="true: a match key that does not normalise refuses the trigger (or the "
        "lead's keys) instead of being dropped with a warning. An API key created with "
        "--strict is always strict"
    ),
]


def _body(schema: str, examples: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema_ref(schema), "examples": examples}},
        }
    }


def schema_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _triggers_schema() -> dict[str, Any]:
    return {
        "oneOf": [
            schema_ref("TriggerIn"),
            {
                "type": "array",
                "items": schema_ref("TriggerIn"),
                "minItems": 1,
                "maxItems": MAX_BATCH,
            },
        ]
    }


def _root_rejected(message: str) -> RequestRejected:
    return RequestRejected(422, [Problem(pointer="", field="body", message=message)])


def ingest(documents: list[Any], base: str | None, scope: IntakeScope) -> TriggersAnswer:
    """Validates each item, stores the valid ones in one transaction and answers per item.

    `base` is None for a batch (each item's pointers start at /index) or "" for one trigger.
    """
    answers: dict[int, ItemAnswer] = {}
    valid: list[tuple[int, TriggerIn]] = []
    for index, document in enumerate(documents):
        prefix = f"/{index}" if base is None else base
        trigger, problems = validate(TriggerIn, document, prefix)
        if trigger is not None:
            valid.append((index, trigger))
            continue
        answers[index] = ItemAnswer(index=index, status="rejected", errors=problems)
    if valid:
        stored = enqueue_triggers([trigger for _, trigger in valid], workspace=scope)
        for item in stored:
            index = valid[item.index][0]
            if item.accepted is None:
                prefix = f"/{index}" if base is None else base
                problems = problems_from_fields(item.errors, prefix)
                answers[index] = ItemAnswer(index=index, status="rejected", errors=problems)
            else:
                prefix = f"/{index}" if base is None else base
                answers[index] = ItemAnswer(
                    index=index,
                    status="duplicate" if item.accepted.duplicate else "accepted",
                    trigger_id=item.accepted.trigger_id,
                    warnings=problems_from_fields(item.warnings, prefix) or None,
                )
    items = [answers[i] for i in sorted(answers)]
    return TriggersAnswer(
        accepted=sum(a.status == "accepted" for a in items),
        duplicates=sum(a.status == "duplicate" for a in items),
        rejected=sum(a.status == "rejected" for a in items),
        items=items,
    )


def _ingest_body(raw: bytes, scope: IntakeScope) -> TriggersAnswer:
    document = parse_body(raw, keep_bad_values=True)
    if isinstance(document, Unrepresentable):
        raise _root_rejected(document.message)
    if isinstance(document, dict):
        return ingest([document], "", scope)
    if isinstance(document, list):
        if not 1 <= len(document) <= MAX_BATCH:
            raise _root_rejected(f"a batch holds 1 to {MAX_BATCH} triggers, not {len(document)}")
        return ingest(document, None, scope)
    raise _root_rejected(f"send a trigger object or a list of 1 to {MAX_BATCH} of them")


@router.post(
    "/v1/triggers",
    status_code=202,
    summary="Send one trigger or a batch of up to 1,000",
    response_model=TriggersAnswer,
    responses={
        202: {"description": "At least one trigger was accepted (or was a duplicate)"},
        422: {
            "description": "Every trigger was rejected (items say why), or the body is not a "
            "trigger or a list of 1 to 1,000 triggers (errors say why)",
            "content": {
                "application/json": {
                    "schema": {"anyOf": [schema_ref("TriggersAnswer"), schema_ref("ErrorAnswer")]}
                }
            },
        },
        **common_errors("triggers:send"),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _triggers_schema(), "examples": TRIGGER_EXAMPLES}
            },
        }
    },
)
async def post_triggers(
    request: Request, caller: SenderDep, strict: StrictQuery = False
) -> JSONResponse:
    """Each trigger is stored (committed) before the answer; a 202 is never lost, even when
    the queue is down. Answers are per item, in the order sent. An event set the key may not
    send to is answered as an unknown one. A match key that does not normalise is dropped and
    named in the item's `warnings` (the trigger is accepted), unless strict."""
    # Read off the event loop too: parsing megabytes must not hold up other requests.
    answer = await run_in_threadpool(
        _ingest_body, await request.body(), intake_scope(caller, strict)
    )
    status = 422 if answer.rejected == len(answer.items) else 202
    return JSONResponse(answer.model_dump(exclude_none=True), status_code=status)


def lead_path_problems(lead_id: str) -> list[Problem]:
    """The checks of a body's lead_id, for the one in the path (pointer null: not the body)."""
    try:
        parse_lead_ref(lead_id)
    except InputRejected as rejected:
        return [
            Problem(pointer=None, field=f"path.{e.field}", message=e.message)
            for e in rejected.errors
        ]
    return []


def _upsert(lead_id: str, raw: bytes, scope: IntakeScope) -> LeadStored:
    body, problems = validate(LeadKeysIn, parse_body(raw, keep_bad_values=True), "")
    keys: dict[str, Any] = {}
    if body is not None:
        keys = body.match_keys.model_dump(exclude_none=True) if body.match_keys else {}
        if not keys and body.limited_data_use is None:
            problems = [
                Problem(
                    pointer="/match_keys",
                    field="match_keys",
                    message="give at least one match key (or limited_data_use)",
                )
            ]
    problems = lead_path_problems(lead_id) + problems
    if problems:
        raise RequestRejected(422, problems)
    assert body is not None
    try:
        stored = upsert_lead_keys(
            lead_id, keys, workspace=scope, limited_data_use=body.limited_data_use
        )
    except InputRejected as rejected:
        in_body = [e for e in rejected.errors if e.field.startswith("match_keys")]
        problems = problems_from_fields(in_body, "")
        problems += [
            Problem(pointer=None, field=f"path.{e.field}", message=e.message)
            for e in rejected.errors
            if e not in in_body
        ]
        raise RequestRejected(422, problems) from None
    return LeadStored(
        lead_id=stored.lead_id,
        status="stored" if stored.stored else "nothing_stored",
        warnings=problems_from_fields(stored.warnings, ""),
    )


@router.put(
    "/v1/leads/{lead_id:upsert_lead}",
    summary="Add or merge a lead's match keys",
    response_model=LeadStored,
    responses={
        422: {"model": ErrorAnswer, "description": "A bad field"},
        **common_errors("leads:write"),
    },
    openapi_extra=_body("LeadKeysIn", LEAD_KEYS_EXAMPLES),
)
async def put_lead(
    lead_id: LeadId, request: Request, caller: LeadWriterDep, strict: StrictQuery = False
) -> LeadStored:
    """Keys that arrive after the first trigger (a ttclid, a TikTok lead id) are merged into
    what is stored; personal keys (email, phone, external id, names, address parts) are
    hashed before they are stored. A key that does not normalise is dropped and named in
    `warnings` (unless strict); when every key sent was dropped the answer is still 200,
    with `"status": "nothing_stored"`. The lead is the key's workspace's: every source of a
    workspace speaks of the same leads."""
    return await run_in_threadpool(
        _upsert, lead_id, await request.body(), intake_scope(caller, strict)
    )


UNKNOWN_LEAD = Problem(
    pointer=None, field="path.lead_id", message="no lead of this id in the API key's workspace"
)


def lead_route_errors(permission: str) -> dict[int | str, dict[str, Any]]:
    """The answers (OpenAPI) of a route under /v1/leads/{lead_id}/ besides its own: an unknown
    lead id (404), a bad one (422) and common_errors."""
    return {
        404: {
            "model": ErrorAnswer,
            "description": "No lead of this id in the API key's workspace (the same answer "
            "whether another workspace has one or none has)",
        },
        422: {"model": ErrorAnswer, "description": "A bad lead id"},
        **common_errors(permission),
    }


def _history(
    lead_id: str, workspace_id: int, event_set_ids: Collection[int] | None
) -> dict[str, Any]:
    problems = lead_path_problems(lead_id)
    if problems:
        raise RequestRejected(422, problems)
    with session_scope(workspace=workspace_id) as session:
        history = find_lead_history(session, lead_id.strip(), event_set_ids)
    if history is None:
        # The same answer whether the lead is another workspace's or nobody's.
        raise RequestRejected(404, [UNKNOWN_LEAD])
    return asdict(history)


@router.get(
    "/v1/leads/{lead_id:lead}/postbacks",
    summary="What was sent for a lead, when, and what TikTok answered",
    response_model=LeadHistory,
    responses=lead_route_errors("postbacks:read"),
)
async def get_postbacks(lead_id: LeadId, caller: HistoryReaderDep) -> Any:
    """Every trigger of the lead, the postbacks it produced, each attempt with TikTok's code,
    message and request_id. Match keys are shown hashed; the IP address only as its network
    (203.0.113.x) and the user agent as `<present>`, in the keys and in the event bodies."""
    return await run_in_threadpool(_history, lead_id, caller.workspace_id, caller.event_set_ids)
