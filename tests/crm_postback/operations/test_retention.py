"""Retention: the purge of old match keys and event bodies, and erasing one lead on request."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text, update
from typer.testing import CliRunner

from crm_postback.api import enqueue_trigger
from crm_postback.cli import app as cli_app
from crm_postback.core.settings import get_settings
from crm_postback.operations.diagnostics import diagnose
from crm_postback.operations.postback_reports import status_counts
from crm_postback.operations.retention import (
    PurgeBatch,
    count_expired,
    describe_erased,
    erase_lead,
    purge_batch,
    purge_in_batches,
    retention_cutoff,
)
from crm_postback.simulator import SimulatorControl
from models import (
    DEFAULT_WORKSPACE_ID,
    AuditEntry,
    DeliveryAttempt,
    Lead,
    Postback,
    PostbackStatus,
    Trigger,
)
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES

runner = CliRunner()
EMAIL, PHONE = "Erase.Me@Example.com", "+1 (213) 373-4253"
EMAIL_HASH = hashlib.sha256(EMAIL.lower().encode()).hexdigest()
PHONE_HASH = hashlib.sha256(b"+12133734253").hexdigest()
EXTERNAL_HASH = hashlib.sha256(b"crm-user-77").hexdigest()
SCALARS = {
    "ttclid": "E.C.P.erase-click-1",
    "tiktok_lead_id": "7399000000000000001",
    "ip": "203.0.113.77",
    "user_agent": "EraseTestAgent/1.0",
    "ttp": "ttp-erase-cookie-1",
}
NAMES_AND_PAGE = {
    "first_name": "Eraseme",
    "last_name": "Purgeson",
    "city": "Lowell",
    "state": "MA",
    "country": "US",
    "zip_code": "01852",
    "locale": "pt-BR",
    "page": {
        "url": "https://shop.example/landing/erase-page-1?utm_source=tt",
        "referrer": "https://ref.example/erase-referrer-1",
    },
}
NAME_HASHES = tuple(
    hashlib.sha256(plain.encode()).hexdigest()
    for plain in ("eraseme", "purgeson", "lowell", "ma", "us", "01852")
)
PAGE_SECRETS = ("erase-page-1", "erase-referrer-1")
SECRETS = (EMAIL_HASH, PHONE_HASH, EXTERNAL_HASH, *SCALARS.values(), *NAME_HASHES, *PAGE_SECRETS)


def trigger(kind: str, lead: str, minutes_ago: float = 30, **extra: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "lead_id": lead,
        "event_set": "acme",
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat(),
        **extra,
    }


def full_keys() -> dict[str, Any]:
    return {
        "email": EMAIL,
        "phone": PHONE,
        "external_id": "crm-user-77",
        **SCALARS,
        **NAMES_AND_PAGE,
    }


@pytest.fixture
def ready(
    sqlite_db: str, simulator: SimulatorControl, eager: None, make_event_set: Callable[..., int]
) -> SimulatorControl:
    make_event_set()
    return simulator


def age(lead_ref: str, days: float) -> None:
    """Moves a lead and everything of it `days` into the past."""
    then = datetime.now(UTC) - timedelta(days=days)
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        session.execute(update(Lead).where(Lead.lead_ref == lead_ref).values(updated_at=then))
        session.execute(
            update(Trigger).where(Trigger.lead_ref == lead_ref).values(received_at=then)
        )
        session.execute(
            update(Postback)
            .where(Postback.lead_ref == lead_ref)
            .values(created_at=then, updated_at=then)
        )
        session.commit()


def lead(lead_ref: str) -> Lead | None:
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        return session.scalar(select(Lead).where(Lead.lead_ref == lead_ref))


def payloads(lead_ref: str) -> list[Any]:
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        return list(
            session.scalars(
                select(Postback.payload).where(
                    Postback.lead_ref == lead_ref, Postback.status != "unmapped"
                )
            )
        )


def purge_all(limit: int = 1000) -> tuple[int, int]:
    cutoff = retention_cutoff(get_settings(), datetime.now(UTC))

    def run_batch(after_lead_id: int, after_postback_id: int) -> PurgeBatch:
        with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
            batch = purge_batch(
                session,
                cutoff,
                after_lead_id=after_lead_id,
                after_postback_id=after_postback_id,
                limit=limit,
            )
            session.commit()
        return batch

    batches = list(purge_in_batches(run_batch, limit=limit))
    return sum(batch.leads for batch in batches), sum(batch.payloads for batch in batches)


def test_the_batch_loop_goes_on_from_each_batch_until_one_is_not_full() -> None:
    starts: list[tuple[int, int]] = []
    answers = iter([PurgeBatch(2, 2, 10, 20), PurgeBatch(2, 1, 15, 21), PurgeBatch(1, 0, 17, 21)])

    def run_batch(after_lead_id: int, after_postback_id: int) -> PurgeBatch:
        starts.append((after_lead_id, after_postback_id))
        return next(answers)

    batches = list(purge_in_batches(run_batch, limit=2))
    assert [(b.leads, b.payloads) for b in batches] == [(2, 2), (2, 1), (1, 0)]
    assert starts == [(0, 0), (10, 20), (15, 21)]


def test_the_batch_loop_asks_whether_to_stop_before_each_batch() -> None:
    starts: list[tuple[int, int]] = []

    def run_batch(after_lead_id: int, after_postback_id: int) -> PurgeBatch:
        starts.append((after_lead_id, after_postback_id))
        return PurgeBatch(1, 1, after_lead_id + 1, after_postback_id + 1)

    assert list(purge_in_batches(run_batch, limit=1, stop=lambda: True)) == []
    assert starts == []
    stops = iter([False, False, True])
    batches = list(purge_in_batches(run_batch, limit=1, stop=lambda: next(stops)))
    assert len(batches) == 2 and starts == [(0, 0), (1, 1)]


# --- the purge --------------------------------------------------------------------------


def test_purge_clears_old_keys_and_bodies_and_keeps_counts(ready: SimulatorControl) -> None:
    for ref in ("OLD", "NEW", "OLD-OPEN", "OLD-ACTIVE"):
        enqueue_trigger(trigger("lead.submitted", ref, match_keys=full_keys()))
    enqueue_trigger(trigger("buyer.accepted", "OLD"))  # unmapped: no body to clear
    for ref in ("OLD", "OLD-OPEN", "OLD-ACTIVE"):
        age(ref, 91)
    # still retrying: nothing of it may be purged
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        session.execute(
            update(Postback).where(Postback.lead_ref == "OLD-OPEN").values(status="retrying")
        )
        # a trigger for it arrived recently: the lead is still active
        session.execute(
            update(Trigger)
            .where(Trigger.lead_ref == "OLD-ACTIVE")
            .values(received_at=datetime.now(UTC) - timedelta(days=3))
        )
        session.commit()
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        counts_before = status_counts(session)
        attempts_before = session.scalar(select(func.count()).select_from(DeliveryAttempt))
        preview = count_expired(session, retention_cutoff(get_settings(), datetime.now(UTC)))
    assert (preview.leads, preview.payloads) == (1, 2)  # OLD; OLD and OLD-ACTIVE's bodies

    assert purge_all() == (1, 2)

    old = lead("OLD")
    assert old is not None
    assert (old.ttclid, old.ttp, old.ip, old.user_agent, old.tiktok_lead_id) == (None,) * 5
    assert (old.email_hashes, old.phone_hashes, old.external_id_hashes) == ([], [], [])
    assert payloads("OLD") == [None]
    for ref in ("NEW", "OLD-OPEN", "OLD-ACTIVE"):
        kept = lead(ref)
        assert kept is not None and kept.email_hashes == [EMAIL_HASH], ref
    assert payloads("NEW")[0] is not None and payloads("OLD-OPEN")[0] is not None
    assert payloads("OLD-ACTIVE") == [None]  # delivered 91 days ago: its body goes
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        assert status_counts(session) == counts_before
        assert session.scalar(select(func.count()).select_from(DeliveryAttempt)) == attempts_before
        codes = set(session.scalars(select(Postback.last_code).where(Postback.lead_ref == "OLD")))
        assert codes == {0, None}  # TikTok's answer is kept (None: the unmapped row)
        report = diagnose(session, 1, window_days=100)  # older periods still add up
        assert report.statuses == {"delivered": 3, "retrying": 1, "unmapped": 1}
        assert report.error_codes == [] and report.unmapped[0].triggers == 1
    assert purge_all() == (0, 0)  # nothing left to do; a second run changes nothing


def test_every_key_column_of_a_lead_is_purged_or_named_as_kept() -> None:
    """A column added to `leads` for a caller's key must be cleared by the purge, unless it is
    named as kept: the list cannot drift from the door's."""
    from crm_postback.intake.lead_keys import LEAD_KEY_COLUMNS
    from crm_postback.operations.retention import HASH_COLUMNS, SCALAR_KEYS

    bookkeeping = {"id", "workspace_id", "lead_ref", "created_at", "updated_at"}
    kept = {"limited_data_use", "consent_withdrawn_at"}  # not data about the person
    columns = set(Lead.__table__.columns.keys())
    assert columns - bookkeeping - kept == {*SCALAR_KEYS, *HASH_COLUMNS}
    assert set(LEAD_KEY_COLUMNS) - {*SCALAR_KEYS, *HASH_COLUMNS} == {"limited_data_use"}


