"""The cross-workspace crawl: every route of the ingest API, the admin pages and the admin JSON
API, called with workspace A's credentials and workspace B's ids, finds nothing of B and
changes nothing of B, on SQLite and PostgreSQL.

The routes come from the app's own route table (the admin app mounted under /admin included),
so a new route is crawled automatically, and fails `test_every_route_is_crawled_or_skipped`
until it is either crawlable here (its path parameters have fillers, its body is known) or in
SKIPPED with a reason.

What a route is expected to answer:
* a route with an id of B in its path (event set, mapping, lead, member, token ...): 404, and
  exactly the answer for an id that exists nowhere (no oracle);
* a route that acts in the caller's own workspace (PUT /v1/leads/{id}: A's lead of that id; a
  list; a create; a replay of ids): any answer but a 5xx, none holding anything of B;
* after the whole crawl, B's rows in every workspace table, and B's admin user and tokens,
  are exactly as before.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.routing import _iter_included_route_candidates
from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.routing import Mount

from crm_postback.api import enqueue_trigger
from crm_postback.configuration.admin_accounts import create_token, create_user
from crm_postback.configuration.api_keys import create_key
from crm_postback.configuration.audit import SYSTEM_ACTOR
from crm_postback.configuration.event_set_service import create_event_set
from crm_postback.configuration.mapping_service import add_mapping
from crm_postback.core.settings import get_settings
from crm_postback.simulator import SimulatorControl
from crm_postback.web.app import create_app
from models import (
    AdminToken,
    AdminUser,
    Base,
    Lead,
    Mapping,
    Postback,
    PostbackStatus,
    Role,
    Trigger,
    Workspace,
    WorkspaceMember,
)
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES, FILTERED_OPTION, workspace_tables
from tests.crm_postback.web.admin.conftest import (  # type: ignore[import-not-found]
    PASSWORD,
    csrf_of,
)

# Routes that hold no workspace data, or that are the door itself.
SKIPPED: dict[tuple[str, str], str] = {
    ("GET", "/openapi.json"): "the published schema of the ingest API: no data",
    ("GET", "/docs"): "Swagger UI of the schema",
    ("GET", "/docs/oauth2-redirect"): "Swagger UI helper",
    ("GET", "/redoc"): "ReDoc of the schema",
    ("GET", "/healthz"): "liveness: no data",
    ("GET", "/readyz"): "readiness: database and broker reachable, no data",
    ("GET", "/metrics"): "the operator's scrape, with its own METRICS_TOKEN; instance-wide",
    ("GET", "/admin/api/openapi.json"): "the published schema of the admin API: no data",
    ("GET", "/admin/api/docs"): "Swagger UI of the admin schema",
    ("GET", "/admin/docs/oauth2-redirect"): "Swagger UI helper",
    ("GET", "/admin/login"): "the login form: before any workspace",
    ("POST", "/admin/login"): "logging in: tests/crm_postback/web/admin/test_login_hostile.py",
    ("POST", "/admin/logout"): "logging out: ends the caller's own session only",
    ("*", "/admin/static"): "the admin's CSS and JavaScript files",
}
# A path parameter that names what to do, not something that exists: the values to try.
ACTIONS: dict[str, tuple[str, ...]] = {
    "/admin/event-sets/{event_set_id}/{action}": (
        "pause",
        "resume",
        "test-code",
        "verify",
        "token",
    ),
    "/admin/event-sets/{event_set_id}/mappings/{mapping_id}/{action}": ("toggle", "delete"),
    "/admin/members/{action}": ("add", "role", "remove"),
    "/admin/users/{action}": ("new", "password", "disable", "enable"),
}
# Instance administration (admin users, workspaces): someone who is not an instance
# administrator is refused by role (403) whatever the id, so no id is told apart.
INSTANCE_ONLY = ("/admin/api/users", "/admin/users", "/admin/api/workspaces", "/admin/workspaces")
# Routes with an id in the path that act in the caller's own workspace by design.
OWN_WORKSPACE = {("PUT", "/v1/leads/{lead_id}")}
PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")
FLASH = re.compile(r'<div class="flash [a-z]+" role="status">[^<]*</div>')

B_ONLY_LEAD = "L-bravo-only"
SHARED_LEAD = "L-1001"
TOKEN_A = "alpha-token-0001-Aq7W"
TOKEN_B = "bravo-token-0002-Bz3K"
SOURCE_A, SOURCE_B = "7300000000000000011", "7300000000000000022"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> str:
    name = "sqlite_db" if request.param == "sqlite" else "pg_db"
    return str(request.getfixturevalue(name))


# --- the route table ---------------------------------------------------------------------


@dataclass(frozen=True)
class RouteInfo:
    method: str
    path: str  # the template, convertors dropped: /v1/leads/{lead_id}

    @property
    def params(self) -> list[str]:
        return PARAM.findall(self.path)

    @property
    def face(self) -> str:
        if self.path.startswith("/admin/api/"):
            return "api"
        if self.path.startswith("/admin"):
            return "page"
        return "ingest"

    @property
    def ids(self) -> list[str]:
        return [name for name in self.params if name != "action"]


def every_route() -> list[RouteInfo]:
    found: list[RouteInfo] = []

    def walk(routes: Any, prefix: str) -> None:
        for route in _iter_included_route_candidates(routes):
            if isinstance(route, Mount):
                inner = list(route.routes)
                if inner:
                    walk(inner, prefix + route.path)
                else:
                    found.append(RouteInfo("*", prefix + route.path))
                continue
            path = PARAM.sub(lambda m: "{" + m.group(1) + "}", prefix + route.path)
            for method in sorted(getattr(route, "methods", None) or {"*"}):
                if method != "HEAD":
                    found.append(RouteInfo(method, path))

    walk(create_app().routes, "")
    return found


# --- two workspaces ------------------------------------------------------------------------


@dataclass
class Side:
    """One workspace's names, ids and credentials."""

    name: str
    workspace_id: int = 0
    event_set_id: int = 0
    event_set_name: str = ""
    source_id: str = ""
    token: str = ""
    mapping_id: int = 0
    lead: str = ""
    postback_ids: list[int] = field(default_factory=list)
    dead_postback_id: int = 0
    key: str = ""
    key_id: int = 0
    key_prefix: str = ""
    username: str = ""
    user_id: int = 0
    admin_token: str = ""
    admin_token_id: int = 0
    admin_token_prefix: str = ""
    audit_ids: list[int] = field(default_factory=list)

    def filler(self, name: str) -> str:
        return self.fillers()[name]

    def fillers(self) -> dict[str, str]:
        return {
            "event_set_id": str(self.event_set_id),
            "reference": self.event_set_name,
            "mapping_id": str(self.mapping_id),
            "lead_id": self.lead,
            "username": self.username,
            "token_id": str(self.admin_token_id),
            "key_id": str(self.key_id),
            "user_id": str(self.user_id),
            "workspace": self.name,
            "postback_id": str(self.dead_postback_id),
            "audit_id": str(self.audit_ids[0]) if self.audit_ids else "1",
        }

    def markers(self) -> list[str]:
        """Strings only this workspace's data holds."""
        return [
            self.event_set_name,
            self.source_id,
            self.token,
            self.token[-4:],
            self.key,
            self.key_prefix,
            self.admin_token,
            self.admin_token_prefix,
            f"{self.name}_sold",
            f"L-{self.name}-only",
        ]


