"""`postback send` with every match key, `postback lead-keys`, and what `postback history`
says about them: stored hashed, dropped with a warning (or refused with --strict), and no raw
value printed back by any of the three."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from crm_postback.cli import app
from crm_postback.simulator import SimulatorControl
from models import Lead, Postback, PostbackStatus, Trigger
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES

runner = CliRunner()
WEB = "CPIXEL0000000001"
RAW = {
    "email": "Jane.Doe@Example.com",
    "phone": "+12133734253",
    "first-name": "Mary-Ann",
    "last-name": "O'Neil",
    "city": "San Francisco",
    "state": "CA",
    "country": "US",
    "zip-code": "94103",
}


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def send(lead: str, *options: str) -> tuple[int, str, str]:
    return run(
        "send", "--event-set", "acme", "--lead-id", lead, "--type", "lead.submitted", *options
    )


def raw_options() -> list[str]:
    return [part for name, value in RAW.items() for part in (f"--{name}", value)]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def lead_row(lead: str) -> Lead:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        row = session.scalars(select(Lead).where(Lead.lead_ref == lead)).one()
        session.expunge(row)
        return row


def assert_no_raw(*texts: str) -> None:
    for text in texts:
        # The values long enough not to appear by chance ("US" is in "en-US").
        for value in (*(v for v in RAW.values() if len(v) > 2), "jane.doe@example.com", "maryann"):
            assert value not in text


@pytest.fixture
def web(sqlite_db: str, make_event_set: Callable[..., int]) -> None:
    make_event_set("acme", WEB, kind="web")


def test_send_takes_every_key_the_api_takes(
    web: None, simulator: SimulatorControl, eager: None
) -> None:
    code, out, err = send(
        "L-1",
        *raw_options(),
        "--email",
        "second@example.com",
        "--ttp",
        "ttp-cookie-1",
        "--locale",
        "en-US",
        "--page-url",
        "https://shop.example.com/thanks?utm_source=tt",
        "--page-referrer",
        "https://www.tiktok.com/",
        "--event-id",
        "pixel-ev-1",
        "--limited-data-use",
    )
    assert code == 0, out + err
    assert "trigger 1 accepted" in out and err == ""
    assert_no_raw(out, err)
    lead = lead_row("L-1")
    assert lead.email_hashes == [sha("jane.doe@example.com"), sha("second@example.com")]
    assert lead.first_name_hash == sha("maryann") and lead.country_hash == sha("us")
    assert lead.city_hash is not None and lead.zip_code_hash is not None
    assert (lead.ttp, lead.locale) == ("ttp-cookie-1", "en-US")
    assert lead.page_url == "https://shop.example.com/thanks?utm_source=tt"
    assert lead.page_referrer == "https://www.tiktok.com/"
    with session_scope(workspace=ALL_WORKSPACES) as session:
        trigger = session.scalars(select(Trigger)).one()
        assert (trigger.event_id, trigger.limited_data_use) == ("pixel-ev-1", True)
        postback = session.scalars(select(Postback)).one()
        assert postback.event_id == "pixel-ev-1"
        assert postback.payload is not None and postback.payload["limited_data_use"] is True

    code, out, err = run("history", "L-1")
    assert code == 0, out + err
    assert "caller's event_id=pixel-ev-1" in out
    assert "keys: " in out and "email" in out.split("keys: ", 1)[1].splitlines()[0]
    assert_no_raw(out)


def test_a_bad_key_is_a_warning_or_with_strict_a_refusal_never_echoed(web: None) -> None:
    code, out, err = send("L-1", "--phone", "12", "--email", RAW["email"], "--no-limited-data-use")
    assert code == 0, out + err
    assert "warning: match_keys.phone" in err and "12" not in err.replace("match_keys", "")
    with session_scope(workspace=ALL_WORKSPACES) as session:
        trigger = session.scalars(select(Trigger)).one()
        assert (trigger.dropped_keys, trigger.limited_data_use) == (["phone"], False)
    code, out, err = send("L-2", "--phone", "12", "--strict")
    assert code != 0 and "match_keys.phone" in out + err
    code, out, _ = run("history", "L-1")
    assert "dropped at intake: phone" in out


def test_lead_keys_stores_merges_and_says_when_nothing_was_stored(web: None) -> None:
    code, out, err = run("lead-keys", "L-7", *raw_options(), "--ttp", "t-1")
    assert (code, out, err) == (0, "lead L-7: stored\n", "")
    lead = lead_row("L-7")
    assert lead.phone_hashes == [sha("+12133734253")] and lead.state_hash == sha("ca")
    assert lead.limited_data_use is None

    code, out, err = run("lead-keys", "L-7", "--no-limited-data-use", "--ttclid", "E.C.P.1")
    assert code == 0 and out == "lead L-7: stored\n"
    lead = lead_row("L-7")
    assert (lead.limited_data_use, lead.ttclid, lead.ttp) == (False, "E.C.P.1", "t-1")

    code, out, err = run("lead-keys", "L-7", "--email", "jane@")
    assert code == 0 and out == "lead L-7: nothing stored (see the warnings)\n"
    assert err == "warning: match_keys.email: not an email address; dropped\n"
    code, out, err = run("lead-keys", "L-7", "--email", "jane@", "--strict")
    assert code != 0 and "match_keys.email" in out + err and "jane@" not in out + err
    assert lead_row("L-7").email_hashes == [sha("jane.doe@example.com")]

    code, out, err = run("lead-keys", "L-8")
    assert code == 2 and "give at least one match key" in err
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalars(select(Lead.lead_ref).order_by(Lead.lead_ref)).all() == ["L-7"]
    assert_no_raw(out, err)


def test_lead_keys_is_scoped_to_the_workspace(web: None) -> None:
    code, _, err = run("lead-keys", "L-1", "--ttclid", "x", "--workspace", "nope")
    assert code != 0 and "there is no workspace of this name" in err
    assert run("workspace", "add", "globex")[0] == 0
    assert run("lead-keys", "L-1", "--ttclid", "g", "--workspace", "globex")[0] == 0
    assert run("lead-keys", "L-1", "--ttclid", "d")[0] == 0
    with session_scope(workspace=ALL_WORKSPACES) as session:
        rows = session.execute(select(Lead.workspace_id, Lead.ttclid).order_by(Lead.id)).all()
    assert [ttclid for _, ttclid in rows] == ["g", "d"] and rows[0][0] != rows[1][0]
    assert "g" not in run("history", "L-1")[1].split("ttclid: ", 1)[1].splitlines()[0]


def test_history_gives_the_reason_of_every_undelivered_final_status(
    web: None, simulator: SimulatorControl, eager: None
) -> None:
    # Only a name: nothing TikTok can match the event with.
    assert send("L-1", "--first-name", "Mary")[0] == 0
    code, out, _ = run("history", "L-1")
    assert code == 0
    assert PostbackStatus.NO_MATCH_KEY in out
    reason = [line for line in out.splitlines() if "reason:" in line]
    assert len(reason) == 1 and "match" in reason[0]

    simulator.set_faults(http_5xx_rate=1.0)
    assert send("L-2", "--email", RAW["email"])[0] == 0
    code, out, err = run("withdraw-consent", "L-2")
    assert code == 0, out + err
    code, out, _ = run("history", "L-2")
    assert "consent withdrawn at " in out and PostbackStatus.CONSENT_WITHDRAWN in out
    assert any("reason:" in line and "withdrew consent" in line for line in out.splitlines())
    assert_no_raw(out)
