"""The types of a diagnostics report: one result per section, findings, and the report itself.

Plain data: the queries (`diagnostics_queries`) fill the section results, the findings
(`diagnostics_signal_findings`, `diagnostics_delivery_findings`) read them,
`diagnostics.diagnose` composes the `Report`, and `diagnostics_text` renders it. Nothing here
touches the database.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from crm_postback.operations.match_quality import MatchQuality


class Severity(StrEnum):
    CRITICAL = "critical"  # signals are not reaching TikTok, or cannot help it
    WARNING = "warning"  # signals reach TikTok but help it less than they could
    INFO = "info"  # worth knowing; nothing may need doing

    @property
    def rank(self) -> int:
        return {"critical": 0, "warning": 1, "info": 2}[self.value]


@dataclass(frozen=True)
class Finding:
    severity: Severity
    code: str  # stable identifier, e.g. "volume_below_guidance"
    title: str  # one sentence, with the numbers
    fix: str  # what to do about it


@dataclass(frozen=True)
class ErrorCode:
    code: int | None  # TikTok's code; None for network errors and bodies without one
    outcome: str  # throttled, transient, auth, invalid, not_tiktok
    http_status: int | None
    attempts: int
    example: str  # one of TikTok's messages for it


@dataclass(frozen=True)
class MissingAttributeCount:
    """A mapping's property filled from an attribute, and how often its recent triggers
    lacked that attribute (so the event went without the property)."""

    mapping_id: int
    event_name: str
    property: str
    attribute: str
    missing: int  # of the sampled triggers, those without the attribute (or with null)
    sampled: int  # the mapping's recent triggers (at its current version)


@dataclass(frozen=True)
class UnmappedType:
    trigger_type: str
    triggers: int
    has_mapping: bool  # mappings exist for the type, but none of their conditions held
    example: str


# --- one result per section ------------------------------------------------------------------


@dataclass(frozen=True)
class EventSetState:
    """The event set as configured now: whether it sends at all, and to where."""

    id: int
    name: str
    kind: str
    source_id: str
    status: str
    paused_reason: str | None
    test_event_code: str | None


@dataclass(frozen=True)
class EnabledMappings:
    count: int
    trigger_types: frozenset[str]


@dataclass(frozen=True)
class ReusedEventIds:
    """Triggers of the window whose caller event_id was already taken (nothing stored for
    that event), how many ids that was, and the ids taken most often with their counts."""

    triggers: int
    distinct_ids: int
    most_taken: list[tuple[str, int]]


@dataclass(frozen=True)
class OutboxStatuses:
    """Outbox rows created in the window, by status."""

    by_status: dict[str, int]

    def count(self, status: str) -> int:
        return self.by_status.get(status, 0)


@dataclass(frozen=True)
class MatchKeyCoverage:
    """Events built (an outbox row with a body) in the window, and the share carrying each key."""

    events: int
    shares: dict[str, float]

    def share(self, key: str) -> float:
        return self.shares.get(key, 0)


@dataclass(frozen=True)
class DeliveredVolume:
    """Delivered in the window, by event name, most first: what counts towards the guidance."""

    by_event: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_event.values())


@dataclass(frozen=True)
class TikTokErrors:
    """TikTok's answers other than delivered in the window, by code, most attempts first."""

    codes: tuple[ErrorCode, ...]

    def attempts(self, outcome: str) -> int:
        return sum(item.attempts for item in self.codes if item.outcome == outcome)


@dataclass(frozen=True)
class MissingAttributes:
    """Per property rule of an enabled mapping that reads an attribute: how many of its
    recent triggers in the window lacked it (rules never missing are left out)."""

    counts: tuple[MissingAttributeCount, ...]


@dataclass(frozen=True)
class UnmappedTriggers:
    """Triggers in the window that no mapping matched, by type, most first."""

    types: tuple[UnmappedType, ...]


@dataclass(frozen=True)
class OpenEvents:
    """Events pending, retrying or sending now, of any age."""

    by_status: dict[str, int]
    oldest_at: datetime | None
    oldest_age_seconds: float | None


@dataclass(frozen=True)
class WaitingTriggers:
    """Triggers received but not processed yet, or waiting for their lead, now."""

    by_status: dict[str, int]
    oldest_received_age_seconds: float | None  # of those still `received`


# --- the report --------------------------------------------------------------------------------


@dataclass
class Report:
    event_set_id: int
    event_set: str
    kind: str
    source_id: str
    status: str
    paused_reason: str | None
    test_event_code: str | None
    generated_at: datetime
    window_days: int
    since: datetime
    # events built (an outbox row with a body) in the window, and the share carrying each key
    events: int
    coverage: dict[str, float]
    delivered: int  # delivered in the window: what counts towards TikTok's guidance
    delivered_by_event: dict[str, int]
    guidance_signals: int
    statuses: dict[str, int]  # outbox rows created in the window, by status
    error_codes: list[ErrorCode]
    unmapped: list[UnmappedType]
    open_events: dict[str, int]  # pending / retrying / sending now, any age
    oldest_pending_at: datetime | None
    oldest_pending_age_seconds: float | None
    triggers_waiting: dict[str, int]  # received / waiting_for_lead now
    oldest_trigger_age_seconds: float | None
    enabled_mappings: int
    findings: list[Finding] = field(default_factory=list)
    # properties left out because a trigger lacked the attribute a mapping reads them from
    missing_attributes: list[MissingAttributeCount] = field(default_factory=list)
    # the match-quality score over the window's calendar days (match_quality)
    match_quality: MatchQuality | None = None

    @property
    def worst(self) -> Severity | None:
        return min((f.severity for f in self.findings), key=lambda s: s.rank, default=None)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (ISO datetimes, enum values), with `worst`."""
        data = asdict(self)
        data["worst"] = self.worst.value if self.worst else None
        if self.match_quality is not None:
            data["match_quality"]["summary"] = self.match_quality.summary
        return _jsonable(data)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return value.value
    return value


# --- how the report spells numbers (findings' titles and the text rendering) -----------------


def format_share(share: float) -> str:
    return f"{share:.0%}"


def format_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
