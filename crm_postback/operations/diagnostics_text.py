"""Diagnostics reports as text: the lines `postback diagnose` prints, and its `--json` document."""

from __future__ import annotations

import json

from crm_postback.operations.diagnostics_report import Report, format_duration, format_share

KEY_LABELS = {
    "tiktok_lead_id": "TikTok lead id",
    "ttclid": "ttclid",
    "email": "email",
    "phone": "phone",
    "external_id": "external id",
    "ip": "ip",
    "user_agent": "user agent",
    "ttp": "ttp",
    "first_name": "first name",
    "last_name": "last name",
    "zip_code": "zip code",
    "city": "city",
    "state": "state",
    "country": "country",
    "locale": "locale",
    "page_url": "page url",
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
            + ", ".join(f"{KEY_LABELS[k]} {format_share(v)}" for k, v in report.coverage.items())
        )
    else:
        lines.append("  match keys: no event built in the window")
    lines.extend(_match_quality_lines(report))
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
            + f"; oldest {format_duration(report.oldest_pending_age_seconds)}"
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


def _match_quality_lines(report: Report) -> list[str]:
    quality = report.match_quality
    if quality is None:
        return []
    since = f"since {quality.since:%Y-%m-%d} UTC"
    if quality.score is None:
        return [f"  match quality: no events {since}; nothing to score"]
    lines = [
        f"  match quality: {quality.score:.1f}/10 over {quality.events} event(s) {since}"
        + (f" ({quality.no_match_key} not sent: no match key)" if quality.no_match_key else "")
    ]
    lines.append(
        "    weighted: "
        + ", ".join(
            f"{c.label} {format_share(c.share)} (x{c.weight:g})" for c in quality.components
        )
    )
    lines.append(
        "    keys: "
        + ", ".join(f"{KEY_LABELS[k]} {format_share(v)}" for k, v in quality.coverage.items())
    )
    if len(quality.by_event) > 1:
        lines.append(
            "    by event: "
            + ", ".join(f"{e.event_name} {e.events} ({e.score:.1f})" for e in quality.by_event)
        )
    if quality.dropped:
        lines.append(
            "    dropped at the door: "
            + ", ".join(f"{kind} {count}" for kind, count in quality.dropped.items())
        )
    if quality.unrecorded:
        lines.append(f"    {quality.unrecorded} older event(s) without recorded keys left out")
    if quality.suggestion is not None:
        lines.append(f"    to raise it most: {quality.suggestion.text}")
    return lines


def render_json(reports: Report | list[Report]) -> str:
    """One report as one JSON object, several as an array of them."""
    if isinstance(reports, Report):
        return json.dumps(reports.as_dict(), indent=2)
    return json.dumps([report.as_dict() for report in reports], indent=2)
