"""The retention purge through `postback purge`: what it clears, one audit entry per batch,
and no match key or hash in the entries or in what the command prints."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from crm_postback.api import enqueue_trigger
from crm_postback.cli import app
from crm_postback.commands.purge_personal_data import purge
from crm_postback.commands.unit_of_work import Actor
from crm_postback.configuration import audit
from crm_postback.simulator import SimulatorControl
from models import DEFAULT_WORKSPACE_ID, AuditEntry, Lead, Postback, Role, Trigger
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES

runner = CliRunner()
EMAIL = "old.lead@example.com"
EMAIL_HASH = hashlib.sha256(EMAIL.encode()).hexdigest()


@pytest.fixture
def ready(
    sqlite_db: str,
    simulator: SimulatorControl,
    eager: None,
    make_event_set: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "ops")
    make_event_set()


def submit(lead_ref: str, days_ago: float = 0) -> None:
    occurred = datetime.now(UTC) - timedelta(minutes=30)
    enqueue_trigger(
        {
            "type": "lead.submitted",
            "lead_id": lead_ref,
            "event_set": "acme",
            "occurred_at": occurred.isoformat(),
            "match_keys": {"email": EMAIL, "ip": "198.51.100.23"},
        }
    )
    if days_ago:
        then = datetime.now(UTC) - timedelta(days=days_ago)
        with session_scope(workspace=ALL_WORKSPACES) as session:
            session.execute(update(Lead).where(Lead.lead_ref == lead_ref).values(updated_at=then))
            session.execute(
                update(Trigger).where(Trigger.lead_ref == lead_ref).values(received_at=then)
            )
            session.execute(
                update(Postback).where(Postback.lead_ref == lead_ref).values(updated_at=then)
            )
            session.commit()


def keys_and_body(lead_ref: str) -> tuple[list[str], Any]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        lead = session.scalars(select(Lead).where(Lead.lead_ref == lead_ref)).one()
        body = session.scalars(select(Postback.payload).where(Postback.lead_ref == lead_ref)).one()
        return list(lead.email_hashes or []), body


def purges() -> list[dict[str, Any]]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        query = select(AuditEntry).where(AuditEntry.action == "retention.purge")
        return [audit.entry_dict(entry) for entry in session.scalars(query.order_by(AuditEntry.id))]


def test_purge_clears_what_is_past_retention_and_audits_it(ready: None) -> None:
    submit("OLD", days_ago=100)
    submit("NEW")
    result = runner.invoke(app, ["purge"])
    assert result.exit_code == 0, result.output
    assert "cleared the match keys of 1 lead(s) and 1 stored event bod(ies)" in result.output
    assert keys_and_body("OLD") == ([], None)
    hashes, body = keys_and_body("NEW")
    assert hashes == [EMAIL_HASH] and isinstance(body, dict)
    [entry] = purges()
    assert entry["actor"] == "cli:ops" and entry["entity_type"] == "retention"
    after = entry["after"]
    assert (after["leads_cleared"], after["payloads_cleared"], after["retention_days"]) == (
        1,
        1,
        90,
    )
    cutoff = datetime.fromisoformat(after["cutoff"])
    assert abs(cutoff - (datetime.now(UTC) - timedelta(days=90))) < timedelta(minutes=5)


def test_each_batch_is_its_own_transaction_with_its_own_entry(ready: None) -> None:
    for ref in ("OLD-1", "OLD-2", "OLD-3"):
        submit(ref, days_ago=100)
    done = purge(
        Actor("cli:ops", DEFAULT_WORKSPACE_ID, Role.OWNER, instance_admin=True), batch_size=2
    )
    assert (done.leads, done.payloads) == (3, 3)
    cleared = [(e["after"]["leads_cleared"], e["after"]["payloads_cleared"]) for e in purges()]
    assert cleared == [(2, 2), (1, 1)]
    assert all(keys_and_body(ref) == ([], None) for ref in ("OLD-1", "OLD-2", "OLD-3"))


def test_a_dry_run_or_nothing_to_clear_leaves_no_entry(ready: None) -> None:
    submit("NEW")
    submit("OLD", days_ago=100)
    assert (
        "would clear the match keys of 1 lead(s)"
        in runner.invoke(app, ["purge", "--dry-run"]).output
    )
    assert purges() == []
    assert keys_and_body("OLD")[0] == [EMAIL_HASH]
    assert runner.invoke(app, ["purge"]).exit_code == 0
    assert runner.invoke(app, ["purge"]).output.startswith("cleared the match keys of 0 lead(s)")
    assert len(purges()) == 1


def test_no_match_key_or_hash_in_the_entries_or_the_output(ready: None) -> None:
    submit("OLD", days_ago=100)
    outputs = [runner.invoke(app, ["purge"]).output, runner.invoke(app, ["admin", "audit"]).output]
    assert "retention.purge" in outputs[-1]
    for text in (str(purges()), *outputs):
        assert EMAIL not in text and EMAIL_HASH not in text and "198.51.100.23" not in text


def test_a_purge_that_cleared_something_empties_sqlites_write_ahead_log(ready: None) -> None:
    from crm_postback.core.settings import get_settings

    wal = get_settings().embedded_database_path.with_name("postback.db-wal")
    ops = Actor("cli:ops", DEFAULT_WORKSPACE_ID, Role.OWNER, instance_admin=True)
    assert purge(ops).log_emptied is None  # nothing to clear: nothing to do
    submit("L-OLD", days_ago=400)
    assert wal.stat().st_size > 0
    done = purge(Actor("cli:ops", DEFAULT_WORKSPACE_ID, Role.OWNER, instance_admin=True))
    assert done.leads == 1 and done.log_emptied is True
    assert wal.stat().st_size == 0
    assert b"198.51.100.23" not in get_settings().embedded_database_path.read_bytes()
