"""The `postback` CLI as an operator uses it, on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from crm_postback.cli import app
from crm_postback.simulator import SimulatorControl
from tests.conftest import EVENT_SET_ID, TOKEN  # type: ignore[import-not-found]

runner = CliRunner()


def run(*args: str, input: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=input)
    return result.exit_code, result.output


@pytest.fixture
def configured(sqlite_db: str) -> None:
    code, out = run(
        "event-set",
        "add",
        "--name",
        "acme",
        "--event-set-id",
        EVENT_SET_ID,
        "--crm-name",
        "AcmeLeads",
        input=f"{TOKEN}\n",
    )
    assert code == 0, out
    assert TOKEN not in out


def test_schema_upgrade_reports_head(isolated_settings: object) -> None:
    assert run("db", "upgrade") == (0, "schema at head\n")
    code, out = run("db", "current")
    from models.migrate import head_revision

    assert code == 0 and f"database: {head_revision()}  newest: {head_revision()}" in out


def test_event_set_list_masks_the_token(configured: None) -> None:
    code, out = run("event-set", "list")
    assert code == 0
    assert "acme" in out and TOKEN[-4:] in out and TOKEN not in out


def test_mapping_set_list_update_remove(configured: None) -> None:
    code, out = run(
        "mapping",
        "set",
        "--event-set",
        "acme",
        "--trigger",
        "lead.sold",
        "--event",
        "lead_sold",
        "--when",
        'buyer_id == "B17"',
        "--when",
        "value >= 50",
        "--currency",
        "usd",
    )
    assert code == 0, out
    assert 'when buyer_id == "B17" and value >= 50' in out and "currency=USD" in out
    code, out = run(
        "mapping",
        "set",
        "--id",
        "1",
        "--event-set",
        "acme",
        "--trigger",
        "lead.sold",
        "--event",
        "Purchase",
    )
    assert code == 0 and "mapping 1 v2" in out
    code, out = run("mapping", "list", "acme")
    assert "lead.sold -> Purchase" in out
    assert run("mapping", "remove", "1")[0] == 0
    assert run("mapping", "list", "acme")[1] == ""


def test_mapping_set_with_an_id_needs_the_event_set_to_exist_not_to_own_the_mapping(
    configured: None,
) -> None:
    """As before the command layer: `--event-set` is checked to exist; `--id` alone says
    which mapping is updated, and an unknown id is named without the event set."""
    fields = ["--trigger", "lead.sold", "--event"]
    assert run("mapping", "set", "--event-set", "acme", *fields, "lead_sold")[0] == 0
    beta = ["--name", "beta", "--event-set-id", "CBETA0000000000000002"]
    code, out = run("event-set", "add", *beta, input=f"{TOKEN}\n")
    assert code == 0, out
    code, out = run("mapping", "set", "--id", "1", "--event-set", "beta", *fields, "Purchase")
    assert code == 0 and out.startswith("mapping 1 v2: lead.sold -> Purchase "), out
    assert "lead.sold -> Purchase" in run("mapping", "list", "acme")[1]
    assert run("mapping", "list", "beta")[1] == ""
    code, out = run("mapping", "set", "--id", "99", "--event-set", "acme", *fields, "Lead")
    assert (code, out) == (2, "error: mapping_id: no mapping 99\n")
    code, out = run("mapping", "set", "--id", "1", "--event-set", "nope", *fields, "Lead")
    assert (code, out) == (2, "error: event_set: unknown event set 'nope'\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--event", "lead"], "event: standard events are case-sensitive: did you mean 'Lead'?"),
        (["--event", "Lead", "--currency", "BTC"], "currency"),
        (["--event", "Lead", "--when", "value > lots"], "compares numbers"),
        (["--event", "Lead", "--when", "what is this"], "when:"),
        (["--event", "Lead", "--content-type", "car"], "content_type"),
    ],
)
def test_invalid_mappings_are_refused_with_the_reason(
    configured: None, args: list[str], message: str
) -> None:
    code, out = run("mapping", "set", "--event-set", "acme", "--trigger", "lead.sold", *args)
    assert code == 2 and message in out
    assert run("mapping", "list", "acme")[1] == ""


def test_send_history_and_status(
    configured: None, simulator: SimulatorControl, eager: None
) -> None:
    assert (
        run(
            "mapping",
            "set",
            "--event-set",
            "acme",
            "--trigger",
            "lead.submitted",
            "--event",
            "Lead",
        )[0]
        == 0
    )
    code, out = run(
        "send",
        "--event-set",
        "acme",
        "--lead-id",
        "L-9",
        "--type",
        "lead.submitted",
        "--email",
        "Person@Example.com",
        "--attr",
        "source=tiktok",
    )
    assert code == 0 and "trigger 1 accepted" in out
    code, out = run("history", "L-9")
    assert code == 0
    assert "Lead" in out and "delivered" in out and "request_id=" in out
    assert "Person@Example.com" not in out and "person@example.com" not in out
    code, out = run("history", "L-9", "--json")
    assert '"status": "delivered"' in out
    code, out = run("status")
    assert "triggers: resolved=1" in out and "acme: delivered=1" in out


def test_send_refuses_bad_input_naming_the_field(configured: None) -> None:
    bad_phone = ["send", "--event-set", "acme", "--lead-id", "L-1", "--type", "lead.submitted"]
    bad_phone += ["--phone", "12", "--email", "jane@example.com"]
    code, out = run(*bad_phone, "--strict")
    assert code == 2 and "match_keys.phone" in out
    # Without --strict the phone is dropped, the trigger accepted, and the warning says so.
    code, out = run(*bad_phone)
    assert code == 0 and "accepted" in out
    assert "warning: match_keys.phone: " in out and out.rstrip().endswith("; dropped")
    code, out = run("send", "--event-set", "nope", "--lead-id", "L-1", "--type", "lead.sold")
    # Intake never writes the name back (it may be an email or a phone number).
    assert code == 2 and "event_set: unknown event set: no event set has this name" in out
    assert "nope" not in out


def test_pause_resume_and_token_rotation(configured: None) -> None:
    assert run("event-set", "pause", "acme", "--reason", "billing")[0] == 0
    assert "paused  (billing)" in run("event-set", "list")[1]
    assert run("event-set", "set-token", "acme", input="new-token-9876\n")[0] == 0
    out = run("event-set", "list")[1]
    assert "active" in out and "9876" in out and "new-token-9876" not in out


def test_mapping_import_reads_no_more_than_the_file_limit(sqlite_db: str, tmp_path: Path) -> None:
    from crm_postback.configuration.mapping_yaml import MAX_FILE_BYTES

    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * MAX_FILE_BYTES + b"\n")
    result = runner.invoke(app, ["mapping", "import", str(big), "--event-set", "acme"])
    assert result.exit_code == 2
    assert f"file: is larger than {MAX_FILE_BYTES} bytes" in result.output
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"event_set: acme\nmappings: []\n# \xe9\n")
    result = runner.invoke(app, ["mapping", "import", str(latin)])
    assert result.exit_code == 2 and "must be UTF-8" in result.output