@pytest.fixture
def ready_on_any(
    any_db: str, simulator: SimulatorControl, eager: None, make_event_set: Callable[..., int]
) -> SimulatorControl:
    make_event_set()
    return simulator


def test_a_lead_holding_only_names_and_a_page_is_purged(ready_on_any: SimulatorControl) -> None:
    """No email, phone or click id: the names, address parts, locale and page are personal
    enough to select the lead and are all cleared; its consent record and choice stay."""
    from crm_postback.api import upsert_lead_keys, withdraw_consent

    upsert_lead_keys("ONLY-NAMES", NAMES_AND_PAGE, limited_data_use=True)
    upsert_lead_keys("ONLY-PAGE", {"page": {"url": "https://shop.example/p/erase-page-2"}})
    upsert_lead_keys("WITHDRAWN", {"first_name": "Withdrawn", "city": "Salem"})
    withdraw_consent("WITHDRAWN")
    upsert_lead_keys("RECENT", {"first_name": "Recent"})
    stored = lead("ONLY-NAMES")
    assert stored is not None and stored.first_name_hash == NAME_HASHES[0]
    assert stored.page_url is not None and "erase-page-1" in stored.page_url
    for ref in ("ONLY-NAMES", "ONLY-PAGE", "WITHDRAWN"):
        age(ref, 91)
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        preview = count_expired(session, retention_cutoff(get_settings(), datetime.now(UTC)))
    assert preview.leads == 3

    assert purge_all()[0] == 3

    for ref in ("ONLY-NAMES", "ONLY-PAGE", "WITHDRAWN"):
        purged = lead(ref)
        assert purged is not None, ref
        assert {column: getattr(purged, column) for column in PURGED_SCALARS} == dict.fromkeys(
            PURGED_SCALARS
        ), ref
    names = lead("ONLY-NAMES")
    assert names is not None and names.limited_data_use is True
    withdrawn = lead("WITHDRAWN")
    assert withdrawn is not None and withdrawn.consent_withdrawn_at is not None
    recent = lead("RECENT")
    assert recent is not None and recent.first_name_hash is not None
    assert purge_all() == (0, 0)  # a purged lead has nothing left to select it


