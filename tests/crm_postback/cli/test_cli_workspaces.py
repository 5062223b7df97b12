"""Two workspaces made by the CLI, as the operator does: `--workspace a` never reads, changes
or names anything of b, and b's event sets and mappings are not found from a exactly like
ones that do not exist. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from crm_postback.cli import app
from crm_postback.simulator import SimulatorControl
from models import AuditEntry, Base, Postback, PostbackStatus, Workspace
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES, workspace_tables
from tests.conftest import EVENT_SET_ID, TOKEN  # type: ignore[import-not-found]

runner = CliRunner()
NO_WORKSPACE = "error: workspace: there is no workspace of this name"


def run(*args: str, input: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=input)
    return result.exit_code, result.output


@pytest.fixture(params=["sqlite_db", "pg_db"])
def db(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


def workspace_ids() -> dict[str, int]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return {w.name: w.id for w in session.scalars(select(Workspace))}


def rows_of(workspace_id: int) -> dict[str, list[dict[str, Any]]]:
    """Every row of every workspace table that belongs to the workspace (the audit too)."""
    found: dict[str, list[dict[str, Any]]] = {}
    with session_scope(workspace=ALL_WORKSPACES) as session:
        for name in sorted(workspace_tables()):
            table = Base.metadata.tables[name]
            query = select(table).where(table.c.workspace_id == workspace_id)
            query = query.order_by(*table.primary_key.columns)
            found[name] = [dict(row._mapping) for row in session.execute(query)]
    return found


def add_event_set(workspace: str, name: str = "acme", source_id: str = EVENT_SET_ID) -> None:
    code, out = run(
        "event-set",
        "add",
        "--workspace",
        workspace,
        "--name",
        name,
        "--event-set-id",
        source_id,
        input=f"{TOKEN}\n",
    )
    assert code == 0, out


def set_mapping(workspace: str, event_set: str = "acme") -> None:
    code, out = run(
        "mapping",
        "set",
        "--workspace",
        workspace,
        "--event-set",
        event_set,
        "--trigger",
        "lead.submitted",
        "--event",
        "Lead",
    )
    assert code == 0, out


@pytest.fixture
def two(db: str) -> dict[str, int]:
    """Workspaces a and b, each with an event set "acme" (the same TikTok ID) and a mapping."""
    assert run("workspace", "add", "a") == (0, "workspace 2 'a'\n")
    assert run("workspace", "add", "b") == (0, "workspace 3 'b'\n")
    for workspace in ("a", "b"):
        add_event_set(workspace)
        set_mapping(workspace)
    return workspace_ids()


def test_workspace_add_and_list(two: dict[str, int]) -> None:
    code, out = run("workspace", "list")
    assert code == 0
    lines = {line.split()[1]: line.split() for line in out.splitlines()[1:]}
    assert set(lines) == {"default", "a", "b"}
    assert lines["a"][2:] == ["1", "0", "0"] and lines["default"][2:] == ["0", "0", "0"]
    # A change of the instance: its entry is the instance's, naming the workspace by id.
    with session_scope(workspace=ALL_WORKSPACES) as session:
        made = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "workspace.create")
        ).all()
    assert [(e.workspace_id, e.entity_id, e.after) for e in made] == [
        (None, two["a"], {"name": "a"}),
        (None, two["b"], {"name": "b"}),
    ]


@pytest.mark.parametrize("name", ["Bad Name", "UPPER", "_under", "x" * 65, "a\nb", "été"])
def test_workspace_add_refuses_a_malformed_or_taken_name_without_echo(db: str, name: str) -> None:
    code, out = run("workspace", "add", name)
    assert code == 2 and "error: workspace: a workspace name is 1 to 64 lowercase" in out
    assert name not in out
    assert run("workspace", "add", "a")[0] == 0
    assert run("workspace", "add", "a") == (
        2,
        "error: workspace: a workspace of this name exists\n",
    )
    assert set(workspace_ids()) == {"default", "a"}


def test_names_and_tiktok_ids_are_unique_per_workspace(two: dict[str, int]) -> None:
    """b's "acme" (same name, same TikTok ID) did not clash with a's; in a it does."""
    code, out = run(
        "event-set",
        "add",
        "--workspace",
        "a",
        "--name",
        "acme",
        "--event-set-id",
        "7300000000000000099",
        input=f"{TOKEN}\n",
    )
    assert (code, out.splitlines()[-1]) == (2, "error: name: an event set named 'acme' exists")
    code, out = run(
        "event-set",
        "add",
        "--workspace",
        "a",
        "--name",
        "other",
        "--event-set-id",
        EVENT_SET_ID,
        input=f"{TOKEN}\n",
    )
    assert code == 2
    assert out.splitlines()[-1] == f"error: event_set_id: {EVENT_SET_ID} is already configured"
    # The default workspace knows neither.
    add_event_set("default", "acme")
    listed = {w: run("event-set", "list", "--workspace", w)[1] for w in ("default", "a", "b")}
    assert all(out.count("acme") == 1 for out in listed.values())
    assert run("event-set", "list")[1] == listed["default"]


UNKNOWN_WORKSPACE_COMMANDS = [
    ["event-set", "list"],
    ["event-set", "pause", "acme"],
    ["event-set", "resume", "acme"],
    ["event-set", "verify", "acme"],
    ["event-set", "set-token", "acme", "--token", "new-token-1234"],
    ["mapping", "list", "acme"],
    ["mapping", "export", "acme"],
    ["mapping", "remove", "1"],
    ["mapping", "set", "--event-set", "acme", "--trigger", "lead.sold", "--event", "Purchase"],
    ["send", "--event-set", "acme", "--lead-id", "L-1", "--type", "lead.submitted"],
    ["history", "L-1"],
    ["status"],
    ["replay", "--all"],
    ["diagnose"],
    ["erase-lead", "L-1", "--yes"],
]


@pytest.mark.parametrize("command", UNKNOWN_WORKSPACE_COMMANDS, ids=" ".join)
@pytest.mark.parametrize("name", ["nosuch", "Not-A-Name", "a\r\nX-Injected: 1"])
def test_an_unknown_workspace_is_exit_2_without_echo(
    two: dict[str, int], command: list[str], name: str
) -> None:
    before = {w: rows_of(i) for w, i in two.items()}
    code, out = run(*command, "--workspace", name)
    assert (code, out) == (2, NO_WORKSPACE + "\n")
    assert {w: rows_of(i) for w, i in two.items()} == before


def test_bs_event_sets_and_mappings_are_not_found_from_a_like_nothing(
    two: dict[str, int], tmp_path: Path
) -> None:
    add_event_set("b", "b-only", "7300000000000000002")
    set_mapping("b", "b-only")
    b_rows = rows_of(two["b"])
    b_mapping = max(m["id"] for m in b_rows["mappings"])

    def same_answer(*command: str) -> None:
        """`command` with b's name, and with a name nothing has, answer alike from a."""
        named_b = run(*[part.format(ref="b-only") for part in command], "--workspace", "a")
        named_nothing = run(*[part.format(ref="zz-none") for part in command], "--workspace", "a")
        assert named_b[0] == 2, named_b
        assert named_b == (named_nothing[0], named_nothing[1].replace("zz-none", "b-only"))

    for command in (
        ("event-set", "pause", "{ref}"),
        ("event-set", "resume", "{ref}"),
        ("event-set", "verify", "{ref}"),
        ("event-set", "set-token", "{ref}", "--token", "new-token-1234"),
        ("mapping", "list", "{ref}"),
        ("mapping", "export", "{ref}"),
        ("mapping", "set", "--event-set", "{ref}", "--trigger", "lead.sold", "--event", "Lead"),
        ("replay", "--event-set", "{ref}"),
        ("diagnose", "{ref}"),
    ):
        same_answer(*command)
    # A mapping by id: b's and one that does not exist get the same answer.
    for command in (
        ("mapping", "remove", "{id}"),
        (
            "mapping",
            "set",
            "--id",
            "{id}",
            "--event-set",
            "acme",
            "--trigger",
            "x.y",
            "--event",
            "Lead",
        ),
    ):
        answers = [
            run(*[p.format(id=mapping_id) for p in command], "--workspace", "a")
            for mapping_id in (b_mapping, 999)
        ]
        assert answers[0][0] == 2
        assert answers[0] == (answers[1][0], answers[1][1].replace("999", str(b_mapping)))
    # A YAML file naming b's event set, or b's mapping ids.
    exported = run("mapping", "export", "b-only", "--workspace", "b")[1]
    yaml_file = tmp_path / "b.yaml"
    yaml_file.write_text(exported, encoding="utf-8")
    code, out = run("mapping", "import", str(yaml_file), "--workspace", "a")
    assert code == 2 and "unknown event set 'b-only'" in out
    foreign_ids = exported.replace("event_set: b-only", "event_set: acme")
    yaml_file.write_text(foreign_ids, encoding="utf-8")
    code, out = run("mapping", "import", str(yaml_file), "--workspace", "a")
    assert code == 2 and f"event set 'acme' has no mapping {b_mapping}" in out
    assert rows_of(two["b"]) == b_rows


