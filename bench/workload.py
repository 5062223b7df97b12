"""The trigger stream every run pushes: the same leads, order, keys and values each time.

Every lead gets `lead.submitted` with raw email, phone and ttclid; ~60 % are also sold
(`lead.sold` with a value) and ~25 % of those convert (`offer.conversion`). Leads are spread
over 3 event sets. Producers each own the leads `lead % producers == p`; within a producer a
lead's later stages come LAG_LEADS leads after its submission, as in a real lifecycle where a
sale follows the form by minutes, so neither design sees a sale before its lead.

A workload can instead send every trigger to one event set (`event_set`, an index into
EVENT_SETS) and number its leads from `first_lead`, so that two workloads in one run (the
fairness mode's backlog and quiet set) never share a lead id, key or e-mail.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any

from crm_postback.tiktok.events_payload import make_event_id

STAGES = ("lead.submitted", "lead.sold", "offer.conversion")
EVENT_NAMES = ("Lead", "lead_sold", "Purchase")
SOLD_SHARE = 0.60
CONVERSION_SHARE = 0.25
LAG_LEADS = 100


@dataclass(frozen=True)
class EventSetSpec:
    name: str
    source_id: str
    token: str


EVENT_SETS = (
    EventSetSpec("bench-acme", "7300000000000000101", "bench-token-acme-000101"),
    EventSetSpec("bench-beta", "7300000000000000102", "bench-token-beta-000102"),
    EventSetSpec("bench-gamma", "7300000000000000103", "bench-token-gamma-000103"),
)
LEAD_EVENT_SOURCE = "BenchLeads"

# One mapping per stage on every event set: exactly one event per trigger.
MAPPINGS: tuple[dict[str, Any], ...] = (
    {"trigger_type": "lead.submitted", "event_name": "Lead"},
    {"trigger_type": "lead.sold", "event_name": "lead_sold"},
    {
        "trigger_type": "offer.conversion",
        "event_name": "Purchase",
        "properties": {"order_id_from": "offer_id", "content_type": "product"},
    },
)


@dataclass(frozen=True, slots=True)
class TriggerRef:
    index: int  # position in the run's latency arrays
    lead: int
    stage: int  # 0 submitted, 1 sold, 2 conversion


class Workload:
    def __init__(
        self,
        triggers: int,
        producers: int,
        seed: int = 1,
        *,
        event_set: int | None = None,
        first_lead: int = 0,
    ) -> None:
        if triggers < 1 or producers < 1:
            raise ValueError("triggers and producers must be at least 1")
        if event_set is not None and not 0 <= event_set < len(EVENT_SETS):
            raise ValueError(f"event_set must be an index into EVENT_SETS, not {event_set}")
        self.triggers = triggers
        self.producers = producers
        self.fixed_set = event_set
        self.first_lead = first_lead
        rng = random.Random(seed)
        stages = bytearray()
        total = 0
        while total < triggers:
            count = 1
            if rng.random() < SOLD_SHARE:
                count = 3 if rng.random() < CONVERSION_SHARE else 2
            count = min(count, triggers - total)
            stages.append(count)
            total += count
        self.stages = stages  # triggers per lead
        self.offsets = array("q", accumulate(stages, initial=0))
        # Recent enough for the product's 7-day age limit, never in the future.
        self.occurred_at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

    @property
    def leads(self) -> int:
        return len(self.stages)

    def stage_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STAGES, 0)
        for count in self.stages:
            for stage in range(count):
                counts[STAGES[stage]] += 1
        return counts

    def partition(self, producer: int) -> Iterator[TriggerRef]:
        """Producer `producer`'s triggers, in the order it sends them."""
        leads = range(producer, self.leads, self.producers)
        size = len(leads)
        for step in range(size + 2 * LAG_LEADS):
            for stage in range(3):
                position = step - stage * LAG_LEADS
                if 0 <= position < size:
                    lead = leads[position]
                    if self.stages[lead] > stage:
                        yield TriggerRef(self.offsets[lead] + stage, lead, stage)

    def all(self) -> Iterator[TriggerRef]:
        for producer in range(self.producers):
            yield from self.partition(producer)

    # What each design is given

    def lead_id(self, lead: int) -> str:
        return f"BL{self.first_lead + lead:09d}"

    def idempotency_key(self, ref: TriggerRef) -> str:
        return f"{self.lead_id(ref.lead)}:{STAGES[ref.stage]}"

    def set_index(self, ref: TriggerRef) -> int:
        """The trigger's event set, as an index into EVENT_SETS."""
        return ref.lead % len(EVENT_SETS) if self.fixed_set is None else self.fixed_set

    def event_set(self, ref: TriggerRef) -> EventSetSpec:
        return EVENT_SETS[self.set_index(ref)]

    def _when(self, ref: TriggerRef) -> datetime:
        return self.occurred_at + timedelta(minutes=10 * ref.stage)

    def _raw_keys(self, lead: int) -> dict[str, str]:
        lead += self.first_lead
        return {
            "email": f"Lead.{lead}@Example.com",
            "phone": f"(213) 5{(lead // 10_000) % 100:02d}-{lead % 10_000:04d}",
            "ttclid": f"E.C.P.bench{lead:x}",
        }

    def _value(self, ref: TriggerRef) -> float:
        lead = self.first_lead + ref.lead
        return round(5 + (lead * 37 + ref.stage * 11) % 14_500 / 100, 2)

    def api_trigger(self, ref: TriggerRef) -> dict[str, Any]:
        """The trigger as crm-postback's `enqueue_trigger(s)` takes it."""
        trigger: dict[str, Any] = {
            "type": STAGES[ref.stage],
            "lead_id": self.lead_id(ref.lead),
            "event_set": self.event_set(ref).name,
            "occurred_at": self._when(ref).isoformat(),
            "idempotency_key": self.idempotency_key(ref),
        }
        if ref.stage == 0:
            trigger["match_keys"] = self._raw_keys(ref.lead)
        elif ref.stage == 1:
            trigger["attributes"] = {
                "value": self._value(ref),
                "currency": "USD",
                "buyer_id": f"B{(self.first_lead + ref.lead) % 50}",
            }
        else:
            trigger["attributes"] = {
                "value": self._value(ref),
                "currency": "USD",
                "offer_id": f"offer-{self.first_lead + ref.lead}",
            }
        return trigger

    def naive_postback(self, ref: TriggerRef, set_ids: list[int]) -> dict[str, Any]:
        """The flat postback the naive design fires per trigger (field names as the seed doc)."""
        postback: dict[str, Any] = {
            "trigger": STAGES[ref.stage],
            "lead_id": self.lead_id(ref.lead),
            "postback": self.event_set(ref).name,
            "transaction_id": self.event_id(ref, set_ids),
            "utc_timestamp": int(self._when(ref).timestamp()),
        }
        if ref.stage == 0:
            keys = self._raw_keys(ref.lead)
            postback.update(email=keys["email"], mobile=keys["phone"], ttclid=keys["ttclid"])
        else:
            postback.update(revenue=self._value(ref), currency="USD")
            if ref.stage == 2:
                postback["offer_id"] = f"offer-{self.first_lead + ref.lead}"
        return postback

    def event_id(self, ref: TriggerRef, set_ids: list[int]) -> str:
        """The event_id the simulator must receive for this trigger (one event per trigger).

        `set_ids` are the event sets' database ids, in EVENT_SETS order.
        """
        set_id = set_ids[self.set_index(ref)]
        return make_event_id(set_id, self.idempotency_key(ref), EVENT_NAMES[ref.stage])
