"""The load: three event sets, a lifecycle mix of triggers, the events they must produce, and
the pusher that feeds them to `enqueue_triggers` while faults happen.

The expected events are computed here from the mapping plan, independently of the product's
resolver, and their `event_id`s from the documented formula (first 40 hex of
SHA-256("<event set id>|<occurrence key>|<event name>")), so the checks compare the product
with an oracle rather than with itself.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from models.workspaces import DEFAULT_WORKSPACE_ID

log = logging.getLogger("chaos.load")

ADVERTISER_ID = "7000000099"
LEAD_EVENT_SOURCE = "ChaosLeads"
# Area codes that no timestamp or epoch second starts with, so a digit run in a date can
# never look like one of our phone numbers to the PII scanner.
AREA_CODES = (213, 310, 415, 646, 312, 617, 512, 303)


def _always(_: dict[str, Any]) -> bool:
    return True


@dataclass(frozen=True)
class MappingPlan:
    trigger_type: str
    event_name: str
    properties: dict[str, Any] = field(default_factory=dict)
    conditions: tuple[dict[str, Any], ...] = ()
    # The oracle: does a trigger with these attributes produce this event?
    expect: Callable[[dict[str, Any]], bool] = _always


@dataclass(frozen=True)
class EventSetPlan:
    name: str
    source_id: str
    token: str
    mappings: tuple[MappingPlan, ...]
    default_currency: str | None = None

    def events_for(self, trigger_type: str, attributes: dict[str, Any]) -> list[str]:
        names: list[str] = []
        for mapping in self.mappings:
            if (
                mapping.trigger_type == trigger_type
                and mapping.expect(attributes)
                and mapping.event_name not in names
            ):
                names.append(mapping.event_name)
        return names


_PURCHASE = {"value_from": "payout", "order_id_from": "offer_id", "content_type": "product"}

EVENT_SETS: tuple[EventSetPlan, ...] = (
    EventSetPlan(
        name="chaos-acme",
        source_id="7300000000000000101",
        token="chaos-token-acme-0001",
        mappings=(
            MappingPlan("lead.submitted", "Lead"),
            MappingPlan("lead.sold", "lead_sold", {"currency": "USD"}),
            MappingPlan("offer.conversion", "Purchase", {**_PURCHASE, "currency": "USD"}),
        ),
    ),
    EventSetPlan(
        # Two events for one trigger (one conditional); offer.conversion stays unmapped.
        name="chaos-beta",
        source_id="7300000000000000102",
        token="chaos-token-beta-0002",
        default_currency="EUR",
        mappings=(
            MappingPlan("lead.submitted", "Lead"),
            MappingPlan("lead.sold", "lead_sold"),
            MappingPlan(
                "lead.sold",
                "ApplicationApproval",
                {"currency": "EUR"},
                conditions=({"attribute": "value", "op": "gte", "value": 50},),
                expect=lambda attributes: float(attributes["value"]) >= 50,
            ),
        ),
    ),
    EventSetPlan(
        name="chaos-gamma",
        source_id="7300000000000000103",
        token="chaos-token-gamma-0003",
        mappings=(
            MappingPlan("lead.submitted", "qualified_lead"),
            MappingPlan("lead.sold", "lead_sold", {"currency": "GBP"}),
            MappingPlan("offer.conversion", "Purchase", {**_PURCHASE, "currency": "GBP"}),
        ),
    ),
)


# --- leads and their raw match keys ------------------------------------------------------


def lead_ref(number: int) -> str:
    return f"chaos-L{number:06d}"


def raw_email(number: int) -> str:
    return f"Chaos.User{number}@Example.com"


def phone_national(number: int) -> str:
    area = AREA_CODES[number % len(AREA_CODES)]
    return f"{area}{300 + number // 10_000}{number % 10_000:04d}"


def raw_phone(number: int) -> str:
    """As a routing system would send it, in one of three spellings."""
    national = phone_national(number)
    area, exchange, line = national[:3], national[3:6], national[6:]
    return (
        f"+1 {area} {exchange} {line}",
        f"({area}) {exchange}-{line}",
        f"{area}.{exchange}.{line}",
    )[number % 3]


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_event_id(event_set_db_id: int, occurrence_key: str, event_name: str) -> str:
    """The documented event_id formula (docs/tiktok-contract.md), re-derived for the oracle."""
    return sha256_hex(f"{event_set_db_id}|{occurrence_key}|{event_name}")[:40]


# --- the trigger plan ---------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedTrigger:
    lead_number: int
    set_index: int
    type: str
    idempotency_key: str
    occurred_at: datetime
    attributes: dict[str, Any]
    match_keys: dict[str, Any] | None
    position: float  # order in which the routing system reports it

    def as_api_input(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": self.type,
            "lead_id": lead_ref(self.lead_number),
            "event_set": EVENT_SETS[self.set_index].name,
            "occurred_at": self.occurred_at.isoformat(),
            "attributes": self.attributes,
            "idempotency_key": self.idempotency_key,
        }
        if self.match_keys is not None:
            data["match_keys"] = self.match_keys
        return data


@dataclass(frozen=True)
class ExpectedEvent:
    event_id: str
    source_id: str
    event_name: str
    lead_number: int
    event_time: int
    ttclid: str | None
    tiktok_lead_id: str | None


@dataclass
class LoadPlan:
    triggers: list[PlannedTrigger]
    leads: int
    expected_unmapped: int = 0
    expected: dict[str, ExpectedEvent] = field(default_factory=dict)

    @property
    def expected_rows(self) -> int:
        return len(self.expected) + self.expected_unmapped

    def resolve_expectations(self, set_db_ids: dict[int, int]) -> None:
        keys: dict[int, tuple[str | None, str | None]] = {}
        for trigger in self.triggers:
            if trigger.match_keys is not None:
                keys[trigger.lead_number] = (
                    trigger.match_keys.get("ttclid"),
                    trigger.match_keys.get("tiktok_lead_id"),
                )
        self.expected = {}
        self.expected_unmapped = 0
        for trigger in self.triggers:
            plan = EVENT_SETS[trigger.set_index]
            names = plan.events_for(trigger.type, trigger.attributes)
            if not names:
                self.expected_unmapped += 1
            ttclid, tiktok_lead_id = keys.get(trigger.lead_number, (None, None))
            for name in names:
                event_id = make_event_id(
                    set_db_ids[trigger.set_index], trigger.idempotency_key, name
                )
                self.expected[event_id] = ExpectedEvent(
                    event_id=event_id,
                    source_id=plan.source_id,
                    event_name=name,
                    lead_number=trigger.lead_number,
                    event_time=int(trigger.occurred_at.timestamp()),
                    ttclid=ttclid,
                    tiktok_lead_id=tiktok_lead_id,
                )


def build_plan(count: int, rng: random.Random, now: datetime | None = None) -> LoadPlan:
    """Exactly `count` triggers: per lead a lead.submitted with raw keys, then maybe
    lead.sold, offer.conversion and an unmapped buyer.accepted, interleaved across leads."""
    generated: list[PlannedTrigger] = []
    number = 0
    while len(generated) < count:
        generated.extend(_lead_lifecycle(number, rng))
        number += 1
    generated = generated[:count]
    generated.sort(key=lambda t: t.position)
    # Occurrence times: spread over the last two hours, in reporting order.
    start = (now or datetime.now(UTC)) - timedelta(hours=2)
    span = max(t.position for t in generated) or 1.0
    timed = [
        PlannedTrigger(
            **{
                **t.__dict__,
                "occurred_at": start + timedelta(seconds=round(6000 * t.position / span, 3)),
            }
        )
        for t in generated
    ]
    return LoadPlan(triggers=timed, leads=len({t.lead_number for t in timed}))


def _lead_lifecycle(number: int, rng: random.Random) -> list[PlannedTrigger]:
    set_index = number % len(EVENT_SETS)
    epoch = datetime(2000, 1, 1, tzinfo=UTC)  # replaced once positions are known

    def trigger(kind: str, position: float, **extra: Any) -> PlannedTrigger:
        return PlannedTrigger(
            lead_number=number,
            set_index=set_index,
            type=kind,
            idempotency_key=f"{lead_ref(number)}:{kind}",
            occurred_at=epoch,
            attributes=extra.get("attributes", {}),
            match_keys=extra.get("match_keys"),
            position=position,
        )

    keys: dict[str, Any] = {"email": raw_email(number), "phone": raw_phone(number)}
    if rng.random() < 0.5:
        keys["ttclid"] = f"E.C.P.chaos-{number}"
    if rng.random() < 0.7:
        keys["tiktok_lead_id"] = f"73{number:017d}"
    position = float(number)
    triggers = [trigger("lead.submitted", position, match_keys=keys)]
    if rng.random() < 0.05:
        triggers.append(trigger("buyer.accepted", position + rng.uniform(1, 50)))
    if rng.random() < 0.6:
        sold_at = position + rng.uniform(5, 150)
        sold = {"value": round(rng.uniform(5, 120), 2), "buyer_id": f"B{rng.randint(1, 40)}"}
        triggers.append(trigger("lead.sold", sold_at, attributes=sold))
        if rng.random() < 0.5:
            conversion = {"payout": round(rng.uniform(20, 300), 2), "offer_id": f"offer-{number}"}
            triggers.append(
                trigger("offer.conversion", sold_at + rng.uniform(5, 150), attributes=conversion)
            )
    return triggers


# --- configuring the product and the simulator --------------------------------------------


def configure_event_sets() -> dict[int, int]:
    """Creates the event sets and mappings through the product's admin services."""
    from crm_postback.configuration.audit import SYSTEM_ACTOR
    from crm_postback.configuration.event_set_service import create_event_set
    from crm_postback.configuration.mapping_service import add_mapping
    from crm_postback.core.settings import get_settings
    from models.db import session_scope

    ids: dict[int, int] = {}
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        for index, plan in enumerate(EVENT_SETS):
            event_set = create_event_set(
                session,
                get_settings(),
                name=plan.name,
                source_id=plan.source_id,
                access_token=plan.token,
                kind="crm",
                lead_event_source=LEAD_EVENT_SOURCE,
                advertiser_id=ADVERTISER_ID,
                default_currency=plan.default_currency,
                actor=SYSTEM_ACTOR,
            )
            for mapping in plan.mappings:
                add_mapping(
                    session,
                    event_set,
                    trigger_type=mapping.trigger_type,
                    event_name=mapping.event_name,
                    conditions=list(mapping.conditions),
                    properties=dict(mapping.properties),
                    actor=SYSTEM_ACTOR,
                )
            ids[index] = event_set.id
        session.commit()
    return ids