FILLED = frozenset(Side(name="x").fillers())

# Ids that exist in no workspace: the answer for B's must be the same.
NOWHERE = Side(
    name="nowhere",
    event_set_id=987654,
    event_set_name="no-such-set",
    mapping_id=987654,
    lead="L-nowhere",
    username="no-such-user",
    admin_token_id=987654,
    key_id=987654,
    user_id=987654,
    dead_postback_id=987654,
    audit_ids=[987654],
)


def _occurred(minutes_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()


def _make_side(name: str, source_id: str, token: str, simulator: SimulatorControl) -> Side:
    side = Side(name=name, source_id=source_id, token=token, event_set_name=f"{name}-crm")
    simulator.register_event_set(source_id, token, kind="crm", advertiser_id="7000000001")
    with session_scope(workspace=ALL_WORKSPACES) as session:
        workspace = Workspace(name=name)
        session.add(workspace)
        session.flush()
        side.workspace_id = workspace.id
        side.username = f"{name}-owner"
        user = create_user(session, side.username, PASSWORD)
        session.add(WorkspaceMember(workspace_id=workspace.id, user_id=user.id, role=Role.OWNER))
        new_token = create_token(session, user, f"{name}-automation")
        session.commit()
        side.user_id = user.id
        side.admin_token = new_token.token
        token_row = session.scalars(select(AdminToken).where(AdminToken.user_id == user.id)).one()
        side.admin_token_id, side.admin_token_prefix = token_row.id, token_row.token_prefix
    with session_scope(workspace=side.workspace_id) as session:
        event_set = create_event_set(
            session,
            get_settings(),
            name=side.event_set_name,
            source_id=source_id,
            access_token=token,
            actor=SYSTEM_ACTOR,
            lead_event_source=f"{name}-leads",
        )
        add_mapping(
            session, event_set, trigger_type="lead.submitted", event_name="Lead", actor=SYSTEM_ACTOR
        )
        mapping = add_mapping(
            session,
            event_set,
            trigger_type="lead.sold",
            event_name=f"{name}_sold",
            properties={"currency": "USD"},
            actor=SYSTEM_ACTOR,
        )
        new_key = create_key(session, f"{name}-router")
        session.commit()
        side.event_set_id, side.mapping_id = event_set.id, mapping.id
        side.key, side.key_id, side.key_prefix = new_key.key, new_key.id, new_key.key_prefix
    side.lead = f"L-{name}-only"
    for lead in (side.lead, SHARED_LEAD):
        enqueue_trigger(
            {
                "type": "lead.submitted",
                "lead_id": lead,
                "event_set": side.event_set_name,
                "occurred_at": _occurred(30),
                "match_keys": {
                    "email": f"{lead.lower()}@{name}.example.com",
                    "ttclid": f"E.C.P.{name}-click",
                    "ip": "203.0.113.7",
                    "user_agent": f"{name}-browser/1.0",
                },
            },
            workspace=name,
        )
        enqueue_trigger(
            {
                "type": "lead.sold",
                "lead_id": lead,
                "event_set": side.event_set_name,
                "occurred_at": _occurred(10),
                "attributes": {"value": 42.5},
            },
            workspace=name,
        )
    with session_scope(workspace=side.workspace_id) as session:
        postbacks = session.scalars(select(Postback).order_by(Postback.id)).all()
        assert postbacks and all(p.status == PostbackStatus.DELIVERED for p in postbacks)
        postbacks[-1].status = PostbackStatus.DEAD  # something a replay would take
        session.commit()
        side.postback_ids = [p.id for p in postbacks]
        side.dead_postback_id = postbacks[-1].id
    with session_scope(workspace=side.workspace_id) as session:
        from models import AuditEntry

        side.audit_ids = list(session.scalars(select(AuditEntry.id)))
        assert side.audit_ids
    return side


@dataclass
class World:
    a: Side
    b: Side
    page: TestClient  # logged in as A's owner
    csrf: str
    api: TestClient  # A's owner's admin token
    ingest: TestClient  # A's API key


def _login(client: TestClient, username: str) -> str:
    page = client.get("/admin/login")
    response = client.post(
        "/admin/login",
        data={"csrf_token": csrf_of(page.text), "username": username, "password": PASSWORD},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text[:2000]
    return csrf_of(client.get("/admin/event-sets").text)


@pytest.fixture
def world(database: str, simulator: SimulatorControl, eager: None) -> Iterator[World]:
    a = _make_side("alpha", SOURCE_A, TOKEN_A, simulator)
    b = _make_side("bravo", SOURCE_B, TOKEN_B, simulator)
    app = create_app()
    with (
        TestClient(app, base_url="http://testserver") as page,
        TestClient(app, headers={"Authorization": f"Bearer {a.admin_token}"}) as api,
        TestClient(app, headers={"Authorization": f"Bearer {a.key}"}) as ingest,
    ):
        csrf = _login(page, a.username)
        yield World(a, b, page, csrf, api, ingest)


# --- what B has --------------------------------------------------------------------------


def snapshot(side: Side) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the workspace in every workspace table, and its admin user and tokens."""
    tables = {name: Base.metadata.tables[name] for name in sorted(workspace_tables())}
    taken: dict[str, list[tuple[Any, ...]]] = {}
    with session_scope(workspace=ALL_WORKSPACES) as session:
        for name, table in tables.items():
            rows = session.execute(
                select(table).where(table.c.workspace_id == side.workspace_id).order_by(table.c.id),
                execution_options={FILTERED_OPTION: True},
            )
            taken[name] = [tuple(row) for row in rows]
        for model in (AdminUser, AdminToken):
            column = model.id if model is AdminUser else model.user_id
            taken[model.__tablename__] = [
                tuple(row)
                for row in session.execute(
                    select(model.__table__).where(column == side.user_id).order_by(model.id)
                )
            ]
    assert taken["leads"] and taken["postbacks"] and taken["delivery_attempts"]
    assert taken["audit_log"] and taken["api_keys"] and taken["mappings"]
    return taken


# --- the calls ---------------------------------------------------------------------------


@dataclass
class Call:
    route: RouteInfo
    url: str
    kwargs: dict[str, Any]
    expect_404: bool
    label: str

    def sent(self) -> str:
        return self.url + repr(self.kwargs)


def _mapping_form(csrf: str) -> dict[str, Any]:
    return {
        "csrf_token": csrf,
        "trigger": "lead.sold",
        "event_choice": "__custom__",
        "event_custom": "hijacked",
        "enabled": "on",
        "value_mode": "fixed",
        "value_fixed": "1",
        "currency_mode": "fixed",
        "currency_fixed": "EUR",
        "action": "save",
    }


def _trigger_body(event_set: str, lead: str) -> dict[str, Any]:
    return {
        "type": "lead.sold",
        "lead_id": lead,
        "event_set": event_set,
        "occurred_at": _occurred(1),
        "match_keys": {"email": "attacker@example.com", "ttclid": "E.C.P.attacker"},
        "attributes": {"value": 1},
    }


def body_for(route: RouteInfo, target: Side, csrf: str, action: str | None) -> dict[str, Any]:
    """A body the route would act on if the ids were the caller's (so a 404 is about the id,
    not a 422 about the body)."""
    key = (route.method, route.path)
    json_bodies: dict[tuple[str, str], Any] = {
        ("POST", "/v1/triggers"): _trigger_body(target.event_set_name, target.lead),
        ("PUT", "/v1/leads/{lead_id}"): {
            "match_keys": {
                "email": "attacker@example.com",
                "ttclid": "E.C.P.attacker",
                "tiktok_lead_id": "7399999999999999999",
            }
        },
        ("POST", "/admin/api/event-sets"): {
            "name": target.event_set_name,
            "event_set_id": target.source_id or "7300000000000000099",
            "access_token": "attacker-token-xyz",
        },
        ("PATCH", "/admin/api/event-sets/{reference}"): {
            "test_event_code": "HACKED",
            "access_token": "attacker-token-xyz",
        },
        ("POST", "/admin/api/event-sets/{reference}/pause"): {"reason": "hijacked"},
        ("POST", "/admin/api/event-sets/{reference}/mappings"): {
            "trigger": "lead.sold",
            "event": "hijacked",
        },
        ("PUT", "/admin/api/event-sets/{reference}/mappings/{mapping_id}"): {
            "trigger": "lead.sold",
            "event": "hijacked",
            "version": 2,
        },
        ("POST", "/admin/api/event-sets/{reference}/preview"): {
            "trigger": {"type": "lead.sold", "lead_id": target.lead, "attributes": {"value": 1}}
        },
        ("POST", "/admin/api/postbacks/replay"): {"ids": target.postback_ids or [987654]},
        ("POST", "/admin/api/members"): {"username": target.username, "role": "viewer"},
        ("PATCH", "/admin/api/members/{username}"): {"role": "viewer"},
        ("POST", "/admin/api/tokens"): {"label": "crawl"},
        ("POST", "/admin/api/workspaces"): {"name": target.name},
        ("POST", "/admin/api/users"): {"username": target.username, "password": PASSWORD * 2},
        ("PATCH", "/admin/api/users/{username}"): {"active": False},
    }
    if key == ("PUT", "/admin/api/event-sets/{reference}/mappings.yaml"):
        document = "mappings:\n  - trigger: lead.sold\n    event: hijacked\n"
        return {"content": document.encode(), "headers": {"Content-Type": "application/yaml"}}
    if route.face == "page" and route.method == "POST":
        data: dict[str, Any] = {"csrf_token": csrf}
        if route.path.endswith("/mappings/new") or route.path.endswith("/mappings/{mapping_id}"):
            data = _mapping_form(csrf)
        elif route.path == "/admin/event-sets/new" or route.path.endswith("/edit"):
            data.update(
                name=target.event_set_name,
                event_set_id=target.source_id or "7300000000000000099",
                kind="crm",
                access_token="attacker-token-xyz",
                lead_event_source="Hijack",
                currency="USD",
            )
        elif route.path.endswith("/preview"):
            data.update(preview_lead=target.lead, preview_type="lead.sold")
        elif route.path == "/admin/delivery/replay":
            data.update(
                postback_id=[str(i) for i in target.postback_ids] or ["987654"],
                event_set_id=str(target.event_set_id),
                lead=target.lead,
            )
        elif action == "token":
            data.update(access_token="attacker-token-xyz")
        elif action == "test-code":
            data.update(test_event_code="HACKED")
        elif action == "pause":
            data.update(reason="hijacked")
        elif route.path.startswith("/admin/members/") or route.path.startswith("/admin/users/"):
            data.update(username=target.username, role="viewer", password=PASSWORD * 2)
        elif route.path == "/admin/tokens/new":
            data.update(label="crawl")
        elif route.path == "/admin/workspaces/new":
            data.update(name=target.name)
        return {"data": data}
    if key in json_bodies:
        return {"json": json_bodies[key]}
    if route.method in ("POST", "PUT", "PATCH"):
        return {"json": {}}
    return {}


# Query strings that point a listing at B's things.
def queries_for(route: RouteInfo, target: Side) -> list[str]:
    listing = {
        "/admin/delivery": [
            f"lead={target.lead}",
            f"event_set={target.event_set_id}",
            f"lead={SHARED_LEAD}",
        ],
        "/admin/audit": [f"event_set={target.event_set_id}", "scope=instance"],
        "/admin/api/delivery": [
            f"event_set={target.event_set_name}",
            f"event_set={target.event_set_id}",
        ],
        "/admin/api/audit": [
            f"event_set={target.event_set_name}",
            f"event_set={target.event_set_id}",
        ],
        "/admin/event-sets/{event_set_id}/preview": [f"trigger={target.postback_ids[:1]}"]
        if target.postback_ids
        else [],
    }
    if route.method != "GET":
        return [""]
    return ["", *listing.get(route.path, [])]


def fill(route: RouteInfo, sides: dict[str, Side], action: str | None) -> str:
    """The path with each parameter taken from sides[param] (or sides['*'])."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "action":
            assert action is not None
            return action
        return sides.get(name, sides["*"]).filler(name)

    return PARAM.sub(value, route.path)


def calls_for(world: World, route: RouteInfo, target: Side) -> list[Call]:
    """Every call of the route against `target`'s ids (or, where a route has several ids,
    with the caller's own outer ids and target's inner one)."""
    actions: tuple[str | None, ...] = ACTIONS.get(route.path, (None,))
    combos: list[dict[str, Side]] = [{"*": target}]
    ids = route.ids
    for inner in range(1, len(ids)):
        combos.append({**dict.fromkeys(ids[:inner], world.a), "*": target})
    expect_404 = bool(ids) and (route.method, route.path) not in OWN_WORKSPACE
    calls = []
    for action in actions:
        for combo in combos:
            for query in queries_for(route, target):
                url = fill(route, combo, action) + (f"?{query}" if query else "")
                label = f"{route.method} {url}"
                calls.append(
                    Call(route, url, body_for(route, target, world.csrf, action), expect_404, label)
                )
    return calls


def client_of(world: World, route: RouteInfo) -> TestClient:
    return {"api": world.api, "page": world.page, "ingest": world.ingest}[route.face]


def send(world: World, call: Call, **extra: Any) -> Any:
    kwargs = {**call.kwargs, **extra}
    headers = {**kwargs.pop("headers", {}), **extra.pop("headers", {})}
    return client_of(world, call.route).request(
        call.route.method,
        call.url,
        headers=headers or None,
        follow_redirects=False,
        **{k: v for k, v in kwargs.items() if k != "headers"},
    )


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)

    def check(self, condition: bool, message: str) -> None:
        if not condition:
            self.problems.append(message)


