"""Findings about delivery: are the signals reaching TikTok, and is anything held up?

TikTok's error codes, events that ended failed, dead or expired, events not sent on purpose
(no match key, consent withdrawn: not failures), and what is still waiting.
Each function reads one section's result (no database), with the event set's name and the
window's length for the wording.
"""

from __future__ import annotations

from crm_postback.operations.diagnostics_report import (
    EventSetState,
    Finding,
    OpenEvents,
    OutboxStatuses,
    ReusedEventIds,
    Severity,
    TikTokErrors,
    WaitingTriggers,
    format_duration,
    format_share,
)
from crm_postback.operations.match_quality import KEY_NAMES, MatchQuality
from crm_postback.tiktok.match_key_kinds import IDENTIFYING
from crm_postback.tiktok.response_outcomes import AUTH_CODES, Outcome
from models import EventSetStatus, PostbackStatus, TriggerStatus

HIGH_FAILURE_SHARE = 0.05
PENDING_WARN_SECONDS = 3600  # an event waiting an hour: something holds it
PENDING_CRITICAL_SECONDS = 24 * 3600  # half of TikTok's 48 h deduplication window
# One caller event_id taken by this many triggers: not a re-send, an id that never changes.
CONSTANT_EVENT_ID_TRIGGERS = 3


def tiktok_error_findings(name: str, days: int, errors: TikTokErrors) -> list[Finding]:
    """One finding per refused token or rejected code, then throttling and transient errors."""
    found: list[Finding] = []
    for item in errors.codes:
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
    for item in errors.codes:
        if item.outcome == Outcome.NOT_TIKTOK.value:
            found.append(
                Finding(
                    Severity.CRITICAL,
                    "answers_not_from_tiktok",
                    f"{item.attempts} attempt(s) in {days} days were answered HTTP "
                    f"{item.http_status} without TikTok's response envelope, so not by TikTok: "
                    f"{item.example}",
                    "Check TIKTOK_API_BASE_URL and any proxy between the workers and TikTok; "
                    f"then `postback event-set resume {name}` (the events wait on the retry "
                    f"ladder; replay dead ones: `postback replay --event-set {name} --status "
                    "dead`).",
                )
            )
    throttled = errors.attempts(Outcome.THROTTLED.value)
    if throttled:
        found.append(
            Finding(
                Severity.INFO,
                "throttled",
                f"TikTok throttled {throttled} attempt(s) in {days} days; they were retried later.",
                "Nothing to do if it stays occasional; otherwise spread the traffic or ask "
                "TikTok about the limits of this token.",
            )
        )
    transient = errors.attempts(Outcome.TRANSIENT.value)
    if transient:
        found.append(
            Finding(
                Severity.INFO,
                "transient_errors",
                f"{transient} attempt(s) in {days} days got no usable answer (HTTP 5xx, "
                "timeouts, connection errors); they are retried.",
                "Nothing to do if they clear; if they persist, check the network path to "
                "TikTok (TIKTOK_API_BASE_URL) and TikTok's status.",
            )
        )
    return found


def outbox_findings(
    name: str, days: int, statuses: OutboxStatuses, age_limit_days: float
) -> list[Finding]:
    """Events that ended without reaching TikTok: the failure rate, dead and expired ones.
    `age_limit_days`: the event set's effective event age limit (its own, else its source's)."""
    found: list[Finding] = []
    dead = statuses.count(PostbackStatus.DEAD)
    lost = statuses.count(PostbackStatus.FAILED) + dead
    finished = statuses.count(PostbackStatus.DELIVERED) + lost
    if finished and lost / finished > HIGH_FAILURE_SHARE:
        found.append(
            Finding(
                Severity.WARNING,
                "high_failure_rate",
                f"{format_share(lost / finished)} of the events finished in {days} days failed "
                f"or died ({lost} of {finished}).",
                f"See the reasons with `postback history LEAD` or the codes above; replay after "
                f"fixing: `postback replay --event-set {name} --status failed --status dead`.",
            )
        )
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
    expired = statuses.count(PostbackStatus.EXPIRED)
    if expired:
        found.append(
            Finding(
                Severity.INFO,
                "expired_events",
                f"{expired} event(s) in {days} days were older than this event set's age "
                f"limit ({age_limit_days:g} days) when their turn came, and were not sent.",
                "Send triggers when the change happens; check for backlogs (workers down, "
                "the event set paused). If older events are still worth sending, raise the "
                f"limit (`postback event-set edit {name} --max-event-age-days N`); an "
                f"operator's replay sends expired ones anyway (`postback replay --event-set "
                f"{name} --status expired`).",
            )
        )
    return found