def register_with_simulator(state: Any) -> None:
    from crm_postback.simulator import RegisteredEventSet

    for plan in EVENT_SETS:
        state.register_event_set(
            RegisteredEventSet(
                event_set_id=plan.source_id,
                access_token=plan.token,
                kind="crm",
                name=plan.name,
                advertiser_id=ADVERTISER_ID,
            )
        )


# --- pushing -----------------------------------------------------------------------------


@dataclass
class PushStats:
    pushed: int = 0
    batches: int = 0
    batch_retries: int = 0
    already_stored_on_retry: int = 0
    rejected: list[str] = field(default_factory=list)
    gave_up: str | None = None
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    started_at: float = 0.0
    finished_at: float = 0.0


class Pusher(threading.Thread):
    """Feeds the plan to `enqueue_triggers` in batches, paced over `seconds`.

    A batch that fails (connection killed, database refusing connections) is sent again: every
    trigger carries an explicit idempotency key, so a batch that did commit before the error
    comes back as duplicates and nothing is stored twice. A dead broker needs nothing: the API
    stores the batch and logs that the sweeper will send it. A restarted server answers
    "connection refused", then "the database system is starting up" / "is in recovery mode"
    while it recovers, or "is shutting down": all of them are sent again too (counted by kind,
    up to GIVE_UP_AFTER_SECONDS).
    """

    GIVE_UP_AFTER_SECONDS = 120.0

    def __init__(
        self,
        triggers: list[PlannedTrigger],
        *,
        seconds: float,
        batch_size: tuple[int, int],
        rng: random.Random,
        stop: threading.Event,
    ) -> None:
        super().__init__(name="chaos-pusher", daemon=True)
        self.triggers = triggers
        self.seconds = seconds
        self.batch_size = batch_size
        self.rng = rng
        self.stop_event = stop
        self.stats = PushStats()

    def run(self) -> None:
        self.stats.started_at = time.monotonic()
        total = len(self.triggers)
        index = 0
        while index < total and not self.stop_event.is_set():
            due = self.stats.started_at + self.seconds * index / total
            self.stop_event.wait(max(0.0, due - time.monotonic()))
            size = self.rng.randint(*self.batch_size)
            batch = self.triggers[index : index + size]
            if not self._push(batch):
                break
            index += len(batch)
        self.stats.finished_at = time.monotonic()

    def _push(self, batch: list[PlannedTrigger]) -> bool:
        from crm_postback.api import enqueue_triggers

        payload = [t.as_api_input() for t in batch]
        first_failure: float | None = None
        retried = False
        while not self.stop_event.is_set():
            try:
                items = enqueue_triggers(payload)
            except Exception as error:  # whatever the killed connection raised: send it again
                now = time.monotonic()
                first_failure = first_failure or now
                if now - first_failure > self.GIVE_UP_AFTER_SECONDS:
                    self.stats.gave_up = f"{type(error).__name__}: {error}"[:500]
                    return False
                self.stats.batch_retries += 1
                kind = error_kind(error)
                self.stats.errors_by_kind[kind] = self.stats.errors_by_kind.get(kind, 0) + 1
                retried = True
                log.info("batch of %d failed (%s); sending it again", len(batch), type(error))
                time.sleep(0.3)
                continue
            for item in items:
                if item.errors:
                    reasons = "; ".join(str(e) for e in item.errors)
                    self.stats.rejected.append(f"{batch[item.index].idempotency_key}: {reasons}")
                elif retried and item.accepted is not None and item.accepted.duplicate:
                    self.stats.already_stored_on_retry += 1
            self.stats.pushed += len(batch)
            self.stats.batches += 1
            return True
        return False


ERROR_KINDS = (
    "connection refused",
    "the database system is starting up",
    "the database system is in recovery mode",
    "the database system is shutting down",
    "terminating connection due to administrator command",
    "server closed the connection unexpectedly",
    "does not allow connections",
    # PgBouncer's own words, when the server behind it is down or restarting.
    "server login has been failing",
    "pgbouncer cannot connect to server",
    "server conn crashed",
    "query_wait_timeout",
)


def error_kind(error: BaseException) -> str:
    """A short name for what a failed batch ran into (no values: messages may quote them)."""
    text = str(error).lower()
    for kind in ERROR_KINDS:
        if kind in text:
            return kind
    return type(error).__name__