def test_send_history_replay_erase_and_diagnose_in_a_never_touch_b(
    two: dict[str, int], simulator: SimulatorControl, eager: None
) -> None:
    for workspace, email in (("a", "ann@a.example"), ("b", "bob@b.example")):
        code, out = run(
            "send",
            "--workspace",
            workspace,
            "--event-set",
            "acme",
            "--lead-id",
            "L-1",  # the same lead id in both: two leads
            "--type",
            "lead.submitted",
            "--email",
            email,
            "--attr",
            f"origin={workspace}",
        )
        assert code == 0, out
    history_a = json.loads(run("history", "L-1", "--workspace", "a", "--json")[1])
    assert [t["attributes"] for t in history_a["triggers"]] == [{"origin": "a"}]
    history_b = json.loads(run("history", "L-1", "--workspace", "b", "--json")[1])
    assert history_b["match_keys"] != history_a["match_keys"]
    assert "acme: delivered=1" in run("status", "--workspace", "a")[1]
    assert "triggers: none" in run("status")[1]  # the default workspace has none of it

    # Both postbacks failed (say, a parameter error); a's replay re-queues a's only.
    with session_scope(workspace=ALL_WORKSPACES) as session:
        session.execute(update(Postback).values(status=PostbackStatus.FAILED))
        session.commit()
    b_rows = rows_of(two["b"])
    history_b = json.loads(run("history", "L-1", "--workspace", "b", "--json")[1])
    assert run("replay", "--all", "--dry-run", "--workspace", "a")[1] == (
        "1 postback(s) would be replayed\n"
    )
    code, out = run("replay", "--all", "--workspace", "a")
    assert code == 0 and "1 postback(s) re-queued" in out
    # Diagnostics of a: a's event set only.
    reports = json.loads(run("diagnose", "--workspace", "a", "--json")[1])
    assert [r["event_set_id"] for r in reports] == [
        e["id"] for e in rows_of(two["a"])["event_sets"]
    ]
    # Erasing a's L-1 leaves b's L-1, its keys, attributes, bodies and audit as they were.
    code, out = run("erase-lead", "L-1", "--yes", "--workspace", "a")
    assert code == 0 and "lead L-1 erased" in out
    assert rows_of(two["b"]) == b_rows
    assert rows_of(two["a"])["leads"] == []
    assert json.loads(run("history", "L-1", "--workspace", "b", "--json")[1]) == history_b
    with session_scope(workspace=ALL_WORKSPACES) as session:
        erased = session.scalars(select(AuditEntry).where(AuditEntry.action == "lead.erase")).all()
    assert [e.workspace_id for e in erased] == [two["a"]]


def test_an_env_reference_is_the_operators_and_a_missing_variable_is_named_to_it(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POSTBACK_TOKEN_A_CRM", raising=False)
    assert run("workspace", "add", "a")[0] == 0
    code, out = run(
        "event-set",
        "add",
        "--workspace",
        "a",
        "--name",
        "acme",
        "--event-set-id",
        EVENT_SET_ID,
        "--advertiser-id",
        "7000000001",
        "--token",
        "env:POSTBACK_TOKEN_A_CRM",
    )
    assert code == 0, out
    code, out = run("event-set", "verify", "acme", "--workspace", "a")
    assert code == 1 and "environment variable POSTBACK_TOKEN_A_CRM is not set" in out
    assert "env:POSTBACK_TOKEN_A_CRM" in run("event-set", "list", "--workspace", "a")[1]