def not_sent_findings(
    name: str, days: int, statuses: OutboxStatuses, quality: MatchQuality
) -> list[Finding]:
    """Events ended without being sent on purpose: they count in no failure rate."""
    found: list[Finding] = []
    no_key = statuses.count(PostbackStatus.NO_MATCH_KEY)
    if no_key:
        identifying = [KEY_NAMES[kind] for kind in KEY_NAMES if kind & IDENTIFYING]
        dropped = {kind: count for kind, count in quality.dropped.items() if kind in identifying}
        hint = (
            " Keys that would have identified a lead were dropped at the door as invalid in "
            "the window, perhaps these events': "
            + ", ".join(f"{kind} {count}" for kind, count in dropped.items())
            + " (the intake answers' warnings name each field)."
            if dropped
            else ""
        )
        found.append(
            Finding(
                Severity.WARNING,
                "no_match_key_events",
                f"{no_key} event(s) in {days} days carried no key TikTok can match on (none "
                f"of {', '.join(identifying)}) and were not sent.",
                "Pass at least one of them with lead.submitted (match_keys.email, "
                "match_keys.phone, ...), or add them to the lead: PUT /v1/leads/{lead_id}; "
                "the lead's later events carry them, and once the keys are stored "
                f"`postback replay --event-set {name} --status no_match_key` sends these "
                f"(an event whose lead still has none stays no_match_key).{hint}",
            )
        )
    withdrawn = statuses.count(PostbackStatus.CONSENT_WITHDRAWN)
    if withdrawn:
        found.append(
            Finding(
                Severity.INFO,
                "consent_withdrawn_events",
                f"{withdrawn} event(s) in {days} days were not sent: their lead had withdrawn "
                "consent.",
                "Nothing to do: a lead's withdrawn consent stops all its later events "
                "(consent given again is a new lead id).",
            )
        )
    return found


def reused_event_id_findings(name: str, days: int, reused: ReusedEventIds) -> list[Finding]:
    """Triggers whose events were not stored because their caller event_id was taken."""
    if not reused.triggers:
        return []
    examples = ", ".join(f"{event_id!r} {count} time(s)" for event_id, count in reused.most_taken)
    title = (
        f"{reused.triggers} trigger(s) in {days} days made no new event: their caller event_id "
        f"was already used on this event set ({reused.distinct_ids} id(s); {examples})."
    )
    see = (
        "Each trigger's error names the postback holding the id; where that one never reached "
        "TikTok, `postback replay --id N` sends it."
    )
    if reused.most_taken[0][1] >= CONSTANT_EVENT_ID_TRIGGERS:
        return [
            Finding(
                Severity.WARNING,
                "event_id_reused",
                title,
                "The Pixel's event id is probably constant (or unset, like 'undefined'): "
                "send each conversion's own id, the one the Pixel sent for it, or none. " + see,
            )
        ]
    return [
        Finding(
            Severity.INFO,
            "event_id_reused",
            title,
            f"Nothing to do if these were re-sent conversions. {see}",
        )
    ]


def waiting_findings(
    state: EventSetState,
    events: OpenEvents,
    triggers: WaitingTriggers,
    stale_trigger_seconds: float,
) -> list[Finding]:
    found: list[Finding] = []
    age = events.oldest_age_seconds
    if age is not None and age > PENDING_WARN_SECONDS:
        waiting = sum(events.by_status.values())
        fix = (
            "Resume or fix the event set first (see above)."
            if state.status == EventSetStatus.PAUSED
            else "Check that workers and exactly one beat run (`docker compose ps`, GET /readyz, "
            "the postback_outbox_due metric)."
        )
        found.append(
            Finding(
                Severity.CRITICAL if age > PENDING_CRITICAL_SECONDS else Severity.WARNING,
                "old_pending_events",
                f"{waiting} event(s) are not sent yet; the oldest has waited "
                f"{format_duration(age)}.",
                fix,
            )
        )
    trigger_age = triggers.oldest_received_age_seconds
    received = triggers.by_status.get(TriggerStatus.RECEIVED, 0)
    if received and trigger_age is not None and trigger_age > stale_trigger_seconds:
        found.append(
            Finding(
                Severity.WARNING,
                "triggers_not_processed",
                f"{received} trigger(s) have not been processed; the oldest arrived "
                f"{format_duration(trigger_age)} ago.",
                "Check that a worker runs and reaches the broker (GET /readyz), and that beat "
                "runs (its sweeper processes triggers the broker lost).",
            )
        )
    waiting_for_lead = triggers.by_status.get(TriggerStatus.WAITING_FOR_LEAD, 0)
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
