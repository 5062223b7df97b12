"""Erasing a lead through `postback erase-lead`: the state, the audit entry, and no match key,
hash or attribute in the entry or in what the command prints."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from crm_postback.api import enqueue_trigger
from crm_postback.cli import app
from crm_postback.commands.erase_lead import EraseLead, erase_lead
from crm_postback.commands.unit_of_work import Actor
from crm_postback.configuration import audit
from crm_postback.simulator import SimulatorControl
from models import DEFAULT_WORKSPACE_ID, AuditEntry, Lead, Postback, Role, Trigger
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES

runner = CliRunner()
EMAIL, PHONE, EXTERNAL_ID = "Erase.Me@Example.com", "+1 (213) 373-4253", "crm-user-77"
PERSONAL = (
    EMAIL,
    EMAIL.lower(),
    hashlib.sha256(EMAIL.lower().encode()).hexdigest(),
    hashlib.sha256(b"+12133734253").hexdigest(),
    hashlib.sha256(EXTERNAL_ID.encode()).hexdigest(),
    "E.C.P.erase-click-1",
    "203.0.113.77",
    "EraseTestAgent/1.0",
    "buyer-note-B17",
)


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
    keys = {
        "email": EMAIL,
        "phone": PHONE,
        "external_id": EXTERNAL_ID,
        "ttclid": "E.C.P.erase-click-1",
        "ip": "203.0.113.77",
        "user_agent": "EraseTestAgent/1.0",
    }
    enqueue_trigger(trigger("lead.submitted", "L-ERASE", match_keys=keys))
    enqueue_trigger(trigger("lead.sold", "L-ERASE", attributes={"value": 5, "note": PERSONAL[-1]}))
    enqueue_trigger(trigger("lead.submitted", "L-KEEP", match_keys={"email": "keep@x.org"}))


def trigger(kind: str, lead: str, **extra: Any) -> dict[str, Any]:
    occurred = datetime.now(UTC) - timedelta(minutes=30)
    return {
        "type": kind,
        "lead_id": lead,
        "event_set": "acme",
        "occurred_at": occurred.isoformat(),
        **extra,
    }


def erasures() -> list[dict[str, Any]]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.action == "lead.erase"))
        return [audit.entry_dict(entry) for entry in entries]


def test_erase_lead_clears_the_lead_and_records_counts_only(ready: None) -> None:
    result = runner.invoke(app, ["erase-lead", "L-ERASE", "--yes"])
    assert result.exit_code == 0, result.output
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalar(select(Lead).where(Lead.lead_ref == "L-ERASE")) is None
        assert session.scalar(select(Lead).where(Lead.lead_ref == "L-KEEP")) is not None
        attributes = session.scalars(
            select(Trigger.attributes).where(Trigger.lead_ref == "L-ERASE")
        )
        assert list(attributes) == [{}, {}]
        bodies = session.scalars(select(Postback.payload).where(Postback.lead_ref == "L-ERASE"))
        assert list(bodies) == [None, None]
    [entry] = erasures()
    assert entry["actor"] == "cli:ops" and entry["entity_type"] == "lead"
    assert entry["after"] == {
        "lead_row_deleted": True,
        "hashes": {"email": 1, "phone": 1, "external_id": 1},
        "keys": ["ttclid", "ip", "user_agent"],
        "triggers_cleared": 2,
        "triggers_stopped": 0,
        "postbacks_cleared": 2,
        "postbacks_stopped": 0,
    }
    # The lead id, which its postbacks and triggers keep, names what was erased.
    assert "'L-ERASE'" in entry["note"]


def test_no_match_key_hash_or_attribute_in_the_audit_entry_or_the_output(ready: None) -> None:
    result = runner.invoke(app, ["erase-lead", "L-ERASE", "--yes"])
    listing = runner.invoke(app, ["admin", "audit"])
    assert "lead.erase" in listing.output
    for text in (str(erasures()), result.output, listing.output):
        leaked = [value for value in PERSONAL if value in text]
        assert not leaked, f"{leaked} in {text!r}"


def test_the_erasure_and_its_audit_entry_commit_together(
    ready: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("audit trail unavailable")

    monkeypatch.setattr(audit, "record", broken)
    with pytest.raises(RuntimeError):
        erase_lead(EraseLead("L-ERASE"), Actor("cli:ops", DEFAULT_WORKSPACE_ID, Role.OWNER))
    with session_scope(workspace=ALL_WORKSPACES) as session:
        lead = session.scalar(select(Lead).where(Lead.lead_ref == "L-ERASE"))
        assert lead is not None and lead.email_hashes
    assert erasures() == []


def test_erasing_an_unknown_lead_records_nothing(ready: None) -> None:
    result = erase_lead(EraseLead("nobody"), Actor("cli:ops", DEFAULT_WORKSPACE_ID, Role.OWNER))
    assert not result.anything
    assert erasures() == []


def test_the_erasure_empties_sqlites_write_ahead_log_after_its_commit(ready: None) -> None:
    """The pages the erasure replaced are still in postback.db-wal until it is emptied (the
    bytes themselves are checked in tests/worker/test_embedded_hostile.py)."""
    from crm_postback.core.settings import get_settings

    wal = get_settings().embedded_database_path.with_name("postback.db-wal")
    assert wal.stat().st_size > 0
    result = erase_lead(EraseLead("L-ERASE"), Actor("cli:ops", DEFAULT_WORKSPACE_ID, Role.OWNER))
    assert result.log_emptied is True
    assert wal.stat().st_size == 0


def test_a_log_another_process_kept_busy_is_reported(
    ready: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import crm_postback.commands.erase_lead as command

    monkeypatch.setattr(command, "truncate_sqlite_log", lambda: False)
    result = runner.invoke(app, ["erase-lead", "L-ERASE", "--yes"])
    assert result.exit_code == 0
    assert "write-ahead log still holds old copies" in result.output
    assert "run the erasure again" in result.output
