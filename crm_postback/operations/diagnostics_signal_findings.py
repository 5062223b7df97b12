"""Findings about the signals themselves: will TikTok's optimiser get enough, and can it match them?

The event set's configuration, delivered volume against TikTok's guidance, match-key coverage,
the match-quality score with its one suggested change, keys dropped at the door, and triggers
no mapping matched. Each function reads one section's result (no database), with
the event set's name and the window's length for the wording.
"""

from __future__ import annotations

from crm_postback.operations.diagnostics_report import (
    DeliveredVolume,
    EnabledMappings,
    EventSetState,
    Finding,
    MatchKeyCoverage,
    MissingAttributes,
    Severity,
    UnmappedTriggers,
    format_share,
)
from crm_postback.operations.match_quality import MatchQuality
from models import EventSetKind, EventSetStatus

# TikTok: "send more than 50 signals within 14 days" (reference §6.3, TT-HELP-SIGNAL).
GUIDANCE_SIGNALS = 50
LOW_LEAD_ID_SHARE = 0.5  # TikTok: prioritise data with lead_ID for a higher match rate
LOW_PII_SHARE = 0.5
LOW_TTCLID_SHARE = 0.3
LOW_MATCH_QUALITY = 5.0  # of 10: below it, the suggestion is a warning


def event_set_findings(state: EventSetState, mappings: EnabledMappings) -> list[Finding]:
    """Configuration that stops or spoils every signal: paused, a test code, no mapping."""
    name = state.name
    found: list[Finding] = []
    if state.status == EventSetStatus.PAUSED:
        found.append(
            Finding(
                Severity.CRITICAL,
                "event_set_paused",
                f"The event set is paused, so nothing is sent: {state.paused_reason or '-'}.",
                f"If TikTok refused the token, set a valid one: `postback event-set set-token "
                f"{name}`; if an operator paused it, `postback event-set resume {name}`. Held "
                "events are sent then.",
            )
        )
    if state.test_event_code:
        found.append(
            Finding(
                Severity.WARNING,
                "test_event_code_set",
                f"A test event code ({state.test_event_code}) is set: TikTok shows these events "
                "under Test Events only; they do not feed optimisation.",
                "Remove the test event code once testing is done.",
            )
        )
    if mappings.count == 0:
        found.append(
            Finding(
                Severity.CRITICAL,
                "no_mappings",
                "No enabled mapping: every trigger for this event set ends unmapped.",
                f"Map the lifecycle stages: `postback mapping set --event-set {name} "
                "--trigger lead.submitted --event Lead` (and lead.sold, offer.conversion, ...).",
            )
        )
    return found


def volume_findings(name: str, days: int, volume: DeliveredVolume) -> list[Finding]:
    guidance = GUIDANCE_SIGNALS
    fix = (
        "Send every funnel stage, not only form fills: map lead.sold, offer.click and "
        f"offer.conversion too (`postback mapping set --event-set {name} ...`), and check that "
        "the routing system sends a trigger for every lead."
    )
    delivered = volume.total
    if delivered == 0:
        return [
            Finding(
                Severity.WARNING,
                "no_signals",
                f"No event was delivered in the last {days} days; TikTok recommends more than "
                f"{guidance} signals in 14 days for stable optimisation.",
                fix,
            )
        ]
    if delivered <= guidance:
        return [
            Finding(
                Severity.WARNING,
                "volume_below_guidance",
                f"{delivered} event(s) delivered in the last {days} days; TikTok "
                f"recommends more than {guidance} signals in 14 days for stable optimisation.",
                fix,
            )
        ]
    sparse = {e: n for e, n in volume.by_event.items() if n <= guidance}
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


