"""Deciding what claiming does to outbox rows, before any row is written.

A row is sent (then `sending` under a lease, its attempt counted), held (event set paused or
throttled, or its token cannot be opened) or finished (dead at the attempt cap, expired when
too old). Rows already stored get the decision as UPDATEs (`worker.delivery.claim`); rows a
worker is about to insert get it in their INSERT (`worker.processing.insert_claimed`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from sqlalchemy import null
from sqlalchemy.orm import Session

from crm_postback.core.settings import Settings
from crm_postback.core.token_vault import TokenUnavailable, open_token
from crm_postback.operations.postback_messages import consent_withdrawn_message
from crm_postback.tiktok.event_catalogue import MAX_EVENTS_PER_REQUEST
from models import EventSet, EventSetStatus, PostbackStatus
from worker.retry import max_attempts

log = logging.getLogger(__name__)


class ClaimableRow(Protocol):
    """What claiming needs to know about an outbox row, stored or not."""

    @property
    def event_set_id(self) -> int: ...

    @property
    def attempts(self) -> int: ...

    @property
    def replays(self) -> int: ...

    @property
    def payload(self) -> dict[str, Any] | None: ...

    @property
    def last_message(self) -> str | None: ...

    @property
    def created_at(self) -> datetime | None: ...

    @property
    def lead_ref(self) -> str | None: ...


class StoredRow(NamedTuple):
    """An outbox row this transaction locked, as claiming reads it."""

    id: int
    event_set_id: int
    attempts: int
    replays: int
    payload: dict[str, Any] | None
    last_message: str | None = None
    created_at: datetime | None = None
    lead_ref: str | None = None


class Item(NamedTuple):
    postback_id: int
    payload: dict[str, Any]
    attempts: int  # including the attempt being made
    replays: int = 0
    created_at: datetime | None = None
    lead_ref: str | None = None

    @property
    def event_id(self) -> str | None:
        event_id: str | None = self.payload.get("event_id")
        return event_id


@dataclass
class OutgoingBatch:
    event_set_id: int
    workspace_id: int
    event_set_name: str
    event_source: str
    source_id: str
    test_event_code: str | None
    access_token: str = field(repr=False)
    # The stored (sealed) token this request used: an auth error pauses the set only if the
    # token was not rotated while the request was in flight.
    sealed_token: str = field(repr=False, default="")
    items: list[Item] = field(default_factory=list)


Row = TypeVar("Row", bound=ClaimableRow)


@dataclass
class ClaimPlan(Generic[Row]):
    """What claiming decided: new column values per row, and the rows to send by request."""

    changes: list[tuple[Row, dict[str, Any]]]
    # Per event set: the request without its items, and the rows (with payload) to put in it.
    sending: list[tuple[OutgoingBatch, list[tuple[Row, dict[str, Any]]]]]

    def batches(self, postback_id: Callable[[Row], int | None]) -> list[OutgoingBatch]:
        """The requests to send, once every row to send has an id (`postback_id(row)`); a
        row without one (None: not inserted, another worker stored the same event) is left
        out."""
        batches = []
        for request, rows in self.sending:
            items = []
            for row, payload in rows:
                row_id = postback_id(row)
                if row_id is None:
                    continue
                items.append(
                    Item(
                        row_id,
                        payload,
                        row.attempts + 1,
                        replays=row.replays,
                        created_at=row.created_at,
                        lead_ref=row.lead_ref,
                    )
                )
            batches.extend(split_batch(with_items(request, items)))
        return batches


def load_event_sets(session: Session, set_ids: Iterable[int]) -> dict[int, EventSet]:
    """The event sets of rows to claim (`session.get`: no statement for those it holds)."""
    event_sets = {}
    for set_id in set_ids:
        event_set = session.get(EventSet, set_id)
        assert event_set is not None  # the foreign key guarantees it
        event_sets[set_id] = event_set
    return event_sets


def plan_claim(
    rows: Sequence[Row], event_sets: Mapping[int, EventSet], settings: Settings, now: datetime
) -> ClaimPlan[Row]:
    """Decides, without reading or writing a row, what claiming does to each (see the
    module's text). `event_sets` holds the event set of every row."""
    if not rows:
        return ClaimPlan([], [])
    tokens: dict[int, str] = {}
    age_limits: dict[int, float] = {}
    lease_until = now + timedelta(seconds=settings.dispatch_lease_seconds)
    changes: list[tuple[Row, dict[str, Any]]] = []
    sending: dict[int, tuple[OutgoingBatch, list[tuple[Row, dict[str, Any]]]]] = {}
    for row in rows:
        event_set = event_sets[row.event_set_id]
        throttled = event_set.throttled_until is not None and event_set.throttled_until > now
        if event_set.status != EventSetStatus.ACTIVE or throttled:
            changes.append((row, {"lease_until": None}))  # the sweeper sends it once resumed
            continue
        if row.attempts >= max_attempts(settings):
            message = (
                f"gave up after {row.attempts} attempts "
                f"(the worker never recorded an answer); last: {row.last_message or '-'}"
            )
            changes.append((row, final_values(PostbackStatus.DEAD, message)))
            continue
        payload = row.payload
        if event_set.id not in age_limits:
            age_limits[event_set.id] = settings.event_age_limit_days(
                event_set.event_source, event_set.max_event_age_days
            )
        max_age_days = age_limits[event_set.id]
        oldest_allowed = (now - timedelta(days=max_age_days)).timestamp()
        # An operator's replay is sent whatever its age: they chose to send it.
        too_old = (
            row.replays == 0 and payload is not None and payload["event_time"] < oldest_allowed
        )
        if payload is None or too_old:
            message = f"event_time older than {max_age_days:g} days; not sent"
            changes.append((row, final_values(PostbackStatus.EXPIRED, message)))
            continue
        if event_set.id not in tokens:
            try:
                tokens[event_set.id] = open_token(event_set.sealed_token, settings)
            except TokenUnavailable as error:
                pause_event_set(event_set, str(error))
                changes.append((row, {"lease_until": None}))
                continue
        # The row is locked (or not inserted yet), so its attempts count is current.
        changes.append(
            (
                row,
                {
                    "status": PostbackStatus.SENDING,
                    "attempts": row.attempts + 1,
                    "lease_until": lease_until,
                },
            )
        )
        request = sending.get(event_set.id)
        if request is None:
            template = OutgoingBatch(
                event_set_id=event_set.id,
                workspace_id=event_set.workspace_id,
                event_set_name=event_set.name,
                event_source=event_set.event_source,
                source_id=event_set.source_id,
                test_event_code=event_set.test_event_code,
                access_token=tokens[event_set.id],
                sealed_token=event_set.sealed_token,
            )
            request = sending[event_set.id] = (template, [])
        request[1].append((row, payload))
    return ClaimPlan(changes, list(sending.values()))


def final_values(status: PostbackStatus, message: str) -> dict[str, Any]:
    """The columns of a row that ends here: no further attempt, no lease."""
    return {
        "status": status,
        "last_message": message[:2000],
        "next_attempt_at": None,
        "lease_until": None,
    }


def consent_withdrawn_values(withdrawn_at: datetime) -> dict[str, Any]:
    """The columns of a row stopped because its lead withdrew consent: final, and its event
    body (hashed keys) dropped, since it is never sent nor replayed."""
    return {
        **final_values(PostbackStatus.CONSENT_WITHDRAWN, consent_withdrawn_message(withdrawn_at)),
        "payload": null(),
    }


def split_batch(batch: OutgoingBatch) -> list[OutgoingBatch]:
    # TikTok expects test events one per request; live events go up to 1,000 per request.
    size = 1 if batch.test_event_code else MAX_EVENTS_PER_REQUEST
    return [with_items(batch, batch.items[i : i + size]) for i in range(0, len(batch.items), size)]


def with_items(batch: OutgoingBatch, items: list[Item]) -> OutgoingBatch:
    return OutgoingBatch(
        event_set_id=batch.event_set_id,
        workspace_id=batch.workspace_id,
        event_set_name=batch.event_set_name,
        event_source=batch.event_source,
        source_id=batch.source_id,
        test_event_code=batch.test_event_code,
        access_token=batch.access_token,
        sealed_token=batch.sealed_token,
        items=items,
    )


def pause_event_set(event_set: EventSet, reason: str) -> None:
    if event_set.status != EventSetStatus.PAUSED:
        log.warning(
            "pausing event set %s: %s", event_set.id, reason, extra={"event_set": event_set.name}
        )
    event_set.status = EventSetStatus.PAUSED
    event_set.paused_reason = reason[:2000]
