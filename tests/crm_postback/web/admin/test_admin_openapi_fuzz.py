"""The admin JSON API under property-based fire, on SQLite and PostgreSQL.

Two runs: schemathesis over the published document (/admin/api/openapi.json: paths, query
parameters, methods), signed in with a personal admin token and with a browser session (its
cookie and CSRF header), and hypothesis JSON bodies for every route that reads one (the
document declares no request bodies: they are read by hand). Each answer is below 500, matches
the document, is JSON `{"errors": [...]}` when it refuses, and never holds a value that was
sent (the names of event sets, triggers and events excepted, as docs/http-api.md says of event
sets, unless they look like an email address or a phone number).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_postback.configuration.admin_accounts import add_member_in, create_token, create_user
from crm_postback.simulator import SimulatorControl
from crm_postback.web.admin import COOKIE
from crm_postback.web.app import create_app
from models import DEFAULT_WORKSPACE_ID, Role
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.crm_postback.web.admin.conftest import (  # type: ignore[import-not-found]
    PASSWORD,
    login,
)
from tests.crm_postback.web.no_echo import (  # type: ignore[import-not-found]
    assert_refusal_echoes_nothing,
)

# Loaded at import (the lazy fixture loader does not work with pytest 9); the requests go to
# an app built in each test (case.call(app=...)), after its database and settings are set.
schema = schemathesis.openapi.from_asgi("/admin/api/openapi.json", create_app())

FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass
class Admin:
    app: FastAPI
    event_set: str
    mapping_ids: list[int]
    headers: dict[str, str]
    cookies: dict[str, str]


# A browser session (cookie and CSRF header) or a personal admin token, on SQLite; the token
# on PostgreSQL too, which refuses what SQLite stores (NUL characters, for one).
SIGN_INS = [
    pytest.param(("sqlite_db", "token"), id="token-sqlite"),
    pytest.param(("sqlite_db", "session"), id="session-sqlite"),
    pytest.param(("pg_db", "token"), id="token-postgres", marks=pytest.mark.integration),
]


@pytest.fixture(params=SIGN_INS)
def signed_in(
    request: pytest.FixtureRequest,
    simulator: SimulatorControl,
    make_event_set: Callable[..., int],
) -> Iterator[Admin]:
    """An event set `acme` with two mappings, and alice signed in one way or the other."""
    from sqlalchemy import select

    from crm_postback.configuration.mapping_service import list_mappings
    from models import EventSet

    database, how = request.param
    request.getfixturevalue(database)
    make_event_set(name="acme")
    with session_scope(workspace=ALL_WORKSPACES) as session:
        user = create_user(session, "alice", PASSWORD)
        add_member_in(session, DEFAULT_WORKSPACE_ID, user, Role.OWNER)
        token = create_token(session, user, "fuzz").token
        event_set = session.scalars(select(EventSet).filter_by(name="acme")).one()
        mapping_ids = [m.id for m in list_mappings(session, event_set)]
        session.commit()
    app = create_app()
    with TestClient(app, base_url="http://testserver") as browser:
        if how == "token":
            yield Admin(app, "acme", mapping_ids, {"Authorization": f"Bearer {token}"}, {})
        else:
            csrf = login(browser)
            cookie = browser.cookies.get(COOKIE)
            assert cookie
            yield Admin(app, "acme", mapping_ids, {"X-CSRF-Token": csrf}, {COOKIE: cookie})


def real_references(case: Any, admin: Admin, data: st.DataObject) -> None:
    """Half the time, point the case at the event set and a mapping that exist."""
    parameters = case.path_parameters or {}
    if "reference" in parameters and data.draw(st.booleans(), label="existing event set"):
        parameters["reference"] = admin.event_set
    if "mapping_id" in parameters and data.draw(st.booleans(), label="existing mapping"):
        parameters["mapping_id"] = data.draw(st.sampled_from(admin.mapping_ids), label="mapping")


@schema.parametrize()
@schema.given(data=st.data())
@FUZZ
def test_no_generated_request_breaks_a_promise(
    case: Any, data: st.DataObject, signed_in: Admin
) -> None:
    real_references(case, signed_in, data)
    response = case.call(app=signed_in.app, headers=signed_in.headers, cookies=signed_in.cookies)
    assert response.status_code < 500, response.text[:2000]
    sent = {**(case.path_parameters or {}), **(case.query or {})}
    assert_refusal_echoes_nothing(response.status_code, response.text, sent)
    # Excluded, as for the ingest API: a JSON schema cannot say "an event set that exists".
    excluded = [
        schemathesis.checks.positive_data_acceptance,
        schemathesis.checks.negative_data_rejection,
    ]
    if case.method.upper() == "GET" and case.path.endswith("mappings.yaml"):
        # The export is documented as YAML text; schemathesis parses YAML and would compare
        # the parsed mapping with {"type": "string"}.
        excluded.append(schemathesis.checks.response_schema_conformance)
    case.validate_response(response, excluded_checks=excluded)


PERSONAL = st.sampled_from(
    ["jane.doe@example.com", "+12133734253", "(213) 373-4253", "E.C.P.secret-click-id"]
)
TEXT = st.text(max_size=30) | PERSONAL | st.sampled_from(["acme", "lead.sold", "Purchase"])
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=10,
)
FIELDS = [
    "name",
    "event_set_id",
    "access_token",
    "kind",
    "advertiser_id",
    "lead_event_source",
    "default_currency",
    "test_event_code",
    "reason",
    "trigger",
    "event",
    "enabled",
    "when",
    "properties",
    "version",
    "id",
    "ids",
    "event_set",
    "trigger_id",
    "mapping",
    "replaces",
]
TRIGGER = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["lead.sold", "lead.submitted"]) | TEXT,
        "lead_id": TEXT,
        "event_set": st.just("acme") | TEXT,
        "occurred_at": st.sampled_from(["2024-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00"])
        | TEXT,
    },
    optional={"attributes": st.dictionaries(TEXT, VALUES, max_size=4), "match_keys": VALUES},
)
MAPPING = st.fixed_dictionaries(
    {"trigger": st.just("lead.sold") | TEXT, "event": st.just("Purchase") | TEXT},
    optional={
        "when": st.lists(TEXT | VALUES, max_size=3),
        "properties": st.dictionaries(
            st.sampled_from(["value_from", "currency", "content_type", "description"]), VALUES
        ),
        "enabled": VALUES,
    },
)
BODIES = (
    st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=6)
    | st.fixed_dictionaries({}, optional={"trigger": TRIGGER, "mapping": MAPPING})
    | MAPPING
    | VALUES
)
WRITES = [
    ("POST", "/admin/api/event-sets"),
    ("PATCH", "/admin/api/event-sets/{reference}"),
    ("POST", "/admin/api/event-sets/{reference}/pause"),
    ("POST", "/admin/api/event-sets/{reference}/mappings"),
    ("PUT", "/admin/api/event-sets/{reference}/mappings/{mapping_id}"),
    ("POST", "/admin/api/event-sets/{reference}/preview"),
    ("POST", "/admin/api/postbacks/replay"),
]


@given(
    route=st.sampled_from(WRITES),
    body=BODIES,
    reference=st.just("acme") | TEXT.filter(lambda t: "/" not in t and t.strip()),
    data=st.data(),
)
@FUZZ
def test_no_generated_body_breaks_a_promise(
    route: tuple[str, str], body: Any, reference: str, data: st.DataObject, signed_in: Admin
) -> None:
    method, template = route
    mapping_id = data.draw(st.sampled_from([*signed_in.mapping_ids, 0, 10**23]), label="mapping")
    path = template.format(reference=quote(reference, safe=""), mapping_id=mapping_id)
    with TestClient(signed_in.app, base_url="http://testserver") as client:
        client.cookies.update(signed_in.cookies)
        response = client.request(
            method, path, content=json.dumps(body).encode(), headers=signed_in.headers
        )
    assert response.status_code < 500, response.text[:2000]
    assert response.headers["content-type"].startswith("application/json"), response.text[:300]
    sent = {"reference": reference, "body": body}
    assert_refusal_echoes_nothing(response.status_code, response.text, sent)


@given(text=st.text(max_size=200) | PERSONAL, dry_run=st.booleans())
@FUZZ
def test_no_generated_yaml_breaks_a_promise(text: str, dry_run: bool, signed_in: Admin) -> None:
    with TestClient(signed_in.app, base_url="http://testserver") as client:
        client.cookies.update(signed_in.cookies)
        response = client.put(
            f"/admin/api/event-sets/acme/mappings.yaml?dry_run={str(dry_run).lower()}",
            content=text.encode("utf-8", "surrogatepass"),
            headers=signed_in.headers,
        )
    assert response.status_code < 500, response.text[:2000]
    assert_refusal_echoes_nothing(response.status_code, response.text, {"file": text})
