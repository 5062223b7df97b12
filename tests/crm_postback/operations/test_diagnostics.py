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
from crm_postback.core.errors import InputRejected
from crm_postback.operations.diagnostics import GUIDANCE_SIGNALS, Report, Severity, diagnose
from crm_postback.simulator import SimulatorControl
from models import DeliveryAttempt, EventSet, Postback, Trigger
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
    with session_scope() as session:
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
    }
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
    with session_scope() as session:
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
    with session_scope() as session:
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

    with session_scope() as session:
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
    with session_scope() as session, pytest.raises(InputRejected, match="no event set"):
        diagnose(session, 999)


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
