"""Signal diagnostics per event set: will these signals help TikTok's optimiser?

Like TikTok's Events Manager diagnostics, but computed from our own outbox before (and while)
data leaves: match-key coverage of the events we built, delivered volume over the last 14 days
against TikTok's guidance (more than 50 signals in 14 days for stable optimisation), TikTok's
error codes, triggers no mapping matched, and what is still waiting. Each finding carries a
severity and a suggested fix.

`diagnose(session, event_set_id)` returns a `Report` (dataclasses, `as_dict()` for JSON); the
CLI (`postback diagnose`) and the admin page render it. Read-only.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from crm_postback.core.errors import InputRejected
from crm_postback.operations.retention import has_body
from crm_postback.tiktok.response_outcomes import AUTH_CODES, Outcome
from models import (
    DeliveryAttempt,
    EventSet,
    EventSetKind,
    EventSetStatus,
    Mapping,
    Postback,
    PostbackStatus,
    Trigger,
    TriggerStatus,
    utcnow,
)

WINDOW_DAYS = 14
# TikTok: "send more than 50 signals within 14 days" (reference §6.3, TT-HELP-SIGNAL).
GUIDANCE_SIGNALS = 50
LOW_LEAD_ID_SHARE = 0.5  # TikTok: prioritise data with lead_ID for a higher match rate
LOW_PII_SHARE = 0.5
LOW_TTCLID_SHARE = 0.3
HIGH_FAILURE_SHARE = 0.05
PENDING_WARN_SECONDS = 3600  # an event waiting an hour: something holds it
PENDING_CRITICAL_SECONDS = 24 * 3600  # half of TikTok's 48 h deduplication window
TRIGGER_STUCK_SECONDS = 300

# Where each match key sits in an event (the data[] item as sent).
CRM_KEYS: dict[str, tuple[str, str]] = {
    "tiktok_lead_id": ("lead", "lead_id"),
    "ttclid": ("user", "ttclid"),
    "email": ("user", "email"),
    "phone": ("user", "phone"),
    "external_id": ("user", "external_id"),
}
WEB_KEYS: dict[str, tuple[str, str]] = {
    "ttclid": ("user", "ttclid"),
    "email": ("user", "email"),
    "phone": ("user", "phone"),
    "external_id": ("user", "external_id"),
    "ip": ("user", "ip"),
    "user_agent": ("user", "user_agent"),
    "ttp": ("user", "ttp"),
}
OPEN_STATUSES = (PostbackStatus.PENDING, PostbackStatus.RETRYING, PostbackStatus.SENDING)


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
    outcome: str  # throttled, transient, auth, invalid
    http_status: int | None
    attempts: int
    example: str  # one of TikTok's messages for it


@dataclass(frozen=True)
class UnmappedType:
    trigger_type: str
    triggers: int
    has_mapping: bool  # mappings exist for the type, but none of their conditions held
    example: str


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

    @property
    def worst(self) -> Severity | None:
        return min((f.severity for f in self.findings), key=lambda s: s.rank, default=None)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["worst"] = self.worst.value if self.worst else None
        return _jsonable(data)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return value.value
    return value


def _has(session: Session, path: tuple[str, str]) -> Any:
    """SQL: the stored event has this key (empty keys are never sent, so present = usable)."""
    column = Postback.__table__.c.payload
    if session.get_bind().dialect.name == "postgresql":
        return func.jsonb_extract_path(column, *path).isnot(None)
    return func.json_extract(column, "$." + ".".join(path)).isnot(None)


def _aware(value: datetime | None) -> datetime | None:
    from datetime import UTC

    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def diagnose(
    session: Session,
    event_set_id: int,
    *,
    now: datetime | None = None,
    window_days: int = WINDOW_DAYS,
    stale_trigger_seconds: int = TRIGGER_STUCK_SECONDS,
) -> Report:
    """The diagnostics of one event set. Raises InputRejected for an unknown id."""
    event_set = session.get(EventSet, event_set_id)
    if event_set is None:
        raise InputRejected.one("event_set", f"no event set with id {event_set_id}")
    now = now or utcnow()
    since = now - timedelta(days=window_days)
    table = Postback.__table__
    of_set = table.c.event_set_id == event_set.id

    statuses = dict(
        session.execute(
            select(table.c.status, func.count())
            .where(of_set, table.c.created_at >= since)
            .group_by(table.c.status)
        ).all()
    )

    keys = CRM_KEYS if event_set.kind == EventSetKind.CRM else WEB_KEYS
    columns = [func.count()] + [
        func.sum(case((_has(session, path), 1), else_=0)) for path in keys.values()
    ]
    row = session.execute(
        select(*columns).where(
            of_set, table.c.created_at >= since, has_body(session.get_bind().dialect.name)
        )
    ).one()
    events = int(row[0] or 0)
    coverage = {
        name: (int(count or 0) / events if events else 0.0)
        for name, count in zip(keys, row[1:], strict=True)
    }

    delivered_by_event = {
        name or "?": count
        for name, count in session.execute(
            select(table.c.event_name, func.count())
            .where(
                of_set,
                table.c.status == PostbackStatus.DELIVERED,
                table.c.delivered_at >= since,
            )
            .group_by(table.c.event_name)
            .order_by(func.count().desc())
        )
    }
    delivered = sum(delivered_by_event.values())

    attempts = DeliveryAttempt.__table__
    error_codes = [
        ErrorCode(code, outcome, http_status, count, (example or "")[:300])
        for code, outcome, http_status, count, example in session.execute(
            select(
                attempts.c.code,
                attempts.c.outcome,
                attempts.c.http_status,
                func.count(),
                func.max(attempts.c.message),
            )
            .join(table, table.c.id == attempts.c.postback_id)
            .where(
                of_set,
                attempts.c.attempted_at >= since,
                attempts.c.outcome != Outcome.DELIVERED.value,
            )
            .group_by(attempts.c.code, attempts.c.outcome, attempts.c.http_status)
            .order_by(func.count().desc())
        )
    ]

    triggers = Trigger.__table__
    mapped_types = set(
        session.scalars(
            select(Mapping.trigger_type).where(
                Mapping.event_set_id == event_set.id, Mapping.enabled.is_(True)
            )
        )
    )
    enabled_mappings = int(
        session.scalar(
            select(func.count()).where(
                Mapping.event_set_id == event_set.id, Mapping.enabled.is_(True)
            )
        )
        or 0
    )
    unmapped = [
        UnmappedType(trigger_type, count, trigger_type in mapped_types, (example or "")[:300])
        for trigger_type, count, example in session.execute(
            select(triggers.c.trigger_type, func.count(), func.max(table.c.last_message))
            .join(triggers, triggers.c.id == table.c.trigger_id)
            .where(
                of_set,
                table.c.status == PostbackStatus.UNMAPPED,
                table.c.created_at >= since,
            )
            .group_by(triggers.c.trigger_type)
            .order_by(func.count().desc())
        )
    ]

    open_events: dict[str, int] = {}
    oldest: datetime | None = None
    for status, count, first in session.execute(
        select(table.c.status, func.count(), func.min(table.c.created_at))
        .where(of_set, table.c.status.in_(OPEN_STATUSES))
        .group_by(table.c.status)
    ):
        open_events[status] = count
        first = _aware(first)
        if first is not None and (oldest is None or first < oldest):
            oldest = first
    triggers_waiting: dict[str, int] = {}
    oldest_trigger: datetime | None = None
    for status, count, first in session.execute(
        select(triggers.c.status, func.count(), func.min(triggers.c.received_at))
        .where(
            triggers.c.event_set_id == event_set.id,
            triggers.c.status.in_((TriggerStatus.RECEIVED, TriggerStatus.WAITING_FOR_LEAD)),
        )
        .group_by(triggers.c.status)
    ):
        triggers_waiting[status] = count
        first = _aware(first)
        if status == TriggerStatus.RECEIVED and first is not None:
            oldest_trigger = first

    report = Report(
        event_set_id=event_set.id,
        event_set=event_set.name,
        kind=event_set.kind,
        source_id=event_set.source_id,
        status=event_set.status,
        paused_reason=event_set.paused_reason,
        test_event_code=event_set.test_event_code,
        generated_at=now,
        window_days=window_days,
        since=since,
        events=events,
        coverage=coverage,
        delivered=delivered,
        delivered_by_event=delivered_by_event,
        guidance_signals=GUIDANCE_SIGNALS,
        statuses=statuses,
        error_codes=error_codes,
        unmapped=unmapped,
        open_events=open_events,
        oldest_pending_at=oldest,
        oldest_pending_age_seconds=(now - oldest).total_seconds() if oldest else None,
        triggers_waiting=triggers_waiting,
        oldest_trigger_age_seconds=(
            (now - oldest_trigger).total_seconds() if oldest_trigger else None
        ),
        enabled_mappings=enabled_mappings,
    )
    report.findings = sorted(
        _findings(report, stale_trigger_seconds), key=lambda f: f.severity.rank
    )
    return report


def diagnose_all(session: Session, *, now: datetime | None = None) -> list[Report]:
    ids = session.scalars(select(EventSet.id).order_by(EventSet.id)).all()
    return [diagnose(session, set_id, now=now) for set_id in ids]


# --- findings ----------------------------------------------------------------------------


def _pct(share: float) -> str:
    return f"{share:.0%}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _findings(report: Report, stale_trigger_seconds: int) -> list[Finding]:
    name = report.event_set
    found: list[Finding] = []
    add = found.append
    days = report.window_days

    if report.status == EventSetStatus.PAUSED:
        add(
            Finding(
                Severity.CRITICAL,
                "event_set_paused",
                f"The event set is paused, so nothing is sent: {report.paused_reason or '-'}.",
                f"If TikTok refused the token, set a valid one: `postback event-set set-token "
                f"{name}`; if an operator paused it, `postback event-set resume {name}`. Held "
                "events are sent then.",
            )
        )
    if report.test_event_code:
        add(
            Finding(
                Severity.WARNING,
                "test_event_code_set",
                f"A test event code ({report.test_event_code}) is set: TikTok shows these events "
                "under Test Events only; they do not feed optimisation.",
                "Remove the test event code once testing is done.",
            )
        )
    if report.enabled_mappings == 0:
        add(
            Finding(
                Severity.CRITICAL,
                "no_mappings",
                "No enabled mapping: every trigger for this event set ends unmapped.",
                f"Map the lifecycle stages: `postback mapping set --event-set {name} "
                "--trigger lead.submitted --event Lead` (and lead.sold, offer.conversion, ...).",
            )
        )
    found.extend(_volume_findings(report))
    found.extend(_coverage_findings(report))
    found.extend(_error_findings(report))
    for item in report.unmapped:
        if item.has_mapping:
            add(
                Finding(
                    Severity.INFO,
                    "conditions_never_matched",
                    f"{item.triggers} '{item.trigger_type}' trigger(s) in {days} days matched "
                    f"none of the conditions of its mappings ({item.example}).",
                    f"Check the conditions (`postback mapping list {name}`); add a mapping "
                    "without conditions if every such trigger should be sent.",
                )
            )
        else:
            add(
                Finding(
                    Severity.WARNING,
                    "mapping_missing",
                    f"{item.triggers} '{item.trigger_type}' trigger(s) in {days} days matched no "
                    "mapping: a mapping is probably missing.",
                    f"`postback mapping set --event-set {name} --trigger {item.trigger_type} "
                    "--event <TikTok event>`, or stop sending this trigger type here.",
                )
            )
    found.extend(_waiting_findings(report, stale_trigger_seconds))
    return found


def _volume_findings(report: Report) -> list[Finding]:
    name, days, guidance = report.event_set, report.window_days, report.guidance_signals
    fix = (
        "Send every funnel stage, not only form fills: map lead.sold, offer.click and "
        f"offer.conversion too (`postback mapping set --event-set {name} ...`), and check that "
        "the routing system sends a trigger for every lead."
    )
    if report.delivered == 0:
        return [
            Finding(
                Severity.WARNING,
                "no_signals",
                f"No event was delivered in the last {days} days; TikTok recommends more than "
                f"{guidance} signals in 14 days for stable optimisation.",
                fix,
            )
        ]
    if report.delivered <= guidance:
        return [
            Finding(
                Severity.WARNING,
                "volume_below_guidance",
                f"{report.delivered} event(s) delivered in the last {days} days; TikTok "
                f"recommends more than {guidance} signals in 14 days for stable optimisation.",
                fix,
            )
        ]
    sparse = {e: n for e, n in report.delivered_by_event.items() if n <= guidance}
    if not sparse:
        return []
    listed = ", ".join(f"{event} {count}" for event, count in sparse.items())
    return [
        Finding(
            Severity.INFO,
            "sparse_events",
            f"Delivered in {days} days, at most {guidance} each: {listed}. A campaign "
            "optimising for one of these events has little to learn from.",
            "Optimise for an event above the guidance, or map more triggers to it.",
        )
    ]


def _coverage_findings(report: Report) -> list[Finding]:
    if not report.events:
        return []
    coverage, found = report.coverage, []
    n = report.events
    if report.kind == EventSetKind.CRM and coverage.get("tiktok_lead_id", 0) < LOW_LEAD_ID_SHARE:
        found.append(
            Finding(
                Severity.WARNING,
                "few_lead_ids",
                f"Only {_pct(coverage.get('tiktok_lead_id', 0))} of {n} events carry a TikTok "
                "lead id; TikTok matches CRM events best by lead id.",
                "Pass match_keys.tiktok_lead_id (the id TikTok Instant Forms gives the lead) "
                "with lead.submitted, or add it later: PUT /v1/leads/{lead_id}.",
            )
        )
    if max(coverage.get("email", 0), coverage.get("phone", 0)) < LOW_PII_SHARE:
        found.append(
            Finding(
                Severity.WARNING,
                "few_email_or_phone",
                f"Few events carry a hashed email ({_pct(coverage.get('email', 0))}) or phone "
                f"({_pct(coverage.get('phone', 0))}).",
                "Pass match_keys.email and match_keys.phone with lead.submitted; they are "
                "hashed (SHA-256) before they are stored or sent.",
            )
        )
    if coverage.get("ttclid", 0) < LOW_TTCLID_SHARE:
        found.append(
            Finding(
                Severity.INFO,
                "few_ttclids",
                f"{_pct(coverage.get('ttclid', 0))} of {n} events carry a ttclid (TikTok's "
                "click id).",
                "Capture the ttclid URL parameter on the landing page and pass it as "
                "match_keys.ttclid.",
            )
        )
    if report.kind == EventSetKind.WEB:
        both = min(coverage.get("ip", 0), coverage.get("user_agent", 0))
        if both < LOW_PII_SHARE:
            found.append(
                Finding(
                    Severity.INFO,
                    "few_ip_user_agent",
                    f"Only {_pct(both)} of {n} Pixel events carry both ip and user_agent.",
                    "Pass match_keys.ip and match_keys.user_agent from the form submission.",
                )
            )
    return found


def _error_findings(report: Report) -> list[Finding]:
    name, days = report.event_set, report.window_days
    found: list[Finding] = []
    by_outcome: dict[str, int] = defaultdict(int)
    for item in report.error_codes:
        by_outcome[item.outcome] += item.attempts
        if item.outcome == Outcome.AUTH.value or (item.code in AUTH_CODES):
            found.append(
                Finding(
                    Severity.CRITICAL,
                    "auth_error",
                    f"TikTok refused the token or permission {item.attempts} time(s) in {days} "
                    f"days (code {item.code}, HTTP {item.http_status}): {item.example}",
                    f"Check the token and that it may write to this event set; replace it with "
                    f"`postback event-set set-token {name}`.",
                )
            )
        elif item.outcome == Outcome.INVALID.value:
            found.append(
                Finding(
                    Severity.WARNING,
                    "events_rejected",
                    f"TikTok rejected {item.attempts} event(s) in {days} days with code "
                    f"{item.code}: {item.example}",
                    "Check the mapping's properties (`postback mapping list "
                    f"{name}`) and an affected lead's `postback history`; after fixing, "
                    f"`postback replay --event-set {name} --code {item.code}`.",
                )
            )
    if by_outcome.get(Outcome.THROTTLED.value):
        found.append(
            Finding(
                Severity.INFO,
                "throttled",
                f"TikTok throttled {by_outcome[Outcome.THROTTLED.value]} attempt(s) in {days} "
                "days; they were retried later.",
                "Nothing to do if it stays occasional; otherwise spread the traffic or ask "
                "TikTok about the limits of this token.",
            )
        )
    if by_outcome.get(Outcome.TRANSIENT.value):
        found.append(
            Finding(
                Severity.INFO,
                "transient_errors",
                f"{by_outcome[Outcome.TRANSIENT.value]} attempt(s) in {days} days got no usable "
                "answer (HTTP 5xx, timeouts, connection errors); they are retried.",
                "Nothing to do if they clear; if they persist, check the network path to "
                "TikTok (TIKTOK_API_BASE_URL) and TikTok's status.",
            )
        )
    finished = sum(
        report.statuses.get(s, 0)
        for s in (PostbackStatus.DELIVERED, PostbackStatus.FAILED, PostbackStatus.DEAD)
    )
    lost = report.statuses.get(PostbackStatus.FAILED, 0) + report.statuses.get(
        PostbackStatus.DEAD, 0
    )
    if finished and lost / finished > HIGH_FAILURE_SHARE:
        found.append(
            Finding(
                Severity.WARNING,
                "high_failure_rate",
                f"{_pct(lost / finished)} of the events finished in {days} days failed or died "
                f"({lost} of {finished}).",
                f"See the reasons with `postback history LEAD` or the codes above; replay after "
                f"fixing: `postback replay --event-set {name} --status failed --status dead`.",
            )
        )
    dead = report.statuses.get(PostbackStatus.DEAD, 0)
    if dead:
        found.append(
            Finding(
                Severity.WARNING,
                "dead_events",
                f"{dead} event(s) exhausted the retry ladder in {days} days.",
                f"When TikTok answers again, `postback replay --event-set {name} --status dead` "
                "(the same event_id, so TikTok drops copies it already has).",
            )
        )
    expired = report.statuses.get(PostbackStatus.EXPIRED, 0)
    if expired:
        found.append(
            Finding(
                Severity.INFO,
                "expired_events",
                f"{expired} event(s) in {days} days were older than MAX_EVENT_AGE_DAYS when "
                "their turn came, and were not sent.",
                "Send triggers when the change happens; check for backlogs (workers down, "
                "the event set paused).",
            )
        )
    return found


def _waiting_findings(report: Report, stale_trigger_seconds: int) -> list[Finding]:
    found: list[Finding] = []
    age = report.oldest_pending_age_seconds
    held = report.status == EventSetStatus.PAUSED
    if age is not None and age > PENDING_WARN_SECONDS:
        waiting = sum(report.open_events.values())
        add_fix = (
            "Resume or fix the event set first (see above)."
            if held
            else "Check that workers and exactly one beat run (`docker compose ps`, GET /readyz, "
            "the postback_outbox_due metric)."
        )
        found.append(
            Finding(
                Severity.CRITICAL if age > PENDING_CRITICAL_SECONDS else Severity.WARNING,
                "old_pending_events",
                f"{waiting} event(s) are not sent yet; the oldest has waited {_duration(age)}.",
                add_fix,
            )
        )
    trigger_age = report.oldest_trigger_age_seconds
    received = report.triggers_waiting.get(TriggerStatus.RECEIVED, 0)
    if received and trigger_age is not None and trigger_age > stale_trigger_seconds:
        found.append(
            Finding(
                Severity.WARNING,
                "triggers_not_processed",
                f"{received} trigger(s) have not been processed; the oldest arrived "
                f"{_duration(trigger_age)} ago.",
                "Check that a worker runs and reaches the broker (GET /readyz), and that beat "
                "runs (its sweeper processes triggers the broker lost).",
            )
        )
    waiting_for_lead = report.triggers_waiting.get(TriggerStatus.WAITING_FOR_LEAD, 0)
    if waiting_for_lead:
        found.append(
            Finding(
                Severity.INFO,
                "triggers_waiting_for_lead",
                f"{waiting_for_lead} trigger(s) wait for a lead that was never submitted with "
                "match keys (they fail after LEAD_WAIT_SECONDS).",
                "Send lead.submitted with match keys before later stages, or add the keys: "
                "PUT /v1/leads/{lead_id}.",
            )
        )
    return found


# --- text rendering (CLI) ----------------------------------------------------------------

KEY_LABELS = {
    "tiktok_lead_id": "TikTok lead id",
    "ttclid": "ttclid",
    "email": "email",
    "phone": "phone",
    "external_id": "external id",
    "ip": "ip",
    "user_agent": "user agent",
    "ttp": "ttp",
}


def render_text(report: Report) -> list[str]:
    days = report.window_days
    lines = [
        f"{report.event_set} ({report.kind} {report.source_id}, {report.status}): last {days} "
        f"days, since {report.since:%Y-%m-%d %H:%M} UTC",
        f"  delivered: {report.delivered} (TikTok's guidance: more than "
        f"{report.guidance_signals} in 14 days)"
        + (
            "  by event: " + ", ".join(f"{e} {n}" for e, n in report.delivered_by_event.items())
            if report.delivered_by_event
            else ""
        ),
        "  outbox rows created: "
        + (", ".join(f"{s} {n}" for s, n in sorted(report.statuses.items())) or "none"),
    ]
    if report.events:
        lines.append(
            f"  match keys in {report.events} event(s): "
            + ", ".join(f"{KEY_LABELS[k]} {_pct(v)}" for k, v in report.coverage.items())
        )
    else:
        lines.append("  match keys: no event built in the window")
    if report.error_codes:
        lines.append(
            "  TikTok answers other than delivered: "
            + "; ".join(
                f"code {e.code if e.code is not None else '-'} "
                f"(HTTP {e.http_status if e.http_status is not None else '-'}, {e.outcome}) "
                f"x{e.attempts}"
                for e in report.error_codes
            )
        )
    if report.unmapped:
        lines.append(
            "  unmapped triggers: "
            + ", ".join(f"{u.trigger_type} x{u.triggers}" for u in report.unmapped)
        )
    if report.oldest_pending_age_seconds is not None:
        lines.append(
            "  waiting: "
            + ", ".join(f"{s} {n}" for s, n in sorted(report.open_events.items()))
            + f"; oldest {_duration(report.oldest_pending_age_seconds)}"
        )
    else:
        lines.append("  waiting: nothing")
    if not report.findings:
        lines.append("  findings: none; nothing to fix")
        return lines
    lines.append("  findings:")
    for finding in report.findings:
        lines.append(f"    {finding.severity.value.upper():<8} {finding.title}")
        lines.append(f"    {'':<8} fix: {finding.fix}")
    return lines
