"""Event set use cases: add, update, pause, resume, replace the token, verify with TikTok.

Each opens one unit of work in the actor's workspace and needs the owner role there (event
sets hold the advertiser's token); `configuration.event_set_service` changes the rows and
records the audit entry in it. An event set of another workspace is not found, with the
message of one that does not exist. Results hold the event set as saved (detached, its
columns loaded).

A token given as an `env:` reference is accepted only from the operator (`Actor.operator`,
the CLI): the environment is shared by every workspace.
"""

from __future__ import annotations

from dataclasses import dataclass

from crm_postback.commands.lookups import EventSetRef, load_event_set
from crm_postback.commands.unit_of_work import Actor, unit_of_work
from crm_postback.configuration import event_set_service, mapping_presets
from crm_postback.configuration.event_set_service import KEEP, Keep
from crm_postback.configuration.event_set_verification import Verification
from crm_postback.configuration.event_set_verification import (
    verify_event_set as ask_tiktok,
)
from crm_postback.core.settings import get_settings
from models import EventSet, EventSetKind, Role


@dataclass(frozen=True)
class AddEventSet:
    name: str
    source_id: str  # TikTok's event set ID or pixel code
    access_token: str  # or env:POSTBACK_TOKEN_<NAME>
    kind: str = EventSetKind.CRM
    lead_event_source: str = "crm-postback"
    test_event_code: str | None = None
    advertiser_id: str | None = None
    default_currency: str | None = None
    limited_data_use: bool = False
    max_event_age_days: float | None = None  # None: the event source's default
    # A mapping preset made in the same transaction (`mapping_presets.PRESETS`), or none.
    preset: str | None = None


@dataclass(frozen=True)
class UpdateEventSet:
    """The fields given change (one `event_set.update` entry, none if nothing changed); with
    `access_token`, the token is replaced in the same transaction (`event_set.token`)."""

    event_set: EventSetRef
    name: str | None = None  # None: unchanged (a name cannot be cleared)
    lead_event_source: str | None = None  # likewise
    advertiser_id: str | Keep | None = KEEP
    default_currency: str | Keep | None = KEEP
    test_event_code: str | Keep | None = KEEP
    access_token: str | None = None
    limited_data_use: bool | None = None  # None: unchanged
    max_event_age_days: float | Keep | None = KEEP  # None: the event source's default


@dataclass(frozen=True)
class EventSetUpdated:
    event_set: EventSet
    token_replaced: bool


@dataclass(frozen=True)
class PauseEventSet:
    event_set: EventSetRef
    reason: str


@dataclass(frozen=True)
class ResumeEventSet:
    event_set: EventSetRef


@dataclass(frozen=True)
class ReplaceToken:
    event_set: EventSetRef
    access_token: str  # or env:POSTBACK_TOKEN_<NAME>


@dataclass(frozen=True)
class VerifyEventSet:
    event_set: EventSetRef


def add_event_set(request: AddEventSet, actor: Actor) -> EventSet:
    """With `preset`, the event set and the preset's mappings are made together, or neither."""
    with unit_of_work(actor, requires=Role.OWNER) as uow:
        created = event_set_service.create_event_set(
            uow.session,
            get_settings(),
            name=request.name,
            source_id=request.source_id,
            access_token=request.access_token,
            kind=request.kind,
            lead_event_source=request.lead_event_source,
            test_event_code=request.test_event_code,
            advertiser_id=request.advertiser_id,
            default_currency=request.default_currency,
            actor=actor.name,
            references_allowed=actor.operator,
            limited_data_use=request.limited_data_use,
            max_event_age_days=request.max_event_age_days,
        )
        if request.preset is not None:
            mapping_presets.apply_preset(uow.session, created, request.preset, actor=actor.name)
        return created


def update_event_set(request: UpdateEventSet, actor: Actor) -> EventSetUpdated:
    with unit_of_work(actor, requires=Role.OWNER) as uow:
        event_set = load_event_set(uow.session, request.event_set)
        event_set_service.update_event_set(
            uow.session,
            event_set,
            actor=actor.name,
            name=request.name,
            advertiser_id=request.advertiser_id,
            lead_event_source=request.lead_event_source,
            default_currency=request.default_currency,
            test_event_code=request.test_event_code,
            limited_data_use=request.limited_data_use,
            max_event_age_days=request.max_event_age_days,
        )
        if request.access_token is not None:
            event_set_service.rotate_token(
                uow.session,
                get_settings(),
                event_set,
                request.access_token,
                actor=actor.name,
                references_allowed=actor.operator,
            )
        return EventSetUpdated(event_set, token_replaced=request.access_token is not None)


def pause_event_set(request: PauseEventSet, actor: Actor) -> EventSet:
    """Holds every postback of the event set; nothing is dropped."""
    reason = event_set_service.checked_reason(request.reason)
    with unit_of_work(actor, requires=Role.OWNER) as uow:
        event_set = load_event_set(uow.session, request.event_set)
        event_set_service.pause(event_set, reason, actor=actor.name)
        return event_set


def resume_event_set(request: ResumeEventSet, actor: Actor) -> EventSet:
    """Held postbacks become due; the next sweep sends them."""
    with unit_of_work(actor, requires=Role.OWNER) as uow:
        event_set = load_event_set(uow.session, request.event_set)
        event_set_service.resume(uow.session, event_set, actor=actor.name)
        return event_set


def replace_token(request: ReplaceToken, actor: Actor) -> EventSet:
    """A new token also resumes a paused event set."""
    with unit_of_work(actor, requires=Role.OWNER) as uow:
        event_set = load_event_set(uow.session, request.event_set)
        event_set_service.rotate_token(
            uow.session,
            get_settings(),
            event_set,
            request.access_token,
            actor=actor.name,
            references_allowed=actor.operator,
        )
        return event_set


def verify_event_set(request: VerifyEventSet, actor: Actor) -> Verification:
    """Asks TikTok whether it knows the event set, with its token (owners). The session is
    closed before the HTTP call: no transaction waits on TikTok. Changes nothing and writes
    no audit entry. A token variable that is not set is named to the operator only."""
    with unit_of_work(actor, requires=Role.OWNER, dry_run=True) as uow:
        event_set = load_event_set(uow.session, request.event_set)
        uow.session.expunge(event_set)  # loaded as it is, kept past the rollback
    return ask_tiktok(event_set, get_settings(), operator=actor.operator)
