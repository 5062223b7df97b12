"""Signal diagnostics: coverage, volume against TikTok's guidance, codes, unmapped, waiting."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from crm_postback.api import enqueue_trigger
from crm_postback.cli import app as cli_app
from crm_postback.commands.erase_lead import EraseLead, erase_lead
from crm_postback.commands.unit_of_work import Actor
from crm_postback.core.errors import InputRejected
from crm_postback.operations import diagnostics_queries
from crm_postback.operations.diagnostics import diagnose, diagnose_all
from crm_postback.operations.diagnostics_delivery_findings import outbox_findings
from crm_postback.operations.diagnostics_queries import (
    delivered_volume,
    match_key_coverage,
    open_events,
    tiktok_errors,
    unmapped_triggers,
    waiting_triggers,
)
from crm_postback.operations.diagnostics_report import (
    ErrorCode,
    Finding,
    OutboxStatuses,
    Report,
    Severity,
)
from crm_postback.operations.diagnostics_signal_findings import GUIDANCE_SIGNALS
from crm_postback.operations.diagnostics_text import render_json, render_text
from crm_postback.simulator import SimulatorControl
from models import DEFAULT_WORKSPACE_ID, DeliveryAttempt, EventSet, Postback, Role, Trigger
from models.db import session_scope

_ids = count(1)


def trigger(kind: str, lead: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "lead_id": lead,
        "event_set": "acme",
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=30)).isoformat(),
        **extra,
    }


def codes(report: Report) -> dict[str, Severity]:
    return {f.code: f.severity for f in report.findings}


def report_for(name: str = "acme", **options: Any) -> Report:
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        event_set = session.scalars(select(EventSet).where(EventSet.name == name)).one()
        return diagnose(session, event_set.id, **options)


def test_a_real_lifecycle(
    sqlite_db: str, simulator: SimulatorControl, eager: None, make_event_set: Callable[..., int]
) -> None:
    make_event_set()
    full = {"email": "a@example.com", "phone": "+12133734253", "ttclid": "E.C.P.1"}
    enqueue_trigger(trigger("lead.submitted", "L-1", match_keys={**full, "tiktok_lead_id": "73"}))
    enqueue_trigger(trigger("lead.submitted", "L-2", match_keys={"email": "b@example.com"}))
    enqueue_trigger(trigger("lead.submitted", "L-3", match_keys={"ttclid": "E.C.P.3"}))
    enqueue_trigger(trigger("lead.sold", "L-2", attributes={"value": 5}))
    enqueue_trigger(trigger("buyer.accepted", "L-1"))
    enqueue_trigger(trigger("buyer.accepted", "L-2"))

    report = report_for()
    assert report.events == 4 and report.delivered == 4
    assert report.delivered_by_event == {"Lead": 3, "lead_sold": 1}
    assert report.coverage["tiktok_lead_id"] == 0.25
    assert report.coverage["email"] == 0.75
    assert report.coverage["phone"] == 0.25
    assert report.coverage["ttclid"] == 0.5
    assert report.statuses == {"delivered": 4, "unmapped": 2}
    [unmapped] = report.unmapped
    assert (unmapped.trigger_type, unmapped.triggers, unmapped.has_mapping) == (
        "buyer.accepted",
        2,
        False,
    )
    assert report.error_codes == [] and report.open_events == {}
    found = codes(report)
    assert found == {
        "volume_below_guidance": Severity.WARNING,
        "few_lead_ids": Severity.WARNING,
        "mapping_missing": Severity.WARNING,
        "match_quality": Severity.WARNING,
    }
    # the worker's key masks: lead id + ttclid + email + phone 8, email 2, ttclid 4, email 2
    assert report.match_quality is not None and report.match_quality.score == 4.0
    assert report.match_quality.suggestion is not None
    assert report.match_quality.suggestion.component == "lead_or_click"
    missing = next(f for f in report.findings if f.code == "mapping_missing")
    assert "--trigger buyer.accepted" in missing.fix
    volume = next(f for f in report.findings if f.code == "volume_below_guidance")
    assert "4 event(s)" in volume.title and "more than 50" in volume.title
    json.dumps(report.as_dict())  # the admin page / --json can serialise it


# --- synthetic outboxes -----------------------------------------------------------------


@pytest.fixture
def acme(sqlite_db: str, make_event_set: Callable[..., int]) -> int:
    return make_event_set()


def add_rows(
    set_id: int,
    n: int,
    status: str,
    *,
    event_name: str | None = "Lead",
    payload: dict[str, Any] | None = None,
    age: timedelta = timedelta(hours=1),
    trigger_type: str = "lead.submitted",
    attempt: tuple[str, int | None, int | None, str] | None = None,
    message: str | None = None,
) -> None:
    """n outbox rows (each with its trigger), optionally one attempt each:
    (outcome, http_status, code, message)."""
    created = datetime.now(UTC) - age
    if payload is None and status not in ("unmapped",):
        payload = {"event": event_name, "user": {"email": ["e" * 64]}}
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        for _ in range(n):
            number = next(_ids)
            row = Trigger(
                event_set_id=set_id,
                lead_ref=f"L-{number}",
                trigger_type=trigger_type,
                occurred_at=created,
                attributes={},
                idempotency_key=f"k-{number}",
                status="unmapped" if status == "unmapped" else "resolved",
                received_at=created,
            )
            session.add(row)
            session.flush()
            postback = Postback(
                trigger_id=row.id,
                event_set_id=set_id,
                lead_ref=row.lead_ref,
                event_name=None if status == "unmapped" else event_name,
                event_id=None if status == "unmapped" else f"{number:040x}",
                status=status,
                payload=payload,
                created_at=created,
                updated_at=created,
                delivered_at=created if status == "delivered" else None,
                next_attempt_at=created if status in ("pending", "retrying") else None,
                last_message=message,
            )
            session.add(postback)
            session.flush()
            if attempt is not None:
                outcome, http_status, code, text = attempt
                session.add(
                    DeliveryAttempt(
                        postback_id=postback.id,
                        attempted_at=created,
                        outcome=outcome,
                        http_status=http_status,
                        code=code,
                        message=text,
                        request_id="r",
                        batch_size=1,
                    )
                )
        session.commit()


FULL_EVENT = {
    "event": "Lead",
    "user": {"email": ["e" * 64], "phone": ["f" * 64], "ttclid": "E.C.P.x"},
    "lead": {"lead_id": "73", "lead_event_source": "x"},
}


def test_healthy_volume_and_keys_have_no_findings(acme: int) -> None:
    add_rows(acme, GUIDANCE_SIGNALS + 1, "delivered", payload=FULL_EVENT)
    report = report_for()
    assert report.delivered == GUIDANCE_SIGNALS + 1
    assert report.coverage == {
        "tiktok_lead_id": 1.0,
        "ttclid": 1.0,
        "email": 1.0,
        "phone": 1.0,
        "external_id": 0.0,
    }
    assert report.findings == [] and report.worst is None


def test_exactly_fifty_is_not_more_than_fifty(acme: int) -> None:
    add_rows(acme, GUIDANCE_SIGNALS, "delivered", payload=FULL_EVENT)
    assert "volume_below_guidance" in codes(report_for())


def test_old_deliveries_do_not_count_towards_the_window(acme: int) -> None:
    add_rows(acme, 60, "delivered", payload=FULL_EVENT, age=timedelta(days=15))
    report = report_for()
    assert report.delivered == 0 and codes(report)["no_signals"] == Severity.WARNING
    assert report.events == 0  # coverage only over the window, too


def test_sparse_event_names_are_an_info(acme: int) -> None:
    add_rows(acme, 60, "delivered", payload=FULL_EVENT)
    add_rows(acme, 3, "delivered", payload=FULL_EVENT, event_name="lead_sold")
    found = next(f for f in report_for().findings if f.code == "sparse_events")
    assert found.severity == Severity.INFO and "lead_sold 3" in found.title


def test_error_codes_dead_expired_and_failure_rate(acme: int) -> None:
    add_rows(acme, 60, "delivered", payload=FULL_EVENT)
    add_rows(
        acme,
        4,
        "failed",
        payload=FULL_EVENT,
        attempt=("invalid", 200, 40002, "currency: invalid"),
    )
    add_rows(acme, 2, "dead", payload=FULL_EVENT, attempt=("transient", 503, None, "HTTP 503"))
    add_rows(acme, 1, "expired", payload=FULL_EVENT)
    add_rows(
        acme, 1, "delivered", payload=FULL_EVENT, attempt=("throttled", 200, 40100, "slow down")
    )
    report = report_for()
    by_code = {(e.code, e.outcome): e.attempts for e in report.error_codes}
    assert by_code == {(40002, "invalid"): 4, (None, "transient"): 2, (40100, "throttled"): 1}
    found = codes(report)
    assert found["events_rejected"] == Severity.WARNING
    assert found["dead_events"] == Severity.WARNING
    assert found["high_failure_rate"] == Severity.WARNING  # 6 of 67 finished
    assert found["expired_events"] == Severity.INFO
    assert found["throttled"] == Severity.INFO and found["transient_errors"] == Severity.INFO
    rejected = next(f for f in report.findings if f.code == "events_rejected")
    assert "40002" in rejected.title and "currency: invalid" in rejected.title
    assert "--code 40002" in rejected.fix


def test_auth_errors_and_a_paused_set_are_critical(acme: int) -> None:
    add_rows(acme, 1, "pending", payload=FULL_EVENT, attempt=("auth", 200, 40001, "no access"))
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        event_set = session.get(EventSet, acme)
        assert event_set is not None
        event_set.status, event_set.paused_reason = "paused", "TikTok code 40001: no access"
        session.commit()
    report = report_for()
    assert report.worst == Severity.CRITICAL
    assert report.findings[0].severity == Severity.CRITICAL  # sorted, most severe first
    found = codes(report)
    assert found["event_set_paused"] == Severity.CRITICAL
    assert found["auth_error"] == Severity.CRITICAL
    assert "set-token acme" in next(f.fix for f in report.findings if f.code == "auth_error")


def test_answers_not_from_tiktok_are_critical_and_name_the_address(acme: int) -> None:
    message = "HTTP 404 without TikTok's response envelope (text/html, 162 bytes, not JSON)"
    add_rows(acme, 3, "retrying", payload=FULL_EVENT, attempt=("not_tiktok", 404, None, message))
    report = report_for()
    found = codes(report)
    assert found["answers_not_from_tiktok"] == Severity.CRITICAL
    assert "transient_errors" not in found and "events_rejected" not in found
    finding = next(f for f in report.findings if f.code == "answers_not_from_tiktok")
    assert "3 attempt(s)" in finding.title and "HTTP 404" in finding.title
    assert "TIKTOK_API_BASE_URL" in finding.fix and "resume acme" in finding.fix


def test_test_event_code_and_no_mappings(
    sqlite_db: str, make_event_set: Callable[..., int]
) -> None:
    make_event_set(mappings=(), test_event_code="TEST123")
    found = codes(report_for())
    assert found["test_event_code_set"] == Severity.WARNING
    assert found["no_mappings"] == Severity.CRITICAL


def test_conditions_that_never_match_are_an_info(acme: int) -> None:
    add_rows(
        acme,
        2,
        "unmapped",
        trigger_type="lead.sold",
        message="1 mapping(s) for 'lead.sold', none matched: value >= 50",
    )
    found = next(f for f in report_for().findings if f.code == "conditions_never_matched")
    assert found.severity == Severity.INFO and "value >= 50" in found.title


def test_waiting_events_and_triggers(acme: int) -> None:
    started = time.monotonic()
    add_rows(acme, 2, "retrying", payload=FULL_EVENT, age=timedelta(hours=2))
    report = report_for()
    elapsed = time.monotonic() - started  # a loaded machine may take long; the age must not
    assert report.open_events == {"retrying": 2}
    assert report.oldest_pending_age_seconds is not None
    assert 7200 - 1 <= report.oldest_pending_age_seconds <= 7200 + elapsed + 1
    assert codes(report)["old_pending_events"] == Severity.WARNING
    add_rows(acme, 1, "pending", payload=FULL_EVENT, age=timedelta(hours=30))
    assert codes(report_for())["old_pending_events"] == Severity.CRITICAL

    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        for status, lead in (("received", "R-1"), ("waiting_for_lead", "W-1")):
            session.add(
                Trigger(
                    event_set_id=acme,
                    lead_ref=lead,
                    trigger_type="lead.sold",
                    occurred_at=datetime.now(UTC),
                    attributes={},
                    idempotency_key=lead,
                    status=status,
                    received_at=datetime.now(UTC) - timedelta(minutes=20),
                )
            )
        session.commit()
    report = report_for()
    assert report.triggers_waiting == {"received": 1, "waiting_for_lead": 1}
    found = codes(report)
    assert found["triggers_not_processed"] == Severity.WARNING
    assert found["triggers_waiting_for_lead"] == Severity.INFO


def test_diagnose_all_reports_every_set_with_the_same_window_and_threshold(
    acme: int, make_event_set: Callable[..., int]
) -> None:
    beta = make_event_set(name="beta", source_id="7300000000000000002")
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        session.add(
            Trigger(
                event_set_id=beta,
                lead_ref="R-1",
                trigger_type="lead.sold",
                occurred_at=datetime.now(UTC),
                attributes={},
                idempotency_key="R-1",
                status="received",
                received_at=datetime.now(UTC) - timedelta(minutes=20),
            )
        )
        session.commit()
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        lenient = diagnose_all(session, window_days=30, stale_trigger_seconds=3600)
        default = diagnose_all(session)
    assert [report.event_set for report in lenient] == ["acme", "beta"]
    assert [report.window_days for report in lenient] == [30, 30]
    assert "triggers_not_processed" not in codes(lenient[1])
    assert codes(default[1])["triggers_not_processed"] == Severity.WARNING
    assert [report.window_days for report in default] == [14, 14]


def test_pixel_sets_check_ip_and_user_agent(
    sqlite_db: str, make_event_set: Callable[..., int]
) -> None:
    set_id = make_event_set(kind="web", source_id="CPIXEL123")
    add_rows(set_id, 60, "delivered", payload={"event": "Lead", "user": {"ttclid": "x"}})
    report = report_for()
    assert "tiktok_lead_id" not in report.coverage and report.coverage["ip"] == 0.0
    found = codes(report)
    assert "few_lead_ids" not in found
    assert found["few_ip_user_agent"] == Severity.INFO
    assert found["few_email_or_phone"] == Severity.WARNING


def test_unknown_event_set_is_refused(sqlite_db: str) -> None:
    with (
        session_scope(workspace=DEFAULT_WORKSPACE_ID) as session,
        pytest.raises(InputRejected, match="no event set"),
    ):
        diagnose(session, 999)


# --- one section at a time ----------------------------------------------------------------


def test_match_key_coverage_counts_built_events_in_the_window(acme: int) -> None:
    add_rows(acme, 3, "delivered", payload=FULL_EVENT)
    add_rows(acme, 1, "failed", payload={"event": "Lead", "user": {"external_id": ["x" * 64]}})
    add_rows(acme, 2, "unmapped")  # no body: nothing was built
    add_rows(acme, 5, "delivered", payload={"event": "Lead"}, age=timedelta(days=3))
    since = datetime.now(UTC) - timedelta(days=2)
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        coverage = match_key_coverage(session, acme, "crm", since)
        pixel = match_key_coverage(session, acme, "web", since)
    assert coverage.events == 4
    assert coverage.shares == {
        "tiktok_lead_id": 0.75,
        "ttclid": 0.75,
        "email": 0.75,
        "phone": 0.75,
        "external_id": 0.25,
    }
    assert set(pixel.shares) == {
        "ttclid",
        "email",
        "phone",
        "external_id",
        "ip",
        "user_agent",
        "ttp",
    }
    assert pixel.share("ip") == 0.0 and pixel.share("tiktok_lead_id") == 0


def test_tiktok_errors_group_by_code_most_attempts_first(
    acme: int, make_event_set: Callable[..., int]
) -> None:
    other = make_event_set(name="beta", source_id="7300000000000000002")
    long_message = "m" * 400
    add_rows(acme, 1, "failed", payload=FULL_EVENT, attempt=("invalid", 200, 40002, "a"))
    add_rows(acme, 2, "failed", payload=FULL_EVENT, attempt=("invalid", 200, 40002, "b"))
    add_rows(
        acme, 3, "retrying", payload=FULL_EVENT, attempt=("transient", None, None, long_message)
    )
    add_rows(acme, 4, "delivered", payload=FULL_EVENT, attempt=("delivered", 200, 0, "OK"))
    add_rows(
        acme,
        5,
        "failed",
        payload=FULL_EVENT,
        attempt=("auth", 200, 40001, "old"),
        age=timedelta(days=20),
    )
    add_rows(other, 6, "failed", payload=FULL_EVENT, attempt=("auth", 200, 40001, "other set"))
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        errors = tiktok_errors(session, acme, datetime.now(UTC) - timedelta(days=14))
    assert errors.codes == (
        ErrorCode(None, "transient", None, 3, "m" * 300),
        ErrorCode(40002, "invalid", 200, 3, "b"),
    )
    assert errors.attempts("invalid") == 3 and errors.attempts("throttled") == 0


def test_delivered_volume_counts_by_delivery_time(acme: int) -> None:
    add_rows(acme, 3, "delivered", payload=FULL_EVENT)
    add_rows(acme, 1, "delivered", payload=FULL_EVENT, event_name=None)
    add_rows(acme, 2, "delivered", payload=FULL_EVENT, event_name="lead_sold")
    add_rows(acme, 7, "failed", payload=FULL_EVENT)
    add_rows(acme, 9, "delivered", payload=FULL_EVENT, age=timedelta(days=15))
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        volume = delivered_volume(session, acme, datetime.now(UTC) - timedelta(days=14))
    assert list(volume.by_event.items()) == [("Lead", 3), ("lead_sold", 2), ("?", 1)]
    assert volume.total == 6


def test_unmapped_triggers_tell_a_missing_mapping_from_failed_conditions(acme: int) -> None:
    add_rows(acme, 2, "unmapped", trigger_type="lead.sold", message="none matched: value >= 50")
    add_rows(acme, 1, "unmapped", trigger_type="buyer.accepted", message="no mapping")
    since = datetime.now(UTC) - timedelta(days=14)
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        unmapped = unmapped_triggers(session, acme, since, frozenset({"lead.sold"}))
        none_mapped = unmapped_triggers(session, acme, since, frozenset())
    assert [(u.trigger_type, u.triggers, u.has_mapping, u.example) for u in unmapped.types] == [
        ("lead.sold", 2, True, "none matched: value >= 50"),
        ("buyer.accepted", 1, False, "no mapping"),
    ]
    assert not any(u.has_mapping for u in none_mapped.types)


def test_open_events_and_waiting_triggers_age_from_now(acme: int) -> None:
    add_rows(acme, 2, "retrying", payload=FULL_EVENT, age=timedelta(hours=2))
    add_rows(acme, 1, "sending", payload=FULL_EVENT, age=timedelta(hours=5))
    add_rows(acme, 4, "delivered", payload=FULL_EVENT, age=timedelta(days=30))
    received = datetime.now(UTC) - timedelta(minutes=20)
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        for status, lead in (("received", "R-1"), ("received", "R-2"), ("waiting_for_lead", "W-1")):
            session.add(
                Trigger(
                    event_set_id=acme,
                    lead_ref=lead,
                    trigger_type="lead.sold",
                    occurred_at=received,
                    attributes={},
                    idempotency_key=lead,
                    status=status,
                    received_at=received if lead != "R-2" else received + timedelta(minutes=5),
                )
            )
        session.commit()
    now = datetime.now(UTC) + timedelta(days=1)  # any clock: ages are measured from `now`
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        events = open_events(session, acme, now)
        triggers = waiting_triggers(session, acme, now)
    assert events.by_status == {"retrying": 2, "sending": 1}
    assert events.oldest_at is not None and events.oldest_at.tzinfo is not None
    assert events.oldest_age_seconds == (now - events.oldest_at).total_seconds()
    assert 29 * 3600 - 60 < events.oldest_age_seconds < 29 * 3600 + 60
    assert triggers.by_status == {"received": 2, "waiting_for_lead": 1}
    assert triggers.oldest_received_age_seconds == (now - received).total_seconds()


def test_outbox_findings_fail_above_five_percent_only() -> None:
    def codes_of(by_status: dict[str, int]) -> set[str]:
        return {f.code for f in outbox_findings("acme", 14, OutboxStatuses(by_status), 28)}

    assert codes_of({"delivered": 95, "failed": 5}) == set()  # 5 % exactly is not over
    assert codes_of({"delivered": 94, "failed": 6}) == {"high_failure_rate"}
    assert codes_of({"delivered": 99, "dead": 1, "expired": 3}) == {"dead_events", "expired_events"}
    assert codes_of({"pending": 10, "unmapped": 4}) == set()  # nothing finished yet


def test_render_text_and_json_need_only_the_report() -> None:
    since = datetime(2026, 11, 7, 22, 53, 30, tzinfo=UTC)
    report = Report(
        event_set_id=7,
        event_set="acme",
        kind="crm",
        source_id="7300000000000000001",
        status="active",
        paused_reason=None,
        test_event_code=None,
        generated_at=since + timedelta(days=14),
        window_days=14,
        since=since,
        events=8,
        coverage={"tiktok_lead_id": 0.375, "ttclid": 1.0},
        delivered=8,
        delivered_by_event={"Lead": 6, "lead_sold": 2},
        guidance_signals=GUIDANCE_SIGNALS,
        statuses={"unmapped": 1, "delivered": 8},
        error_codes=[ErrorCode(None, "transient", 503, 2, "HTTP 503")],
        unmapped=[],
        open_events={"retrying": 1},
        oldest_pending_at=since,
        oldest_pending_age_seconds=5400.0,
        triggers_waiting={},
        oldest_trigger_age_seconds=None,
        enabled_mappings=2,
        findings=[Finding(Severity.WARNING, "volume_below_guidance", "Few.", "Send more.")],
    )
    assert render_text(report) == [
        "acme (crm 7300000000000000001, active): last 14 days, since 2026-11-07 22:53 UTC",
        "  delivered: 8 (TikTok's guidance: more than 50 in 14 days)"
        "  by event: Lead 6, lead_sold 2",
        "  outbox rows created: delivered 8, unmapped 1",
        "  match keys in 8 event(s): TikTok lead id 38%, ttclid 100%",
        "  TikTok answers other than delivered: code - (HTTP 503, transient) x2",
        "  waiting: retrying 1; oldest 90 min",
        "  findings:",
        "    WARNING  Few.",
        "             fix: Send more.",
    ]
    one = json.loads(render_json(report))
    assert one["since"] == "2026-11-07T22:53:30+00:00" and one["worst"] == "warning"
    assert one["findings"] == [
        {
            "severity": "warning",
            "code": "volume_below_guidance",
            "title": "Few.",
            "fix": "Send more.",
        }
    ]
    assert [d["event_set_id"] for d in json.loads(render_json([report, report]))] == [7, 7]


# --- CLI --------------------------------------------------------------------------------


runner = CliRunner()


def test_cli_prints_findings_with_severity_and_fix(acme: int) -> None:
    add_rows(acme, 3, "delivered", payload={"event": "Lead", "user": {"email": ["e" * 64]}})
    add_rows(acme, 2, "unmapped", trigger_type="buyer.accepted")
    result = runner.invoke(cli_app, ["diagnose", "acme"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "acme (crm 7300000000000000001, active): last 14 days" in out
    assert "delivered: 3 (TikTok's guidance: more than 50 in 14 days)" in out
    assert "match keys in 3 event(s): TikTok lead id 0%" in out
    assert "unmapped triggers: buyer.accepted x2" in out
    assert "WARNING  3 event(s) delivered in the last 14 days" in out
    assert "fix: `postback mapping set --event-set acme --trigger buyer.accepted" in out


def test_cli_json_and_every_set(acme: int, make_event_set: Callable[..., int]) -> None:
    make_event_set(name="beta", source_id="7300000000000000002")
    result = runner.invoke(cli_app, ["diagnose", "acme", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["event_set"] == "acme" and document["worst"] == "warning"
    assert {f["severity"] for f in document["findings"]} <= {"critical", "warning", "info"}
    assert all(f["fix"] for f in document["findings"])
    result = runner.invoke(cli_app, ["diagnose", "--json"])
    assert [d["event_set"] for d in json.loads(result.output)] == ["acme", "beta"]
    result = runner.invoke(cli_app, ["diagnose"])
    assert "acme (crm" in result.output and "beta (crm" in result.output


def test_cli_unknown_event_set(sqlite_db: str) -> None:
    result = runner.invoke(cli_app, ["diagnose", "nope"])
    assert result.exit_code == 2 and "nope" in result.output


# --- PostgreSQL (the JSON paths are spelled per backend) -----------------------------------


@pytest.fixture
def pg_acme(pg_db: str, make_event_set: Callable[..., int]) -> Iterator[int]:
    yield make_event_set()


def test_coverage_on_postgresql(pg_acme: int) -> None:
    add_rows(pg_acme, 2, "delivered", payload=FULL_EVENT)
    add_rows(pg_acme, 2, "delivered", payload={"event": "Lead", "user": {"ttclid": "E.C.P.y"}})
    add_rows(pg_acme, 1, "failed", payload=FULL_EVENT, attempt=("invalid", 200, 40002, "bad"))
    add_rows(pg_acme, 1, "unmapped", trigger_type="buyer.accepted")
    report = report_for()
    assert report.events == 5
    assert report.coverage["tiktok_lead_id"] == 0.6 and report.coverage["ttclid"] == 1.0
    assert report.coverage["email"] == 0.6 and report.coverage["external_id"] == 0.0
    assert [(u.trigger_type, u.triggers) for u in report.unmapped] == [("buyer.accepted", 1)]
    assert [(e.code, e.attempts) for e in report.error_codes] == [(40002, 1)]


def test_match_key_coverage_on_postgresql(pg_acme: int) -> None:
    add_rows(pg_acme, 1, "delivered", payload=FULL_EVENT)
    add_rows(pg_acme, 3, "delivered", payload={"event": "Lead", "user": {"ip": "192.0.2.1"}})
    add_rows(pg_acme, 1, "unmapped", trigger_type="buyer.accepted")
    since = datetime.now(UTC) - timedelta(days=14)
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        crm = match_key_coverage(session, pg_acme, "crm", since)
        pixel = match_key_coverage(session, pg_acme, "web", since)
    assert crm.events == 4 and crm.share("tiktok_lead_id") == 0.25 and crm.share("phone") == 0.25
    assert pixel.share("ip") == 0.75 and pixel.share("user_agent") == 0.0


@pytest.mark.parametrize("database", ["sqlite_db", "pg_db"])
def test_a_property_reading_a_missing_attribute_is_counted(
    database: str,
    request: pytest.FixtureRequest,
    simulator: SimulatorControl,
    eager: None,
    make_event_set: Callable[..., int],
) -> None:
    """`value_from: payout` with no payout: the events went without a value, and nothing said."""
    request.getfixturevalue(database)
    make_event_set(
        mappings=(
            {"trigger_type": "lead.submitted", "event_name": "Lead"},
            {
                "trigger_type": "lead.sold",
                "event_name": "lead_sold",
                "properties": {"value_from": "payout", "currency": "USD"},
            },
        )
    )
    for n in range(4):
        enqueue_trigger(trigger("lead.submitted", f"L-{n}", match_keys={"ttclid": f"E.C.P.{n}"}))
    for n in range(3):
        enqueue_trigger(trigger("lead.sold", f"L-{n}", attributes={"value": 5}))
    enqueue_trigger(trigger("lead.sold", "L-3", attributes={"payout": 12.5}))

    report = report_for()
    assert report.delivered == 8
    assert codes(report)["property_attribute_missing"] == Severity.WARNING
    finding = next(f for f in report.findings if f.code == "property_attribute_missing")
    assert "lead_sold" in finding.title and "'payout'" in finding.title
    assert "3 of 4" in finding.title
    assert "attributes.payout" in finding.fix
    [counted] = report.missing_attributes
    assert (counted.property, counted.attribute, counted.missing, counted.sampled) == (
        "value",
        "payout",
        3,
        4,
    )
    json.dumps(report.as_dict())


@pytest.mark.parametrize("database", ["sqlite_db", "pg_db"])
def test_an_erased_leads_triggers_are_not_missing_attributes(
    database: str,
    request: pytest.FixtureRequest,
    simulator: SimulatorControl,
    eager: None,
    make_event_set: Callable[..., int],
) -> None:
    """erase-lead sets its triggers' attributes to {}: they read as lacking every attribute,
    a property_attribute_missing finding about data that was erased on purpose."""
    request.getfixturevalue(database)
    make_event_set(
        mappings=(
            {"trigger_type": "lead.submitted", "event_name": "Lead"},
            {
                "trigger_type": "lead.sold",
                "event_name": "lead_sold",
                "properties": {"value_from": "payout", "currency": "USD"},
            },
            {
                "trigger_type": "lead.qualified",
                "event_name": "lead_qualified",
                "properties": {"order_id_from": "order"},
            },
        )
    )
    for n in range(4):
        enqueue_trigger(trigger("lead.submitted", f"L-{n}", match_keys={"ttclid": f"E.C.P.{n}"}))
        enqueue_trigger(trigger("lead.sold", f"L-{n}", attributes={"payout": 12.5}))
    enqueue_trigger(trigger("lead.qualified", "L-0", attributes={"order": "O-1"}))
    enqueue_trigger(trigger("lead.qualified", "L-3", attributes={}))  # really lacks it
    for lead in ("L-0", "L-1"):
        erase_lead(EraseLead(lead), Actor("cli:ops", DEFAULT_WORKSPACE_ID, Role.OWNER))

    report = report_for()
    assert [
        (m.event_name, m.attribute, m.missing, m.sampled) for m in report.missing_attributes
    ] == [("lead_qualified", "order", 1, 1)]
    finding = next(f for f in report.findings if f.code == "property_attribute_missing")
    assert "lead_sold" not in finding.title and "1 of 1" in finding.title


def test_each_mapping_samples_its_own_latest_triggers(
    sqlite_db: str,
    simulator: SimulatorControl,
    eager: None,
    make_event_set: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(diagnostics_queries, "ATTRIBUTE_SAMPLE", 2)
    make_event_set(
        mappings=(
            {"trigger_type": "lead.submitted", "event_name": "Lead"},
            {
                "trigger_type": "lead.sold",
                "event_name": "lead_sold",
                "properties": {"value_from": "payout", "currency": "USD"},
            },
            {
                "trigger_type": "lead.qualified",
                "event_name": "lead_qualified",
                "properties": {"order_id_from": "order"},
            },
        )
    )
    for n in range(3):
        enqueue_trigger(trigger("lead.submitted", f"L-{n}", match_keys={"ttclid": f"E.C.P.{n}"}))
    # The oldest of each mapping falls outside its sample of 2.
    enqueue_trigger(trigger("lead.sold", "L-0", attributes={}))
    enqueue_trigger(trigger("lead.qualified", "L-0", attributes={"order": "O-1"}))
    for n in (1, 2):
        enqueue_trigger(trigger("lead.sold", f"L-{n}", attributes={"payout": 3}))
        enqueue_trigger(trigger("lead.qualified", f"L-{n}", attributes={}))

    report = report_for()
    assert [
        (m.event_name, m.attribute, m.missing, m.sampled) for m in report.missing_attributes
    ] == [("lead_qualified", "order", 2, 2)]


# --- the advice names what holds for this event set, and it works ---------------------------


@pytest.mark.parametrize(
    ("options", "limit"),
    [
        ({}, "28 days"),  # CRM default
        ({"kind": "web"}, "7 days"),  # web default
        ({"max_event_age_days": 3.5}, "3.5 days"),  # the set's own
    ],
)
def test_the_expired_finding_names_the_event_sets_own_limit(
    sqlite_db: str, make_event_set: Callable[..., int], options: dict[str, Any], limit: str
) -> None:
    acme = make_event_set(**options)
    add_rows(acme, 2, "expired")
    add_rows(acme, 60, "delivered")
    [finding] = [f for f in report_for().findings if f.code == "expired_events"]
    assert f"older than this event set's age limit ({limit})" in finding.title
    assert "MAX_EVENT_AGE_DAYS" not in finding.title + finding.fix
    assert "`postback event-set edit acme --max-event-age-days N`" in finding.fix
    assert "`postback replay --event-set acme --status expired`" in finding.fix


def test_the_no_match_key_finding_suggests_the_replay_and_the_replay_sends_them(
    sqlite_db: str, simulator: SimulatorControl, eager: None, make_event_set: Callable[..., int]
) -> None:
    make_event_set()
    for lead in ("L-1", "L-2"):
        enqueue_trigger(trigger("lead.submitted", lead, match_keys={"first_name": "Jo"}))
    [finding] = [f for f in report_for().findings if f.code == "no_match_key_events"]
    command = "postback replay --event-set acme --status no_match_key"
    assert f"`{command}`" in finding.fix
    # Followed as written, once one lead's keys are stored: that event leaves, the other,
    # whose lead still has no identifying key, stays no_match_key.
    from crm_postback.api import upsert_lead_keys

    upsert_lead_keys("L-1", {"email": "jo@example.com"})
    result = runner.invoke(cli_app, command.split()[1:])
    assert result.exit_code == 0, result.output
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        statuses = dict(session.execute(select(Postback.lead_ref, Postback.status)).all())
    assert statuses == {"L-1": "delivered", "L-2": "no_match_key"}
    assert simulator.count_events(include_duplicates=True) == 1
