"""The match-quality score: shares per key kind, the weighted score, the one change, days,
dropped keys; the window, workspaces, many event sets, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
from sqlalchemy import func, null, select, text, update

from crm_postback.configuration.workspaces import add_workspace
from crm_postback.operations.diagnostics import diagnose, diagnose_all
from crm_postback.operations.diagnostics_text import render_json, render_text
from crm_postback.operations.match_quality import (
    COMPONENTS,
    MAX_SCORE,
    match_quality,
    match_quality_of,
    window_start,
)
from crm_postback.tiktok.match_key_kinds import MatchKeyKind as K
from models import DEFAULT_WORKSPACE_ID, EventSetKind, Postback, Trigger
from models.db import get_engine, session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.sql_statements import recorded_statements  # type: ignore[import-not-found]

NOW = datetime(2026, 3, 14, 15, 30, tzinfo=UTC)
_ids = count(1)
FULL_CRM = K.LEAD_ID | K.TTCLID | K.EMAIL | K.PHONE | K.EXTERNAL_ID
FULL_CRM |= K.FIRST_NAME | K.LAST_NAME | K.ZIP_CODE | K.CITY
FULL_WEB = FULL_CRM | K.TTP | K.IP | K.USER_AGENT


@pytest.fixture(params=["sqlite_db", "pg_db"])
def db(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


def add(
    set_id: int,
    n: int = 1,
    *,
    mask: int | None = int(K.EMAIL),
    event_name: str | None = "Lead",
    status: str = "delivered",
    at: datetime = NOW - timedelta(hours=1),
    dropped: list[str] | None = None,
    workspace: int = DEFAULT_WORKSPACE_ID,
) -> None:
    with session_scope(workspace=workspace) as session:
        for _ in range(n):
            number = next(_ids)
            trigger = Trigger(
                event_set_id=set_id,
                lead_ref=f"L-{number}",
                trigger_type="lead.submitted",
                occurred_at=at,
                attributes={},
                idempotency_key=f"k-{number}",
                status="resolved",
                received_at=at,
                dropped_keys=dropped,
            )
            session.add(trigger)
            session.flush()
            session.add(
                Postback(
                    trigger_id=trigger.id,
                    event_set_id=set_id,
                    lead_ref=trigger.lead_ref,
                    event_name=event_name,
                    event_id=f"{number:040x}",
                    status=status,
                    payload=None,
                    match_key_mask=mask,
                    created_at=at,
                    updated_at=at,
                )
            )
        session.commit()


def quality_of(set_id: int, workspace: int = DEFAULT_WORKSPACE_ID, **options: Any) -> Any:
    with session_scope(workspace=workspace) as session:
        return match_quality(session, set_id, now=NOW, **options)


def test_each_kinds_weights_sum_to_ten() -> None:
    for kind in (EventSetKind.CRM, EventSetKind.WEB):
        assert sum(c.weight(kind) for c in COMPONENTS) == pytest.approx(MAX_SCORE)
    # the strongest for attribution weigh most, names and address least
    assert COMPONENTS[0].key == "lead_or_click"
    assert all(COMPONENTS[0].crm_weight > c.crm_weight for c in COMPONENTS[1:])


def test_an_empty_event_set_has_no_score_and_says_so(
    db: str, make_event_set: Callable[..., int]
) -> None:
    set_id = make_event_set()
    quality = quality_of(set_id)
    assert quality.events == 0 and quality.score is None and quality.suggestion is None
    assert all(share == 0.0 for share in quality.coverage.values())
    assert len(quality.days) == 14 and all(day.events == 0 for day in quality.days)
    assert "no events in the last 14 days" in quality.summary
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        report = diagnose(session, set_id, now=NOW)
    assert "match_quality" not in {f.code for f in report.findings}
    assert any("match quality: no events" in line for line in render_text(report))
    render_json(report)


def test_unmapped_rows_are_not_events_and_a_set_of_only_those_is_empty(
    db: str, make_event_set: Callable[..., int]
) -> None:
    set_id = make_event_set()
    add(set_id, 3, mask=None, event_name=None, status="unmapped")
    assert quality_of(set_id).events == 0


def test_no_ttclid_at_all_the_suggestion_names_the_event_and_the_share(
    db: str, make_event_set: Callable[..., int]
) -> None:
    set_id = make_event_set()
    add(set_id, 10, mask=int(K.EMAIL | K.PHONE), event_name="Lead")
    add(set_id, 5, mask=int(K.EMAIL | K.PHONE | K.LEAD_ID), event_name="Purchase")
    add(set_id, 5, mask=int(K.EMAIL | K.PHONE), event_name="Purchase")
    quality = quality_of(set_id)
    assert quality.events == 20
    assert quality.coverage["ttclid"] == 0.0
    assert quality.coverage["tiktok_lead_id"] == 0.25
    assert quality.coverage["email"] == 1.0
    assert "ip" not in quality.coverage  # a CRM event carries no browser
    # 4 * 0.25 + 2 + 2 = 5.0
    assert quality.score == 5.0
    suggestion = quality.suggestion
    # Lead's 10 missing events are worth more than Purchase's 5
    assert (suggestion.component, suggestion.event_name, suggestion.missing) == (
        "lead_or_click",
        "Lead",
        10,
    )
    assert suggestion.gain == pytest.approx(2.0)
    assert suggestion.text.startswith(
        "100% of Lead events in the last 14 days have neither ttclid nor TikTok lead id: "
    )
    assert "ttclid captured on the landing page" in suggestion.text
    by_event = {e.event_name: e for e in quality.by_event}
    assert by_event["Purchase"].coverage["tiktok_lead_id"] == 0.5
    assert by_event["Lead"].score == 4.0 and by_event["Purchase"].score == 6.0
    assert [e.event_name for e in quality.by_event] == ["Lead", "Purchase"]  # most, then name


def test_a_perfect_event_set_scores_ten_without_a_suggestion(
    db: str, make_event_set: Callable[..., int]
) -> None:
    crm = make_event_set()
    web = make_event_set("pixel", "7300000000000000009", kind=EventSetKind.WEB)
    add(crm, 3, mask=int(FULL_CRM))
    add(web, 3, mask=int(FULL_WEB))
    for set_id in (crm, web):
        quality = quality_of(set_id)
        assert quality.score == 10.0 and quality.suggestion is None
        assert "every weighted key is on every event" in quality.summary
    # a web event without ip and user agent together loses that component
    add(web, 1, mask=int(FULL_WEB & ~K.USER_AGENT))
    quality = quality_of(web)
    assert quality.score == pytest.approx(10 - 1 / 4, abs=0.06)
    assert quality.suggestion.component == "ip_user_agent"


def test_no_match_key_events_count_as_the_worst_and_unrecorded_ones_are_left_out(
    db: str, make_event_set: Callable[..., int]
) -> None:
    set_id = make_event_set()
    add(set_id, 2, mask=int(FULL_CRM))
    add(set_id, 2, mask=None, status="no_match_key")  # no mask written: carries nothing
    add(set_id, 1, mask=int(K.FIRST_NAME | K.LAST_NAME), status="no_match_key")
    add(set_id, 4, mask=None, status="delivered")  # built before masks were recorded
    quality = quality_of(set_id)
    assert (quality.events, quality.no_match_key, quality.unrecorded) == (5, 3, 4)
    assert quality.coverage["email"] == 0.4
    assert quality.score == pytest.approx((2 * 10 + 0.5) / 5, abs=0.05)


def test_days_and_the_window_older_events_are_excluded(
    db: str, make_event_set: Callable[..., int]
) -> None:
    set_id = make_event_set()
    first = window_start(NOW, 14)
    assert first == datetime(2026, 3, 1, tzinfo=UTC)
    add(set_id, 2, mask=int(K.EMAIL), at=first)  # the first instant of the window: day 0
    add(set_id, 1, mask=int(K.TTCLID), at=first + timedelta(days=1, seconds=-1))  # still day 0
    add(set_id, 3, mask=int(K.TTCLID | K.EMAIL), at=NOW - timedelta(minutes=1))  # today
    add(set_id, 50, mask=int(FULL_CRM), at=first - timedelta(microseconds=1))  # too old
    add(set_id, 1, mask=int(K.PHONE), at=NOW - timedelta(days=5), dropped=["phone", "ttclid"])
    add(set_id, 7, mask=int(K.PHONE), at=first - timedelta(days=1), dropped=["email"])
    quality = quality_of(set_id)
    assert quality.events == 7
    days = quality.days
    assert days[0].day == first.date() and days[-1].day == NOW.date()
    assert [d.events for d in days] == [3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 3]
    assert days[0].shares["email"] == pytest.approx(2 / 3)
    assert days[0].shares["lead_or_click"] == pytest.approx(1 / 3)
    assert days[-1].shares["lead_or_click"] == 1.0
    assert quality.dropped == {"phone": 1, "ttclid": 1}  # the old trigger's email is out
    # a one-day window is today only
    assert quality_of(set_id, window_days=1).events == 3
    with pytest.raises(ValueError):
        quality_of(set_id, window_days=0)


def test_dropped_keys_by_kind_most_first(db: str, make_event_set: Callable[..., int]) -> None:
    set_id = make_event_set()
    add(set_id, 3, dropped=["phone"])
    add(set_id, 2, dropped=["phone", "ttclid"])
    add(set_id, 1, dropped=[])
    add(set_id, 1, dropped=None)
    quality = quality_of(set_id)
    assert list(quality.dropped.items()) == [("phone", 5), ("ttclid", 2)]
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        report = diagnose(session, set_id, now=NOW)
    dropped = next(f for f in report.findings if f.code == "match_keys_dropped")
    assert "7 match key(s)" in dropped.title and "phone 5, ttclid 2" in dropped.title
    assert any("dropped at the door: phone 5, ttclid 2" in line for line in render_text(report))


def test_dropped_keys_that_are_no_list_count_nothing_and_break_nothing(
    db: str, make_event_set: Callable[..., int]
) -> None:
    """Whatever a row holds (JSON null, SQL NULL, a string, an object, a number, on SQLite
    text that is not JSON), the one statement answers; only lists count. Nothing filters
    those rows out before the function reads them, so the order of evaluation cannot matter."""
    set_id = make_event_set()
    add(set_id, 2, dropped=["phone"])
    hostile: list[Any] = [None, null(), "phone", {"phone": 1}, 7, True, []]
    for value in hostile:
        add(set_id, 1)
        with session_scope(workspace=ALL_WORKSPACES) as session:
            last = session.scalar(select(func.max(Trigger.id)))
            session.execute(update(Trigger).where(Trigger.id == last).values(dropped_keys=value))
            session.commit()
    if not db.startswith("postgresql"):
        add(set_id, 1)
        with session_scope(workspace=ALL_WORKSPACES) as session:
            session.execute(
                text("UPDATE triggers SET dropped_keys = 'not json' WHERE id = :id"),
                {"id": session.scalar(select(func.max(Trigger.id)))},
            )
            session.commit()
    quality = quality_of(set_id)
    assert quality.dropped == {"phone": 2}
    assert quality.events == 2 + len(hostile) + (0 if db.startswith("postgresql") else 1)


def test_workspaces_are_isolated(db: str, make_event_set: Callable[..., int]) -> None:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        globex = add_workspace(session, "globex").id
        session.commit()
    mine = make_event_set()
    theirs = make_event_set("beta", "7300000000000000002", workspace_id=globex)
    add(mine, 2, mask=int(K.EMAIL), dropped=["phone"])
    add(theirs, 5, mask=int(FULL_CRM), workspace=globex, dropped=["ttclid"])
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        assert set(match_quality_of(session, now=NOW)) == {mine}
        # asking for the other workspace's set by id finds nothing
        assert match_quality_of(session, [theirs], now=NOW) == {}
        with pytest.raises(KeyError):
            match_quality(session, theirs, now=NOW)
        quality = match_quality(session, mine, now=NOW)
    assert quality.events == 2 and quality.dropped == {"phone": 2}
    assert quality_of(theirs, workspace=globex).score == 10.0
    assert quality_of(theirs, workspace=globex).dropped == {"ttclid": 5}


def test_many_event_sets_cost_a_bounded_number_of_statements(
    db: str, make_event_set: Callable[..., int]
) -> None:
    ids = [make_event_set(f"set-{n}", f"73000000000000001{n:02d}") for n in range(12)]
    for index, set_id in enumerate(ids):
        add(set_id, index % 3, mask=int(K.EMAIL), dropped=["phone"] if index % 2 else None)
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        with recorded_statements(get_engine()) as seen:
            qualities = match_quality_of(session, now=NOW)
        assert len(seen) == 3  # the sets, the postbacks, the dropped keys
        with recorded_statements(get_engine()) as seen:
            match_quality_of(session, now=NOW, detail=False)
        assert len(seen) == 3
        with recorded_statements(get_engine()) as seen:
            summaries = match_quality_of(session, now=NOW, detail=False, dropped_keys=False)
        assert len(seen) == 2 and not any("dropped_keys" in s.sql for s in seen)  # /metrics
        assert all(summary.dropped == {} for summary in summaries.values())
        with recorded_statements(get_engine()) as few:
            diagnose_all(session, now=NOW)
        with recorded_statements(get_engine()) as one:
            diagnose(session, ids[0], now=NOW)
    assert len(qualities) == 12
    assert [qualities[i].events for i in ids] == [n % 3 for n in range(12)]
    # every report's match quality came from the one computation for all sets
    per_set = len(one) - 3
    assert len(few) <= 1 + 3 + 12 * per_set


def test_the_summary_without_detail_matches_the_detailed_score(
    db: str, make_event_set: Callable[..., int]
) -> None:
    set_id = make_event_set()
    add(set_id, 3, mask=int(K.EMAIL | K.TTCLID), event_name="Lead")
    add(set_id, 1, mask=int(K.PHONE), event_name="Purchase", at=NOW - timedelta(days=3))
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        summary = match_quality_of(session, [set_id], now=NOW, detail=False)[set_id]
    detailed = quality_of(set_id)
    assert summary.score == detailed.score and summary.coverage == detailed.coverage
    assert summary.days == [] and summary.by_event == []
    assert summary.suggestion.component == detailed.suggestion.component


def test_diagnose_shows_the_section_and_treats_not_sent_events_as_no_failures(
    db: str, make_event_set: Callable[..., int]
) -> None:
    set_id = make_event_set()
    add(set_id, 10, mask=int(K.EMAIL), status="delivered")
    add(set_id, 4, mask=0, status="no_match_key", dropped=["phone"])
    add(set_id, 3, mask=int(K.EMAIL | K.PHONE), status="consent_withdrawn")
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        report = diagnose(session, set_id, now=NOW)
    found = {f.code: f for f in report.findings}
    assert "high_failure_rate" not in found
    no_key = found["no_match_key_events"]
    assert "4 event(s)" in no_key.title and "tiktok_lead_id" in no_key.title
    assert "dropped at the door as invalid in the window, perhaps these events': phone 4" in (
        no_key.fix
    )
    assert found["consent_withdrawn_events"].severity.value == "info"
    score = found["match_quality"]
    assert score.severity.value == "warning"  # 17 events, (10 * 2 + 3 * 4) / 17 < 5
    assert score.fix.startswith("100% of Lead events")
    text = "\n".join(render_text(report))
    assert "match quality: 1.9/10 over 17 event(s) since 2026-03-01 UTC" in text
    assert "(4 not sent: no match key)" in text
    assert "to raise it most: 100% of Lead events" in text
    data = report.as_dict()
    assert data["match_quality"]["score"] == 1.9
    assert data["match_quality"]["days"][-1]["day"] == "2026-03-14"
    assert data["match_quality"]["summary"].startswith("1.9/10; ")