def leaks(response: Any, call: Call, b: Side) -> list[str]:
    text = response.text + " ".join(f"{k}: {v}" for k, v in response.headers.items())
    sent = call.sent()
    return [marker for marker in b.markers() if marker and marker not in sent and marker in text]


def crawlable(route: RouteInfo) -> bool:
    return (route.method, route.path) not in SKIPPED and ("*", route.path) not in SKIPPED


# --- the tests -----------------------------------------------------------------------------


def test_every_route_is_crawled_or_skipped() -> None:
    """Every route's path parameters have a filler, and every skip names a route that exists."""
    routes = every_route()
    for route in routes:
        if not crawlable(route):
            continue
        assert route.method != "*", f"{route.path}: a mount without routes is not crawled"
        for name in route.ids:
            assert name in FILLED, f"{route.path}: no filler for {{{name}}} in Side.filler"
        if "action" in route.params:
            assert route.path in ACTIONS, f"{route.path}: name its actions in ACTIONS"
    paths = {(route.method, route.path) for route in routes}
    for skipped in SKIPPED:
        assert skipped in paths, f"SKIPPED names {skipped}, which is no route"
    assert len([r for r in routes if crawlable(r)]) >= 40


def _phase(route: RouteInfo) -> int:
    """Ids of B first; then listings; then the calls that create in A (an event set of B's
    name, A's lead of B's lead id), whose rows later answers may rightly show."""
    if route.ids and (route.method, route.path) not in OWN_WORKSPACE:
        return 0
    if route.method == "GET":
        return 1
    return 2 if not route.ids else 3


