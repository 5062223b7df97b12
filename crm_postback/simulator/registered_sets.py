"""The event sets (CRM event sets and Pixels) the simulator knows, each with its owning token."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

EventSourceKind = Literal["crm", "web"]
EVENT_SOURCE_KINDS: frozenset[str] = frozenset({"crm", "web"})


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True, slots=True)
class RegisteredEventSet:
    """One event set: a CRM event set (`kind="crm"`) or a Pixel (`kind="web"`)."""

    event_set_id: str
    access_token: str
    kind: EventSourceKind = "crm"
    name: str = ""
    advertiser_id: str = ""
    create_time: str = field(default_factory=_now_iso)

    def __post_init__(self) -> None:
        if not self.event_set_id:
            raise ValueError("event_set_id must not be empty")
        if not self.access_token:
            raise ValueError("access_token must not be empty")
        if self.kind not in EVENT_SOURCE_KINDS:
            raise ValueError(f"kind must be 'crm' or 'web', not {self.kind!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "event_set_id": self.event_set_id,
            "access_token": self.access_token,
            "kind": self.kind,
            "name": self.name,
            "advertiser_id": self.advertiser_id,
            "create_time": self.create_time,
        }
