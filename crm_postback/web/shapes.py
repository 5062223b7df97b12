"""Request and answer shapes of the HTTP API, as published in /openapi.json."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from crm_postback.intake.trigger_schemas import MatchKeys

MAX_BATCH = 1000


class Problem(BaseModel):
    """One bad field. `pointer` is an RFC 6901 JSON pointer into the request body."""

    pointer: str | None = Field(
        description="Where in the body, e.g. /0/match_keys/phone; null when not in the body"
    )
    field: str | None = Field(description="Dotted name, e.g. match_keys.phone")
    message: str = Field(description="What is wrong, in a sentence; never the value sent")


class ErrorAnswer(BaseModel):
    errors: list[Problem]


class ItemAnswer(BaseModel):
    index: int = Field(description="Position in the batch (0 for a single trigger)")
    status: Literal["accepted", "duplicate", "rejected"] = Field(
        description="accepted: stored and queued; duplicate: this idempotency key was accepted "
        "before (trigger_id is the original one, nothing new is sent); rejected: see errors"
    )
    trigger_id: int | None = None
    errors: list[Problem] | None = None
    warnings: list[Problem] | None = Field(
        None,
        description="Match keys dropped because they did not normalise (the trigger was "
        "accepted without them); absent when none was. ?strict=true refuses them instead",
    )


class TriggersAnswer(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    items: list[ItemAnswer]


class LeadKeysIn(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    match_keys: MatchKeys | None = None
    limited_data_use: bool | None = Field(
        None,
        strict=True,
        description="The lead's own limited data use, above the event set's (null or absent: "
        "unchanged; once set it can be changed but not cleared back to the event set's)",
    )


class LeadStored(BaseModel):
    lead_id: str
    status: Literal["stored", "nothing_stored"] = Field(
        "stored",
        description="stored: the keys left after dropping (and limited_data_use) are merged; "
        "nothing_stored: the lead is unchanged, because every key sent was dropped or the "
        "lead withdrew consent (warnings say which)",
    )
    warnings: list[Problem] = Field(
        default_factory=list,
        description="Match keys dropped because they did not normalise (the others were stored)",
    )


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str] = Field(description="database / broker: ok, or the error's type")
