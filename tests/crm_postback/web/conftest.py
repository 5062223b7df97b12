"""Fixtures for the HTTP API: the app in-process (TestClient), a live uvicorn server, API keys."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from crm_postback.configuration.api_keys import create_key
from crm_postback.simulator import SimulatorControl
from crm_postback.web.app import create_app
from models import DEFAULT_WORKSPACE_ID
from models.db import session_scope
from tests.conftest import app_in_thread  # type: ignore[import-not-found]

RAW_EMAIL = "Jane.Doe+web@Example.com"
RAW_PHONE = "(213) 373-4253"
RAW_FORMS = (RAW_EMAIL, RAW_EMAIL.lower(), "2133734253", "+12133734253", "373-4253")


def trigger(kind: str, lead: str = "L-1", minutes_ago: float = 10, **extra: Any) -> dict[str, Any]:
    occurred = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return {
        "type": kind,
        "lead_id": lead,
        "event_set": "acme",
        "occurred_at": occurred.isoformat(),
        **extra,
    }


def submitted(lead: str = "L-1", **keys: Any) -> dict[str, Any]:
    match_keys = {"email": RAW_EMAIL, "phone": RAW_PHONE, "ttclid": "E.C.P.click-1", **keys}
    return trigger("lead.submitted", lead, minutes_ago=30, match_keys=match_keys)


def new_key(
    name: str = "acme-router", workspace_id: int = DEFAULT_WORKSPACE_ID, **options: Any
) -> str:
    """A key of `workspace_id` (the default one) on the configured database; the options are
    create_key's (event_sets, permissions, rate_limit)."""
    with session_scope(workspace=workspace_id) as session:
        new = create_key(session, name, **options)
        session.commit()
    return new.key


@pytest.fixture
def make_key(sqlite_db: str) -> Callable[..., str]:
    return new_key


@pytest.fixture
def api_key(make_key: Callable[..., str]) -> str:
    return make_key("acme-router")


@pytest.fixture
def anonymous(sqlite_db: str) -> Iterator[TestClient]:
    with TestClient(create_app()) as client:
        yield client


@pytest.fixture
def client(sqlite_db: str, api_key: str) -> Iterator[TestClient]:
    headers = {"Authorization": f"Bearer {api_key}"}
    with TestClient(create_app(), headers=headers) as client:
        yield client


@pytest.fixture
def ready(
    sqlite_db: str, simulator: SimulatorControl, eager: None, make_event_set: Callable[..., int]
) -> SimulatorControl:
    """An event set `acme` (lead.submitted -> Lead, lead.sold -> lead_sold), tasks inline."""
    make_event_set()
    return simulator


@pytest.fixture
def live_server(sqlite_db: str) -> Iterator[str]:
    """The app on a real uvicorn server in a thread of this process (same settings, same DB)."""
    with app_in_thread(create_app()) as url:
        yield url


OTHER_EVENT_SET_ID = "7300000000000000002"
OTHER_TOKEN = "test-token-globex-654321"


@pytest.fixture
def make_workspace() -> Callable[[str], int]:
    """A new workspace's id."""
    from crm_postback.configuration.workspaces import add_workspace
    from models.workspace_scope import ALL_WORKSPACES

    def make(name: str) -> int:
        with session_scope(workspace=ALL_WORKSPACES) as session:
            workspace = add_workspace(session, name)
            session.commit()
            return workspace.id

    return make


@pytest.fixture
def make_event_set_in() -> Callable[..., int]:
    """An event set of the workspace given, mapping lead.submitted -> Lead, lead.sold ->
    lead_sold (as the `make_event_set` fixture does in the default workspace)."""
    from crm_postback.configuration.audit import SYSTEM_ACTOR
    from crm_postback.configuration.event_set_service import create_event_set
    from crm_postback.configuration.mapping_service import add_mapping
    from crm_postback.core.settings import get_settings

    def make(
        workspace_id: int, name: str, source_id: str, token: str = OTHER_TOKEN, **options: Any
    ) -> int:
        with session_scope(workspace=workspace_id) as session:
            event_set = create_event_set(
                session,
                get_settings(),
                name=name,
                source_id=source_id,
                access_token=token,
                actor=SYSTEM_ACTOR,
                **options,
            )
            for trigger_type, event_name in (
                ("lead.submitted", "Lead"),
                ("lead.sold", "lead_sold"),
            ):
                add_mapping(
                    session,
                    event_set,
                    trigger_type=trigger_type,
                    event_name=event_name,
                    actor=SYSTEM_ACTOR,
                )
            session.commit()
            return event_set.id

    return make


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
