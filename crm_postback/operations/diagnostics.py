"""Signal diagnostics per event set: will these signals help TikTok's optimiser?

Like TikTok's Events Manager diagnostics, but computed from our own outbox before (and while)
data leaves: match-key coverage of the events we built, delivered volume over the last 14 days
against TikTok's guidance (more than 50 signals in 14 days for stable optimisation), TikTok's
error codes, triggers no mapping matched, and what is still waiting. Each finding carries a
severity and a suggested fix.

`diagnose(session, event_set_id)` returns a `Report` (dataclasses, `as_dict()` for JSON); the
CLI (`postback diagnose`) renders it with `diagnostics_text`. Read-only. One query per section
lives in `diagnostics_queries`, what each section means in `diagnostics_signal_findings` and
`diagnostics_delivery_findings`, the types in `diagnostics_report`; this module composes them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_postback.configuration.event_set_service import event_age_limit
from crm_postback.core.settings import get_settings
from crm_postback.operations.diagnostics_delivery_findings import (
    not_sent_findings,
    outbox_findings,
    reused_event_id_findings,
    tiktok_error_findings,
    waiting_findings,
)
from crm_postback.operations.diagnostics_queries import (
    delivered_volume,
    enabled_mappings,
    event_set_state,
    match_key_coverage,
    missing_property_attributes,
    open_events,
    outbox_statuses,
    reused_event_ids,
    tiktok_errors,
    unmapped_triggers,
    waiting_triggers,
)
from crm_postback.operations.diagnostics_report import Report
from crm_postback.operations.diagnostics_signal_findings import (
    GUIDANCE_SIGNALS,
    coverage_findings,
    event_set_findings,
    match_quality_findings,
    missing_attribute_findings,
    unmapped_findings,
    volume_findings,
)
from crm_postback.operations.match_quality import MatchQuality, match_quality_of
from models import EventSet, utcnow

WINDOW_DAYS = 14
TRIGGER_STUCK_SECONDS = 300


def diagnose(
    session: Session,
    event_set_id: int,
    *,
    now: datetime | None = None,
    window_days: int = WINDOW_DAYS,
    stale_trigger_seconds: int = TRIGGER_STUCK_SECONDS,
    quality: MatchQuality | None = None,
) -> Report:
    """The diagnostics of one event set. Raises InputRejected for an unknown id.
    `quality`: its match quality when the caller computed it already (for every set at once)."""
    state = event_set_state(session, event_set_id)
    now = now or utcnow()
    since = now - timedelta(days=window_days)
    if quality is None:
        quality = match_quality_of(session, [state.id], now=now, window_days=window_days)[state.id]

    event_set = session.get(EventSet, state.id)
    assert event_set is not None  # event_set_state found it
    age_limit = event_age_limit(event_set, get_settings())
    statuses = outbox_statuses(session, state.id, since)
    coverage = match_key_coverage(session, state.id, state.kind, since)
    volume = delivered_volume(session, state.id, since)
    errors = tiktok_errors(session, state.id, since)
    mappings = enabled_mappings(session, state.id)
    missing = missing_property_attributes(session, state.id, since)
    unmapped = unmapped_triggers(session, state.id, since, mappings.trigger_types)
    events = open_events(session, state.id, now)
    triggers = waiting_triggers(session, state.id, now)
    reused = reused_event_ids(session, state.id, since)

    findings = [
        *event_set_findings(state, mappings),
        *volume_findings(state.name, window_days, volume),
        *coverage_findings(state.kind, coverage),
        *missing_attribute_findings(state.name, window_days, missing),
        *tiktok_error_findings(state.name, window_days, errors),
        *match_quality_findings(state.name, quality),
        *outbox_findings(state.name, window_days, statuses, age_limit),
        *not_sent_findings(state.name, window_days, statuses, quality),
        *reused_event_id_findings(state.name, window_days, reused),
        *unmapped_findings(state.name, window_days, unmapped),
        *waiting_findings(state, events, triggers, stale_trigger_seconds),
    ]
    return Report(
        event_set_id=state.id,
        event_set=state.name,
        kind=state.kind,
        source_id=state.source_id,
        status=state.status,
        paused_reason=state.paused_reason,
        test_event_code=state.test_event_code,
        generated_at=now,
        window_days=window_days,
        since=since,
        events=coverage.events,
        coverage=coverage.shares,
        delivered=volume.total,
        delivered_by_event=volume.by_event,
        guidance_signals=GUIDANCE_SIGNALS,
        statuses=statuses.by_status,
        error_codes=list(errors.codes),
        unmapped=list(unmapped.types),
        open_events=events.by_status,
        oldest_pending_at=events.oldest_at,
        oldest_pending_age_seconds=events.oldest_age_seconds,
        triggers_waiting=triggers.by_status,
        oldest_trigger_age_seconds=triggers.oldest_received_age_seconds,
        enabled_mappings=mappings.count,
        findings=sorted(findings, key=lambda f: f.severity.rank),  # stable: sections' order
        missing_attributes=list(missing.counts),
        match_quality=quality,
    )


def diagnose_all(
    session: Session,
    *,
    now: datetime | None = None,
    window_days: int = WINDOW_DAYS,
    stale_trigger_seconds: int = TRIGGER_STUCK_SECONDS,
) -> list[Report]:
    """The diagnostics of every event set, in id order."""
    now = now or utcnow()
    ids = session.scalars(select(EventSet.id).order_by(EventSet.id)).all()
    qualities = match_quality_of(session, ids, now=now, window_days=window_days)
    return [
        diagnose(
            session,
            set_id,
            now=now,
            window_days=window_days,
            stale_trigger_seconds=stale_trigger_seconds,
            quality=qualities[set_id],
        )
        for set_id in ids
    ]
