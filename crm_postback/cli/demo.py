"""`postback demo`: simulator + real worker on SQLite and the filesystem broker, one lead's life."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from crm_postback.core.data_dir import ensure_private_dir

if TYPE_CHECKING:
    from crm_postback.simulator import SimulatorControl

DEMO_DIR = Path(".postback/demo")
EVENT_SET_ID = "7300000000000000001"
DEMO_TOKEN = "demo-access-token-0123456789"
LEAD = "L-1001"


def _step(text: str) -> None:
    print(f"\n== {text}")


def fresh_data_dir(path: Path = DEMO_DIR) -> Path:
    """An empty data dir, owner-only like any other (it gets the same SQLite file and keys)."""
    shutil.rmtree(path, ignore_errors=True)
    return ensure_private_dir(path)


def run_demo() -> int:
    fresh_data_dir()
    from crm_postback.simulator import SimulatorControl, SimulatorServer

    simulator = SimulatorServer(port=0)
    simulator.start()
    control = SimulatorControl(simulator.url)
    control.register_event_set(EVENT_SET_ID, DEMO_TOKEN, kind="crm", advertiser_id="7000000001")
    os.environ.update(
        POSTBACK_DATA_DIR=str(DEMO_DIR),
        DATABASE_URL="",
        BROKER_URL="filesystem://",
        TIKTOK_API_BASE_URL=simulator.url,
        SWEEP_INTERVAL_SECONDS="2",
    )
    from crm_postback.core.settings import reset_settings_cache

    reset_settings_cache()
    worker = None
    try:
        _configure()
        worker = _start_worker()
        ok = _lifecycle(control)
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
        simulator.stop()
    print(
        "\nDemo",
        "passed" if ok else "FAILED",
        f"(data in {DEMO_DIR}, worker log in {DEMO_DIR / 'worker.log'})",
    )
    return 0 if ok else 1


def _configure() -> None:
    from crm_postback.commands.manage_event_sets import AddEventSet, add_event_set
    from crm_postback.commands.manage_mappings import AddMapping, MappingInput, add_mapping
    from crm_postback.commands.unit_of_work import Actor
    from crm_postback.core.settings import get_settings
    from mappings.rules import parse_condition
    from models.migrate import upgrade

    settings = get_settings()
    _step(f"Embedded defaults: {settings.effective_database_url}, broker {settings.broker_url}")
    upgrade(settings.effective_database_url)
    actor = Actor.cli()
    event_set = add_event_set(
        AddEventSet(
            name="acme-crm",
            source_id=EVENT_SET_ID,
            access_token=DEMO_TOKEN,
            lead_event_source="AcmeLeads",
            advertiser_id="7000000001",
        ),
        actor,
    )
    mappings = [
        MappingInput(trigger_type="lead.submitted", event_name="Lead"),
        MappingInput(
            trigger_type="lead.sold", event_name="lead_sold", properties={"currency": "USD"}
        ),
        MappingInput(
            trigger_type="offer.conversion",
            event_name="Purchase",
            conditions=[parse_condition("payout > 0")],
            properties={
                "value_from": "payout",
                "currency": "USD",
                "order_id_from": "offer_id",
                "content_type": "product",
            },
        ),
    ]
    print("event set acme-crm (CRM event set", EVENT_SET_ID + ")")
    for mapping in mappings:
        saved = add_mapping(AddMapping(event_set.id, mapping), actor)
        print("  mapping:", saved.summary)


def _start_worker() -> subprocess.Popen[bytes]:
    log = open(DEMO_DIR / "worker.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.app",
            "worker",
            "--beat",
            "--pool=solo",
            "--loglevel=INFO",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )


def _lifecycle(control: SimulatorControl) -> bool:
    from crm_postback.api import InputRejected, enqueue_trigger

    now = datetime.now(UTC).replace(microsecond=0)
    steps = [
        {
            "type": "lead.submitted",
            "lead_id": LEAD,
            "event_set": "acme-crm",
            "occurred_at": (now - timedelta(minutes=30)).isoformat(),
            "match_keys": {
                "email": " Jane.Doe@Example.com ",
                "phone": "(213) 373-4253",
                "ttclid": "E.C.P.demo-click-123",
                "tiktok_lead_id": "7311111111111111111",
                "first_name": "Jane",
                "last_name": "Doe",
                "zip_code": "90001",
                "country": "US",
            },
        },
        {
            "type": "lead.sold",
            "lead_id": LEAD,
            "event_set": "acme-crm",
            "occurred_at": (now - timedelta(minutes=20)).isoformat(),
            "attributes": {"value": 42.5, "buyer_id": "B17"},
        },
        {
            "type": "offer.conversion",
            "lead_id": LEAD,
            "event_set": "acme-crm",
            "occurred_at": (now - timedelta(minutes=5)).isoformat(),
            "attributes": {"payout": 120, "offer_id": "offer-991"},
        },
        {
            "type": "buyer.accepted",
            "lead_id": LEAD,
            "event_set": "acme-crm",
            "occurred_at": now.isoformat(),
            "attributes": {"buyer_id": "B17"},
        },
    ]
    _step("The routing system reports four lifecycle changes for lead " + LEAD)
    for step in steps:
        accepted = enqueue_trigger(step)
        print(f"  {step['type']:<17} -> trigger {accepted.trigger_id} stored and queued")

    _step("A key that does not normalise is dropped and named; the rest of the trigger is kept")
    bad = dict(
        steps[0],
        lead_id="L-1002",
        match_keys={"email": "sam@example.com", "phone": "+2132435345"},
    )
    for warning in enqueue_trigger(bad).warnings:
        print("  warning:", warning)
    _step("With strict=True the same trigger is refused (raw values are never echoed)")
    try:
        enqueue_trigger(dict(bad, type="lead.sold"), strict=True)
    except InputRejected as error:
        print("  refused:", error)

    received = control.wait_for_events(4, timeout=60)
    _step(f"What TikTok (the simulator) accepted: {len(received)} events")
    for event in received:
        print(f"  {event['event']}  request_id={event['request_id']}")
        print("    " + json.dumps(event["payload"], indent=None, sort_keys=True))
    time.sleep(0.5)
    _step("postback history " + LEAD)
    subprocess.run([sys.executable, "-m", "crm_postback.cli", "history", LEAD], check=False)
    _step("Match quality of acme-crm (postback diagnose shows it too)")
    _print_match_quality()
    expected = {"Lead", "lead_sold", "Purchase"}
    got = {event["event"] for event in received}
    raw = ("Jane", "373-4253", "90001", "sam@example.com", "2132435345")
    raw_leaked = any(value in json.dumps(e["payload"]) for e in received for value in raw)
    if raw_leaked:
        print("  !! raw PII reached the simulator")
    return got == expected and not raw_leaked


def _print_match_quality() -> None:
    from crm_postback.operations.match_quality import match_quality_of
    from models.db import session_scope
    from models.workspace_scope import ALL_WORKSPACES

    with session_scope(workspace=ALL_WORKSPACES) as session:
        for quality in match_quality_of(session).values():
            print("  " + quality.summary)