PURGED_SCALARS = (
    "first_name_hash",
    "last_name_hash",
    "city_hash",
    "state_hash",
    "country_hash",
    "zip_code_hash",
    "locale",
    "page_url",
    "page_referrer",
)


def test_purge_runs_in_batches(ready: SimulatorControl) -> None:
    for n in range(5):
        enqueue_trigger(trigger("lead.submitted", f"L-{n}", match_keys={"email": f"{n}@x.org"}))
        age(f"L-{n}", 100)
    assert purge_all(limit=2) == (5, 5)


def test_replaying_a_purged_event_explains_why_it_cannot(ready: SimulatorControl) -> None:
    from crm_postback.operations.replay import replay

    enqueue_trigger(trigger("lead.submitted", "OLD", match_keys={"email": EMAIL}))
    age("OLD", 100)
    purge_all()
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        session.execute(update(Postback).values(status=PostbackStatus.FAILED))
        assert replay(session, [1], datetime.now(UTC)) == []
        session.commit()
        row = session.get(Postback, 1)
        assert row is not None and "replay not possible: match_keys" in (row.last_message or "")


def test_retention_days_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import apply_env  # type: ignore[import-not-found]

    assert get_settings().retention_days == 90
    apply_env(monkeypatch, RETENTION_DAYS="30")
    now = datetime.now(UTC)
    assert retention_cutoff(get_settings(), now) == now - timedelta(days=30)