def _normalised(text: str, url: str, other_url: str) -> str:
    """The answer with the path segments only this call sent replaced (an answer may name
    the id it was asked for; it must not tell B's from nobody's)."""
    # A flash left by the call before (a page's 303) is shown by whichever page comes next.
    text = re.sub(r"\n\s*\n", "\n", FLASH.sub("", text))
    own = set(url.split("?")[0].split("/")) - set(other_url.split("?")[0].split("/"))
    for segment in sorted(own, key=len, reverse=True):
        text = re.sub(rf"(?<![\w-]){re.escape(segment)}(?![\w-])", "<id>", text)
    return text


def _difference(mine: str, theirs: str) -> str:
    changed = [
        line
        for line in difflib.unified_diff(mine.splitlines(), theirs.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]
    return " | ".join(changed)[:400] or "(same body)"


def test_cross_workspace_crawl(world: World) -> None:
    a, b = world.a, world.b
    before = snapshot(b)
    routes = sorted((route for route in every_route() if crawlable(route)), key=_phase)
    findings = Findings()
    planted = ""  # what the create calls sent: A's rows may now hold B's names
    crawled = 0
    for route in routes:
        for call in calls_for(world, route, b):
            crawled += 1
            response = send(world, call)
            findings.check(response.status_code < 500, f"{call.label}: {response.status_code}")
            leaked = [marker for marker in leaks(response, call, b) if marker not in planted]
            findings.check(not leaked, f"{call.label}: the answer holds B's {leaked}")
            if _phase(route) >= 2:
                planted += call.sent()
            if call.expect_404:
                allowed = {404, 403} if route.path.startswith(INSTANCE_ONLY) else {404}
                findings.check(
                    response.status_code in allowed,
                    f"{call.label}: expected 404, got {response.status_code}",
                )
                twin = _twin(world, call, route)
                assert twin is not None, call.label
                other = send(world, twin)
                mine = _normalised(response.text, call.url, twin.url)
                theirs = _normalised(other.text, twin.url, call.url)
                findings.check(
                    (other.status_code, theirs) == (response.status_code, mine),
                    f"{call.label}: answered {response.status_code} for B's id and "
                    f"{other.status_code} for an id of no workspace: {_difference(mine, theirs)}",
                )
            assert snapshot(b) == before, f"{call.label} changed workspace B"
    assert crawled >= 60
    assert findings.problems == [], "\n".join(findings.problems)
    assert snapshot(b) == before
    # The own-workspace calls acted in A: PUT /v1/leads/{B's lead id} made A's lead of that id.
    with session_scope(workspace=a.workspace_id) as session:
        assert session.scalars(select(Lead.lead_ref).where(Lead.lead_ref == b.lead)).all() == [
            b.lead
        ]


def _twin(world: World, call: Call, route: RouteInfo) -> Call | None:
    """The same call with the ids that were B's replaced by ids of no workspace."""
    for action in ACTIONS.get(route.path, (None,)):
        if action is not None and f"/{action}" not in call.url:
            continue
        for combo_size in range(len(route.ids)):
            combo = {
                **dict.fromkeys(route.ids[:combo_size], world.a),
                "*": NOWHERE,
            }
            b_combo = {**dict.fromkeys(route.ids[:combo_size], world.a), "*": world.b}
            if fill(route, b_combo, action) == call.url.split("?")[0]:
                query = call.url.partition("?")[2]
                url = fill(route, combo, action) + (f"?{query}" if query else "")
                return Call(route, url, call.kwargs, True, f"{route.method} {url}")
    return None


def test_choosing_another_workspace_is_404(world: World) -> None:
    """A's credentials naming workspace B (`?workspace=bravo`, `X-Workspace: bravo`): the admin
    answers 404 on every route; the ingest API ignores both (the key's workspace decides)."""
    b = world.b
    before = snapshot(b)
    findings = Findings()
    for route in every_route():
        if not crawlable(route):
            continue
        for call in calls_for(world, route, world.a)[:1]:
            if route.face == "ingest":
                for extra in (
                    {"params": {"workspace": b.name}},
                    {"headers": {"X-Workspace": b.name}},
                ):
                    response = send(world, call, **extra)
                    findings.check(response.status_code < 500, f"{call.label} {extra}: 5xx")
                    findings.check(not leaks(response, call, b), f"{call.label} {extra}: leak")
                continue
            primary: dict[str, Any] = (
                {"headers": {"X-Workspace": b.name}}
                if route.face == "api"
                else {"params": {"workspace": b.name}}
            )
            response = send(world, call, **primary)
            findings.check(
                response.status_code == 404,
                f"{call.label} {primary}: expected 404, got {response.status_code}",
            )
            secondary: dict[str, Any] = (
                {"params": {"workspace": b.name}}
                if route.face == "api"
                else {"headers": {"X-Workspace": b.name}}
            )
            response = send(world, call, **secondary)
            findings.check(
                response.status_code == 404 or not leaks(response, call, b),
                f"{call.label} {secondary}: answered with B's data",
            )
            findings.check(response.status_code < 500, f"{call.label} {secondary}: 5xx")
    assert findings.problems == [], "\n".join(findings.problems)
    assert snapshot(b) == before


def test_same_lead_id_in_two_workspaces_is_two_leads(world: World) -> None:
    a, b = world.a, world.b
    history = world.ingest.get(f"/v1/leads/{SHARED_LEAD}/postbacks")
    assert history.status_code == 200, history.text
    assert a.event_set_name in history.text and b.event_set_name not in history.text
    assert "bravo" not in history.text
    assert world.ingest.get(f"/v1/leads/{b.lead}/postbacks").status_code == 404
    with session_scope(workspace=ALL_WORKSPACES) as session:
        leads = session.scalars(select(Lead).where(Lead.lead_ref == SHARED_LEAD)).all()
        assert {lead.workspace_id for lead in leads} == {a.workspace_id, b.workspace_id}
        b_lead = next(lead for lead in leads if lead.workspace_id == b.workspace_id)
        assert b_lead.ttclid == "E.C.P.bravo-click"


def test_overwriting_a_lead_of_the_same_id_changes_only_ones_own(world: World) -> None:
    """The attack of the issue: a key PUTs its ttclid and email hashes on a lead id another
    workspace uses; that workspace's lead keeps its keys, and its next event carries them."""
    b = world.b
    before = snapshot(b)
    response = world.ingest.put(
        f"/v1/leads/{SHARED_LEAD}",
        json={"match_keys": {"ttclid": "E.C.P.attacker", "email": "attacker@example.com"}},
    )
    assert response.status_code == 200, response.text
    assert snapshot(b) == before
    enqueue_trigger(
        {
            "type": "lead.sold",
            "lead_id": SHARED_LEAD,
            "event_set": b.event_set_name,
            "occurred_at": _occurred(1),
            "idempotency_key": "after-the-attack",
        },
        workspace=b.name,
    )
    with session_scope(workspace=b.workspace_id) as session:
        latest = session.scalars(select(Postback).order_by(Postback.id.desc())).first()
        assert latest is not None and latest.payload is not None
        assert latest.payload["user"]["ttclid"] == "E.C.P.bravo-click"


def test_a_key_limited_to_one_event_set_cannot_post_to_another(
    world: World, simulator: SimulatorControl
) -> None:
    a = world.a
    with session_scope(workspace=a.workspace_id) as session:
        other = create_event_set(
            session,
            get_settings(),
            name="alpha-second",
            source_id="7300000000000000033",
            access_token="alpha-second-token",
            actor=SYSTEM_ACTOR,
        )
        add_mapping(session, other, trigger_type="lead.sold", event_name="Lead", actor=SYSTEM_ACTOR)
        limited = create_key(session, "alpha-landing-pages", event_sets=[a.event_set_name])
        session.commit()
        other_id = other.id
    with TestClient(create_app(), headers={"Authorization": f"Bearer {limited.key}"}) as client:

        def post(event_set: str) -> Any:
            return client.post("/v1/triggers", json=_trigger_body(event_set, "L-limited"))

        allowed = post(a.event_set_name)
        assert allowed.status_code == 202, allowed.text
        answers = [post(reference) for reference in ("alpha-second", "7300000000000000033")]
        answers.append(post(str(other_id)))
        unknown = post("no-such-set")
        for answer in answers:
            assert (answer.status_code, answer.json()) == (unknown.status_code, unknown.json())
            assert answer.status_code == 422
        assert post(world.b.event_set_name).json() == unknown.json()
    with session_scope(workspace=a.workspace_id) as session:
        assert session.scalars(select(Trigger).where(Trigger.event_set_id == other_id)).all() == []


def test_a_key_without_a_permission_is_403_naming_it(world: World) -> None:
    a = world.a
    with session_scope(workspace=a.workspace_id) as session:
        reader = create_key(session, "alpha-reader", permissions=["postbacks:read"])
        session.commit()
    with TestClient(create_app(), headers={"Authorization": f"Bearer {reader.key}"}) as client:
        sent = client.post("/v1/triggers", json=_trigger_body(a.event_set_name, "L-x"))
        assert sent.status_code == 403 and "triggers:send" in sent.text
        put = client.put("/v1/leads/L-x", json={"match_keys": {"ttclid": "E.C.P.1"}})
        assert put.status_code == 403 and "leads:write" in put.text
        # The permission is checked before the id: B's lead is not told apart from none.
        assert client.get(f"/v1/leads/{SHARED_LEAD}/postbacks").status_code == 200
        assert client.get(f"/v1/leads/{world.b.lead}/postbacks").status_code == 404


def test_a_viewer_sees_no_token_in_any_form(world: World) -> None:
    """Every GET page and JSON API route, as a viewer of A: not the event set's token, not
    its last four characters, not an API key or its prefix, not another admin's token."""
    a = world.a
    with session_scope(workspace=ALL_WORKSPACES) as session:
        viewer = create_user(session, "alpha-viewer", PASSWORD)
        session.add(
            WorkspaceMember(workspace_id=a.workspace_id, user_id=viewer.id, role=Role.VIEWER)
        )
        viewer_token = create_token(session, viewer, "viewer-automation").token
        session.commit()
    secrets_of_a = [a.token, a.token[-4:], a.key, a.key_prefix, a.admin_token, a.admin_token_prefix]
    app = create_app()
    problems = []
    with (
        TestClient(app, base_url="http://testserver") as page,
        TestClient(app, headers={"Authorization": f"Bearer {viewer_token}"}) as api,
    ):
        _login(page, "alpha-viewer")
        viewer_world = World(a, world.b, page, "", api, world.ingest)
        for route in every_route():
            if not crawlable(route) or route.method != "GET" or route.face == "ingest":
                continue
            for call in calls_for(viewer_world, route, a):
                response = send(viewer_world, call)
                problems += [
                    f"{call.label}: holds {secret!r}"
                    for secret in secrets_of_a
                    if secret in response.text
                ]
                if response.status_code >= 500:
                    problems.append(f"{call.label}: {response.status_code}")
        # And cannot change one.
        changed = api.patch(
            f"/admin/api/event-sets/{a.event_set_name}", json={"access_token": "viewer-token-1"}
        )
        assert changed.status_code == 403, changed.text
        form = page.post(
            f"/admin/event-sets/{a.event_set_id}/token",
            data={"csrf_token": csrf_of(page.get("/admin/event-sets").text), "access_token": "v-2"},
            follow_redirects=False,
        )
        assert form.status_code == 403, form.text[:500]
    assert problems == [], "\n".join(problems)


def test_listings_show_only_the_callers_workspace(world: World) -> None:
    a, b = world.a, world.b
    sets = world.api.get("/admin/api/event-sets").json()
    names = [s["name"] for s in (sets if isinstance(sets, list) else sets.get("event_sets", []))]
    assert names == [a.event_set_name]
    page = world.page.get("/admin/event-sets").text
    assert a.event_set_name in page and b.event_set_name not in page
    audit = world.api.get("/admin/api/audit").text
    assert b.event_set_name not in audit and str(b.source_id) not in audit
    with session_scope(workspace=a.workspace_id) as session:
        assert session.scalars(select(Mapping.id)).all() != []