def coverage_findings(kind: str, coverage: MatchKeyCoverage) -> list[Finding]:
    n = coverage.events
    if not n:
        return []
    share = coverage.share
    found: list[Finding] = []
    if kind == EventSetKind.CRM and share("tiktok_lead_id") < LOW_LEAD_ID_SHARE:
        found.append(
            Finding(
                Severity.WARNING,
                "few_lead_ids",
                f"Only {format_share(share('tiktok_lead_id'))} of {n} events carry a TikTok "
                "lead id; TikTok matches CRM events best by lead id.",
                "Pass match_keys.tiktok_lead_id (the id TikTok Instant Forms gives the lead) "
                "with lead.submitted, or add it later: PUT /v1/leads/{lead_id}.",
            )
        )
    if max(share("email"), share("phone")) < LOW_PII_SHARE:
        found.append(
            Finding(
                Severity.WARNING,
                "few_email_or_phone",
                f"Few events carry a hashed email ({format_share(share('email'))}) or phone "
                f"({format_share(share('phone'))}).",
                "Pass match_keys.email and match_keys.phone with lead.submitted; they are "
                "hashed (SHA-256) before they are stored or sent.",
            )
        )
    if share("ttclid") < LOW_TTCLID_SHARE:
        found.append(
            Finding(
                Severity.INFO,
                "few_ttclids",
                f"{format_share(share('ttclid'))} of {n} events carry a ttclid (TikTok's "
                "click id).",
                "Capture the ttclid URL parameter on the landing page and pass it as "
                "match_keys.ttclid.",
            )
        )
    if kind == EventSetKind.WEB:
        both = min(share("ip"), share("user_agent"))
        if both < LOW_PII_SHARE:
            found.append(
                Finding(
                    Severity.INFO,
                    "few_ip_user_agent",
                    f"Only {format_share(both)} of {n} Pixel events carry both ip and user_agent.",
                    "Pass match_keys.ip and match_keys.user_agent from the form submission.",
                )
            )
    return found


def match_quality_findings(name: str, quality: MatchQuality) -> list[Finding]:
    """The score and the one change that raises it most; the keys dropped at the door."""
    found: list[Finding] = []
    days = quality.window_days
    if quality.score is not None and quality.suggestion is not None:
        text = quality.suggestion.text
        found.append(
            Finding(
                Severity.WARNING if quality.score < LOW_MATCH_QUALITY else Severity.INFO,
                "match_quality",
                f"Match quality {quality.score:.1f}/10 over {quality.events} event(s) in "
                f"{days} days.",
                text[0].upper() + text[1:] + ".",
            )
        )
    if quality.dropped:
        total = sum(quality.dropped.values())
        listed = ", ".join(f"{kind} {count}" for kind, count in quality.dropped.items())
        found.append(
            Finding(
                Severity.INFO,
                "match_keys_dropped",
                f"{total} match key(s) in {days} days did not normalise and were dropped at "
                f"the door (the triggers were accepted without them): {listed}.",
                "Fix them where the routing system reads them (each intake answer's warnings "
                "name the field, e.g. match_keys.phone: not a possible number); a strict API "
                "key refuses such triggers instead.",
            )
        )
    return found


def unmapped_findings(name: str, days: int, unmapped: UnmappedTriggers) -> list[Finding]:
    found: list[Finding] = []
    for item in unmapped.types:
        if item.has_mapping:
            found.append(
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
            found.append(
                Finding(
                    Severity.WARNING,
                    "mapping_missing",
                    f"{item.triggers} '{item.trigger_type}' trigger(s) in {days} days matched no "
                    "mapping: a mapping is probably missing.",
                    f"`postback mapping set --event-set {name} --trigger {item.trigger_type} "
                    "--event <TikTok event>`, or stop sending this trigger type here.",
                )
            )
    return found


def missing_attribute_findings(name: str, days: int, missing: MissingAttributes) -> list[Finding]:
    """Properties a mapping fills from an attribute its triggers did not carry: the events
    went without them (a `value_from` naming an attribute the routing system never sends)."""
    return [
        Finding(
            Severity.WARNING,
            "property_attribute_missing",
            f"mapping {item.mapping_id} ({item.event_name}): property {item.property} read "
            f"attribute {item.attribute!r}, which was missing in {item.missing} of "
            f"{item.sampled} recent trigger(s) in {days} days; those events went without "
            f"{item.property}.",
            f"Send attributes.{item.attribute} with these triggers, or read another attribute: "
            f"`postback mapping set --event-set {name} --id {item.mapping_id} ...` "
            "(the admin's Preview page shows the event a trigger would give).",
        )
        for item in missing.counts
    ]