def test_purge_cli_and_dry_run(ready: SimulatorControl) -> None:
    enqueue_trigger(trigger("lead.submitted", "OLD", match_keys={"email": EMAIL}))
    age("OLD", 100)
    result = runner.invoke(cli_app, ["purge", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would clear the match keys of 1 lead(s) and 1 stored event bod(ies)" in result.output
    assert lead("OLD").email_hashes == [EMAIL_HASH]  # type: ignore[union-attr]
    result = runner.invoke(cli_app, ["purge"])
    assert "cleared the match keys of 1 lead(s) and 1 stored event bod(ies)" in result.output
    assert "RETENTION_DAYS=90" in result.output
    assert lead("OLD").email_hashes == []  # type: ignore[union-attr]


# --- erasing one lead -------------------------------------------------------------------


def sqlite_text(data_dir: Path) -> str:
    """Every row of every table, as SQL."""
    with sqlite3.connect(data_dir / "postback.db") as connection:
        return "\n".join(connection.iterdump())


def make_lifecycle(simulator: SimulatorControl) -> None:
    enqueue_trigger(trigger("lead.submitted", "L-ERASE", match_keys=full_keys()))
    enqueue_trigger(
        trigger("lead.sold", "L-ERASE", attributes={"value": 42, "buyer_email_note": "B17"})
    )
    simulator.set_faults(http_5xx_rate=1.0)  # this one stays retrying: still open
    enqueue_trigger(trigger("lead.sold", "L-ERASE", 10, attributes={"value": 7}))
    simulator.set_faults(http_5xx_rate=0.0)
    enqueue_trigger(trigger("lead.submitted", "L-KEEP", match_keys={"email": "keep@x.org"}))


def test_erase_lead_leaves_no_hash_behind_on_sqlite(
    ready: SimulatorControl, isolated_settings: Path
) -> None:
    make_lifecycle(ready)
    before = sqlite_text(isolated_settings)
    assert all(secret in before for secret in SECRETS)

    result = runner.invoke(cli_app, ["erase-lead", "L-ERASE", "--yes"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "lead L-ERASE erased:" in out
    assert "1 email hash(es), 1 phone hash(es), 1 external_id hash(es)" in out
    assert "first_name, last_name, city, state, country, zip_code, locale, page_url" in out
    assert "3 trigger(s): attributes cleared" in out
    assert "3 postback(s): stored event bodies cleared; 1 not yet sent, now failed" in out

    after = sqlite_text(isolated_settings)
    leaked = [secret for secret in SECRETS if secret in after]
    assert not leaked, f"still stored after erasure: {leaked}"
    assert "buyer_email_note" not in after
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        assert lead("L-ERASE") is None and lead("L-KEEP") is not None
        statuses = list(
            session.scalars(select(Postback.status).where(Postback.lead_ref == "L-ERASE"))
        )
        assert sorted(statuses) == ["delivered", "delivered", "failed"]
        attempts = session.scalar(select(func.count()).select_from(DeliveryAttempt))
        assert attempts == 4  # history stays: 3 + the other lead's
        [entry] = session.scalars(select(AuditEntry).where(AuditEntry.action == "lead.erase"))
        assert entry.actor.startswith("cli:") and "L-ERASE" in (entry.note or "")
        assert entry.after is not None and entry.after["postbacks_stopped"] == 1


def test_a_hash_shared_with_another_lead_is_reported_not_erased(ready: SimulatorControl) -> None:
    enqueue_trigger(trigger("lead.submitted", "L-A", match_keys={"email": EMAIL}))
    enqueue_trigger(trigger("lead.submitted", "L-B", match_keys={"email": EMAIL.upper()}))
    enqueue_trigger(trigger("lead.submitted", "L-C", match_keys={"email": "other@x.org"}))
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        result = erase_lead(session, "L-A")
        session.commit()
    assert result.shared_with == ["L-B"]
    assert any("L-B" in line for line in describe_erased(result))
    assert lead("L-B") is not None


def test_erasing_an_unknown_lead_changes_nothing(ready: SimulatorControl) -> None:
    result = runner.invoke(cli_app, ["erase-lead", "nobody", "--yes"])
    assert result.exit_code == 0
    assert "lead nobody: nothing stored; nothing to erase" in result.output
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        erasures = select(func.count()).where(AuditEntry.action == "lead.erase")
        assert session.scalar(erasures) == 0


def test_erase_asks_for_confirmation(ready: SimulatorControl) -> None:
    enqueue_trigger(trigger("lead.submitted", "L-1", match_keys={"email": EMAIL}))
    result = runner.invoke(cli_app, ["erase-lead", "L-1"], input="n\n")
    assert result.exit_code == 1 and lead("L-1") is not None
    result = runner.invoke(cli_app, ["erase-lead", "L-1"], input="y\n")
    assert result.exit_code == 0 and lead("L-1") is None


def test_erase_lead_leaves_no_hash_behind_on_postgresql(
    pg_db: str,
    simulator: SimulatorControl,
    eager: None,
    make_event_set: Callable[..., int],
) -> None:
    from models import Base

    make_event_set()
    make_lifecycle(simulator)

    def every_row() -> str:
        with session_scope(workspace=ALL_WORKSPACES) as session:
            return "\n".join(
                str(row)
                for table in Base.metadata.sorted_tables
                for row in session.execute(
                    text(f"SELECT row_to_json(t)::text FROM {table.name} t")
                ).scalars()
            )

    assert all(secret in every_row() for secret in SECRETS)
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        result = erase_lead(session, "L-ERASE")
        session.commit()
    assert result.lead_found and result.postbacks == 3 and result.postbacks_stopped == 1
    leaked = [secret for secret in SECRETS if secret in every_row()]
    assert not leaked, f"still stored after erasure: {leaked}"
    assert "keep@x.org" not in every_row()  # raw values were never stored anyway
