"""Hostile and odd input to the admin (pages, JSON API, CLI): every case of issue 13, items
9-12. Each one broke a promise before: a secret sent away, a bare 500, a dropped connection, a
page without its protective headers."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from crm_postback.cli import app as cli_app
from models import DEFAULT_WORKSPACE_ID, EventSet, Role
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import EVENT_SET_ID, TOKEN, apply_env  # type: ignore[import-not-found]
from tests.crm_postback.web.admin.conftest import (  # type: ignore[import-not-found]
    field_errors,
    flashes,
)

HUGE_ID = 10**23
LISTED_WITHOUT_A_NAME = {"code": 0, "data": {"crm_event_sets": [{"event_set_id": EVENT_SET_ID}]}}
ADMIN_SECRET = "the-admin-password-0123"


class StandIn:
    """A stand-in Events API host: records each request's path and headers, answers `body`."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.body: Any = {"code": 0, "message": "OK", "data": {"crm_event_sets": []}}
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stand_in.requests.append((self.path, dict(self.headers.items())))
                raw = json.dumps(stand_in.body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_POST = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    server = StandIn()
    apply_env(monkeypatch, TIKTOK_API_BASE_URL=server.url)
    yield server
    server.stop()


def _store_token(name: str, sealed: str) -> None:
    """What a database written before the prefix rule may hold."""
    with session_scope(workspace=ALL_WORKSPACES) as session:
        event_set = session.query(EventSet).filter_by(name=name).one()
        event_set.sealed_token = sealed
        session.commit()


# --- 9. env: references reach only POSTBACK_TOKEN_* variables ------------------------------


@pytest.mark.parametrize("reference", ["env:ADMIN_PASSWORD", "env:SESSION_SECRET", "env:HOME"])
def test_json_api_refuses_an_env_reference_to_another_variable(
    api: TestClient, make_event_set: Callable[..., int], reference: str
) -> None:
    created = api.post(
        "/admin/api/event-sets",
        json={"name": "acme", "event_set_id": EVENT_SET_ID, "access_token": reference},
    )
    assert created.status_code == 422
    assert [e["pointer"] for e in created.json()["errors"]] == ["/access_token"]
    assert reference[4:] not in created.text
    make_event_set()
    patched = api.patch("/admin/api/event-sets/acme", json={"access_token": reference})
    assert patched.status_code == 422
    assert [e["field"] for e in patched.json()["errors"]] == ["access_token"]
    assert reference[4:] not in patched.text
    # The environment is every workspace's: only the operator (the CLI) names a variable.
    operator_only = api.patch(
        "/admin/api/event-sets/acme", json={"access_token": "env:POSTBACK_TOKEN_A"}
    )
    assert operator_only.status_code == 422 and "POSTBACK_TOKEN_A" not in operator_only.text


def test_pages_refuse_an_env_reference_to_another_variable(
    admin_client: tuple[TestClient, str], make_event_set: Callable[..., int]
) -> None:
    client, csrf = admin_client
    page = client.post(
        "/admin/event-sets/new",
        data={
            "csrf_token": csrf,
            "name": "acme",
            "event_set_id": EVENT_SET_ID,
            "kind": "crm",
            "access_token": "env:ADMIN_PASSWORD",
        },
    )
    assert page.status_code == 400
    assert "POSTBACK_TOKEN_" in field_errors(page.text)["access_token"]
    assert "ADMIN_PASSWORD" not in page.text
    event_set_id = make_event_set()
    replaced = client.post(
        f"/admin/event-sets/{event_set_id}/token",
        data={"csrf_token": csrf, "access_token": "env:ADMIN_PASSWORD"},
    )
    assert "POSTBACK_TOKEN_" in " ".join(flashes(replaced.text))
    assert "ADMIN_PASSWORD" not in replaced.text


def test_cli_refuses_an_env_reference_to_another_variable(sqlite_db: str) -> None:
    result = CliRunner().invoke(
        cli_app,
        ["event-set", "add", "--name", "acme", "--event-set-id", EVENT_SET_ID],
        input="env:ADMIN_PASSWORD\n",
    )
    assert result.exit_code == 2
    assert "access_token" in result.output and "POSTBACK_TOKEN_" in result.output
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.query(EventSet).count() == 0


def test_verify_never_sends_a_variable_outside_the_prefix(
    api: TestClient,
    make_event_set: Callable[..., int],
    stand_in: StandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reference stored before the rule: verify reads nothing and sends nothing; the answer
    is the same whether the variable exists or not (no oracle)."""
    monkeypatch.setenv("ADMIN_PASSWORD", ADMIN_SECRET)
    monkeypatch.delenv("NOT_A_VARIABLE_HERE", raising=False)
    make_event_set(advertiser_id="7000000001")
    answers = []
    for stored in ("env:ADMIN_PASSWORD", "env:NOT_A_VARIABLE_HERE"):
        _store_token("acme", stored)
        verified = api.post("/admin/api/event-sets/acme/verify")
        assert verified.status_code == 200
        assert verified.json()["ok"] is False
        answers.append(verified.json()["message"].replace(stored[4:], "NAME"))
        assert api.get("/admin/api/event-sets/acme").json()["access_token"].startswith("(refused")
    assert answers[0] == answers[1] and "set-token" in answers[0]
    assert stand_in.requests == []
    # A variable of the prefix is read and sent, as before.
    monkeypatch.setenv("POSTBACK_TOKEN_ACME", TOKEN)
    _store_token("acme", "env:POSTBACK_TOKEN_ACME")
    assert api.post("/admin/api/event-sets/acme/verify").json()["ok"] is False  # not listed
    assert [headers["Access-Token"] for _, headers in stand_in.requests] == [TOKEN]


# --- 10. YAML over the JSON API (the file cases: configuration/test_mapping_yaml_hostile) ---


def test_an_alias_bomb_answers_a_small_422_on_the_json_api(
    api: TestClient, make_event_set: Callable[..., int]
) -> None:
    from tests.crm_postback.configuration.test_mapping_yaml_hostile import (  # type: ignore[import-not-found]
        alias_bomb,
    )

    make_event_set(mappings=())
    answer = api.put("/admin/api/event-sets/acme/mappings.yaml", content=alias_bomb(6).encode())
    assert answer.status_code == 422
    assert len(answer.content) < 1000
    assert answer.json()["errors"][0]["field"] == "file"


# --- 11. admin input that answered a bare 500 ----------------------------------------------


@pytest.fixture(params=["sqlite_db", "pg_db"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


@pytest.fixture
def clients(backend: str, make_event_set: Callable[..., int]) -> Iterator[dict[str, Any]]:
    """On either backend: an API client (admin token), a logged-in page client, an event set."""
    from crm_postback.configuration.admin_accounts import add_member_in, create_token, create_user
    from crm_postback.web.app import create_app
    from tests.crm_postback.web.admin.conftest import PASSWORD, login  # type: ignore[import-not-found]

    with session_scope(workspace=ALL_WORKSPACES) as session:
        user = create_user(session, "alice", PASSWORD)
        add_member_in(session, DEFAULT_WORKSPACE_ID, user, Role.OWNER)
        token = create_token(session, user, "tests").token
        session.commit()
    event_set_id = make_event_set()
    headers = {"Authorization": f"Bearer {token}"}
    with (
        TestClient(create_app(), headers=headers, raise_server_exceptions=False) as api,
        TestClient(create_app(), raise_server_exceptions=False) as pages,
    ):
        csrf = login(pages)
        yield {"api": api, "pages": pages, "csrf": csrf, "id": event_set_id}


PAGE_GETS = [
    "/admin/event-sets/{huge}",
    "/admin/event-sets/{huge}/edit",
    "/admin/event-sets/{huge}/preview",
    "/admin/event-sets/{huge}/mappings/new",
    "/admin/event-sets/{huge}/mappings.yaml",
    "/admin/event-sets/{id}/mappings/{huge}",
]
PAGE_FILTERS = [
    "/admin/audit?event_set={huge}",
    "/admin/audit?before={huge}",
    "/admin/delivery?event_set={huge}",
    "/admin/delivery?lead=a%00b",
    "/admin/event-sets/{id}/preview?trigger_id={huge}",
]
PAGE_POSTS = [
    ("/admin/event-sets/{huge}/pause", {}),
    ("/admin/event-sets/{huge}/edit", {"name": "x"}),
    ("/admin/event-sets/{id}/mappings/{huge}/toggle", {}),
    ("/admin/event-sets/{id}/mappings/{huge}", {"trigger": "lead.sold"}),
]
API_CALLS = [
    ("GET", "/admin/api/audit?before={huge}", None, 422),
    ("GET", "/admin/api/audit?before=-1", None, 422),
    ("GET", "/admin/api/event-sets/acme/mappings/{huge}", None, 404),
    ("PUT", "/admin/api/event-sets/acme/mappings/{huge}", {"trigger": "a.b", "event": "Lead"}, 404),
    ("DELETE", "/admin/api/event-sets/acme/mappings/{huge}", None, 404),
    ("POST", "/admin/api/postbacks/replay", {"ids": [HUGE_ID]}, 422),
    ("POST", "/admin/api/event-sets/acme/preview", {"trigger_id": HUGE_ID}, 422),
    ("GET", "/admin/api/event-sets/a%00b", None, 404),
    ("GET", "/admin/api/delivery?event_set=a%00b", None, 404),
]


def test_ids_too_large_for_a_column_name_nothing(clients: dict[str, Any]) -> None:
    """10**23 in a path, a query or a form: 404 (or the filter ignored), never a 500 from
    the database refusing the number (OverflowError on SQLite, out of range on PostgreSQL)."""
    pages, api = clients["pages"], clients["api"]
    values = {"huge": HUGE_ID, "id": clients["id"]}
    for path in PAGE_GETS:
        answer = pages.get(path.format(**values))
        assert answer.status_code == 404, path
        assert "Not found" in answer.text
    for path in PAGE_FILTERS:
        assert pages.get(path.format(**values)).status_code == 200, path
    for path, data in PAGE_POSTS:
        answer = pages.post(path.format(**values), data={"csrf_token": clients["csrf"], **data})
        assert answer.status_code == 404, path
    replay = pages.post(
        "/admin/delivery/replay", data={"csrf_token": clients["csrf"], "postback_id": HUGE_ID}
    )
    assert "postback_id: must be postback ids" in flashes(replay.text)
    replay = pages.post(
        "/admin/delivery/replay", data={"csrf_token": clients["csrf"], "event_set_id": HUGE_ID}
    )
    assert "event_set_id: there is no event set with this id" in flashes(replay.text)
    preview = pages.post(
        f"/admin/event-sets/{clients['id']}/preview",
        data={"csrf_token": clients["csrf"], "preview_trigger_id": str(HUGE_ID)},
    )
    assert "trigger id: must be the id of a stored trigger" in preview.text
    for method, path, body, status in API_CALLS:
        answer = api.request(method, path.format(**values), json=body)
        assert answer.status_code == status, (method, path, answer.text)
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["errors"][0]["message"]
        assert str(HUGE_ID) not in answer.text


@pytest.mark.parametrize(
    "body",
    [
        [{"code": 0}],
        "OK",
        42,
        None,
        {"code": 2**70, "message": "x"},
        {"code": 40001, "message": "m" * 100_000, "request_id": "r" * 5000},
        {"code": 40001, "message": ["not", "text"]},
        {"code": 0, "data": [1, 2]},
        {"code": 0, "data": {"crm_event_sets": {"a": 1}}},
        {"code": 0, "data": {"crm_event_sets": [1, "x", None, [EVENT_SET_ID]]}},
        LISTED_WITHOUT_A_NAME,
    ],
)
def test_a_verify_answer_of_any_shape_is_read_not_trusted(
    api: TestClient, make_event_set: Callable[..., int], stand_in: StandIn, body: Any
) -> None:
    make_event_set(advertiser_id="7000000001")
    stand_in.body = body
    verified = api.post("/admin/api/event-sets/acme/verify")
    assert verified.status_code == 200, verified.text
    answer = verified.json()
    assert len(answer["message"]) <= 400
    assert answer["request_id"] is None or len(answer["request_id"]) <= 128
    assert answer["code"] is None or abs(answer["code"]) < 2**31
    assert answer["ok"] is (body is LISTED_WITHOUT_A_NAME)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "acme\r\nX-Injected: 1"),
        ("name", "a\x00b"),
        ("name", "a\u2028b"),
        ("lead_event_source", "crm\nline"),
        ("test_event_code", "T\x00"),
        ("access_token", "tok en-with-space"),
        ("access_token", "tok\r\nen"),
    ],
)
def test_control_characters_and_line_breaks_are_refused_in_event_set_fields(
    clients: dict[str, Any], field: str, value: str
) -> None:
    api = clients["api"]
    created = api.post(
        "/admin/api/event-sets",
        json={"name": "beta", "event_set_id": "7300000000000000009", "access_token": TOKEN}
        | {field: value},
    )
    assert created.status_code == 422, created.text
    assert [e["field"] for e in created.json()["errors"]] == [field]
    assert value not in created.text
    patched = api.patch("/admin/api/event-sets/acme", json={field: value})
    assert patched.status_code == 422 and value not in patched.text
    if not value.isprintable():  # a reason may hold spaces, not line breaks
        paused = api.post("/admin/api/event-sets/acme/pause", json={"reason": value})
        assert paused.status_code == 422
        assert paused.json()["errors"][0]["field"] == "reason"


def test_a_non_ascii_name_exports_with_an_rfc_5987_filename(
    admin_client: tuple[TestClient, str], make_event_set: Callable[..., int]
) -> None:
    client, _ = admin_client
    event_set_id = make_event_set(name="日本語-crm")
    answer = client.get(f"/admin/event-sets/{event_set_id}/mappings.yaml")
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == (
        'attachment; filename="crm-mappings.yaml"; '
        "filename*=UTF-8''%E6%97%A5%E6%9C%AC%E8%AA%9E-crm-mappings.yaml"
    )


def test_a_stored_name_with_a_line_break_never_reaches_a_header(
    alice: int, make_event_set: Callable[..., int]
) -> None:
    """A name stored before names were checked: over real HTTP, the export answers and the
    keep-alive connection carries the next request (a CRLF in a header dropped it)."""
    import httpx

    from crm_postback.web.app import create_app
    from tests.conftest import app_in_thread  # type: ignore[import-not-found]
    from tests.crm_postback.web.admin.conftest import login  # type: ignore[import-not-found]

    event_set_id = make_event_set()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        session.get(EventSet, event_set_id).name = "acme\r\nSet-Cookie: x=1"  # type: ignore[union-attr]
        session.commit()
    with app_in_thread(create_app()) as url, httpx.Client(base_url=url) as client:
        login(client)  # type: ignore[arg-type]
        answer = client.get(f"/admin/event-sets/{event_set_id}/mappings.yaml")
        assert answer.status_code == 200
        # Only the session cookie is set: the stored name's "Set-Cookie: x=1" is no header.
        cookies = answer.headers.get_list("set-cookie")
        assert all(cookie.startswith("crm_postback_admin=") for cookie in cookies), cookies
        assert not any("x=1" in value for value in answer.headers.values())
        assert answer.headers["content-disposition"].startswith(
            'attachment; filename="acme_Set-Cookie_x_1-mappings.yaml"; filename*=UTF-8'
            "''acme%0D%0ASet-Cookie%3A%20x%3D1"
        )
        assert client.get("/admin/event-sets").status_code == 200


def test_the_json_api_answers_every_error_in_the_ingest_shape(
    api: TestClient, make_event_set: Callable[..., int], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_event_set()
    cases = [
        (api.get("/admin/api/no-such-route"), 404),
        (api.delete("/admin/api/event-sets"), 405),
        (api.get("/admin/api/event-sets/acme/mappings/jane@example.com"), 422),
        (api.get("/admin/api/audit?limit=lots"), 422),
    ]
    for answer, status in cases:
        assert answer.status_code == status
        assert answer.headers["content-type"] == "application/json"
        [problem] = answer.json()["errors"]
        assert set(problem) == {"pointer", "field", "message"}
        assert "jane" not in answer.text and "lots" not in answer.text
    assert cases[2][0].json()["errors"][0]["field"] == "path.mapping_id"

    from crm_postback.web.admin import event_set_json_api

    def broken(*_: Any) -> Any:
        raise RuntimeError("jane@example.com")

    monkeypatch.setattr(event_set_json_api, "status_counts", broken)
    with TestClient(api.app, headers=dict(api.headers), raise_server_exceptions=False) as client:
        answer = client.get("/admin/api/event-sets/acme")
    assert answer.status_code == 500
    assert answer.json() == {
        "errors": [{"pointer": None, "field": None, "message": "internal error; retrying is safe"}]
    }


def test_a_page_that_fails_is_an_error_page(
    admin_client: tuple[TestClient, str],
    make_event_set: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from crm_postback.web.admin import event_set_pages

    client, _ = admin_client
    event_set_id = make_event_set()

    def broken(*_: Any) -> Any:
        raise RuntimeError("jane@example.com")

    monkeypatch.setattr(event_set_pages, "status_counts", broken)
    with TestClient(client.app, cookies=client.cookies, raise_server_exceptions=False) as same:
        answer = same.get(f"/admin/event-sets/{event_set_id}")
    assert answer.status_code == 500
    assert answer.headers["content-type"].startswith("text/html")
    assert "Something went wrong" in answer.text and "jane" not in answer.text
    assert answer.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert client.get("/admin/event-sets/abc").status_code == 404  # not a number: no page


def test_an_admin_body_over_the_limit_is_413_in_the_api_shape(
    api: TestClient, make_event_set: Callable[..., int], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_event_set()
    apply_env(monkeypatch, MAX_REQUEST_BYTES="1000")

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused while it streams
        for _ in range(10):
            yield b"# " + b"x" * 200 + b"\n"

    answer = api.put("/admin/api/event-sets/acme/mappings.yaml", content=chunks())
    assert answer.status_code == 413
    assert answer.json()["errors"][0]["field"] == "body"


# --- 12. protective headers -------------------------------------------------------------


def _assert_protected(answer: Any, where: str) -> None:
    headers = answer.headers
    policy = headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in policy, where
    assert "default-src" in policy and "object-src 'none'" in policy, where
    assert headers.get("x-frame-options") == "DENY", where
    assert headers.get("x-content-type-options") == "nosniff", where
    assert headers.get("referrer-policy") == "same-origin", where


def test_every_admin_answer_carries_the_protective_headers(
    admin_client: tuple[TestClient, str],
    api: TestClient,
    make_event_set: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, csrf = admin_client
    event_set_id = make_event_set()
    for path in (
        "/admin/event-sets",
        f"/admin/event-sets/{event_set_id}",
        f"/admin/event-sets/{event_set_id}/mappings/new",
        f"/admin/event-sets/{event_set_id}/preview",
        f"/admin/event-sets/{event_set_id}/mappings.yaml",
        "/admin/delivery",
        "/admin/audit",
        "/admin/static/admin.js",
        "/admin/static/admin.css",
        "/admin/event-sets/999",  # the 404 page
    ):
        answer = client.get(path)
        _assert_protected(answer, path)
        assert "'unsafe-inline'" not in answer.headers["content-security-policy"], path
        assert "script-src 'self'" in answer.headers["content-security-policy"], path
    posted = client.post(
        f"/admin/event-sets/{event_set_id}/pause", data={"csrf_token": csrf}, follow_redirects=False
    )
    _assert_protected(posted, "a redirect")
    with TestClient(client.app) as anonymous:
        _assert_protected(anonymous.get("/admin/login"), "the login page")
        _assert_protected(anonymous.get("/admin/event-sets", follow_redirects=False), "login")
    for answer in (api.get("/admin/api/event-sets"), api.get("/admin/api/nothing")):
        _assert_protected(answer, "the JSON API")
    docs = api.get("/admin/api/docs")
    _assert_protected(docs, "the API docs")
    assert "https://cdn.jsdelivr.net" in docs.headers["content-security-policy"]
    # Answers made outside the admin app: the outer app's 413 (Content-Length over the
    # limit) and the redirect from /admin to /admin/.
    apply_env(monkeypatch, MAX_REQUEST_BYTES="1000")
    too_large = api.post("/admin/api/event-sets", content=b"x" * 2000)
    assert too_large.status_code == 413
    _assert_protected(too_large, "the outer 413")
    bare = api.get("/admin", follow_redirects=False)
    assert bare.status_code == 307
    _assert_protected(bare, "the redirect to /admin/")


def test_the_json_api_500_carries_the_protective_headers(
    api: TestClient, make_event_set: Callable[..., int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from crm_postback.web.admin import event_set_json_api

    make_event_set()

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("jane@example.com")

    monkeypatch.setattr(event_set_json_api, "event_set_json", broken)
    with TestClient(api.app, headers=api.headers, raise_server_exceptions=False) as same:
        answer = same.get("/admin/api/event-sets")
    assert answer.status_code == 500
    assert "jane" not in answer.text
    _assert_protected(answer, "the JSON API 500")
    assert answer.headers["cache-control"] == "no-store"


# The pages under their policy in Chromium: tests/browser/test_admin_csp.py (it shares
# the browser session's Playwright; a second sync Playwright in one thread cannot start).


def test_an_unknown_key_is_named_only_when_it_is_a_plain_name(api: TestClient) -> None:
    answer = api.post(
        "/admin/api/event-sets",
        json={"name": "acme", "jane@example.com": 1, "a key with spaces": 2, "colour": 3},
    )
    assert answer.status_code == 422
    named = {(e["pointer"], e["field"]) for e in answer.json()["errors"]}
    assert named == {("/<redacted>", "<redacted>"), ("/colour", "colour")}
    assert "jane" not in answer.text and "spaces" not in answer.text


@pytest.mark.parametrize(
    "key", ["\u00b2", "7" * 5000, "\u0663"], ids=["superscript", "long", "arabic"]
)
def test_a_digit_key_int_cannot_read_is_named_not_a_500(
    api: TestClient, make_event_set: Callable[..., int], key: str
) -> None:
    """str.isdigit() is true for "\u00b2" and for 5,000 digits; int() refuses both. Such a key
    is a key a caller invented: redacted, not taken for a list index."""
    make_event_set()
    answer = api.post(
        "/admin/api/event-sets/acme/mappings",
        json={"trigger": "lead.sold", "event": "Lead", "properties": {key: 1}},
    )
    assert answer.status_code == 422
    assert key not in answer.text
    assert any("<redacted>" in (e["field"] or "") for e in answer.json()["errors"])
    document = yaml.safe_load(api.get("/admin/api/event-sets/acme/mappings.yaml").text)
    document["mappings"].append({"trigger": "lead.sold", "event": "Lead", "properties": {key: 1}})
    imported = api.put(
        "/admin/api/event-sets/acme/mappings.yaml", content=yaml.safe_dump(document).encode()
    )
    assert imported.status_code == 422
    assert key not in imported.text


def test_every_json_api_route_documents_its_error_answers(api: TestClient) -> None:
    document = api.get("/admin/api/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            documented = set(operation["responses"])
            assert {"401", "404", "422", "500"} <= documented, (method, path)


def test_form_fields_that_were_a_500_are_refused_on_the_page(clients: dict[str, Any]) -> None:
    """JSON too deep or a number too long in a form field (RecursionError, ValueError), and
    numbers or text a mapping cannot store (NaN, infinity, NUL: refused by PostgreSQL)."""
    pages, csrf, event_set_id = clients["pages"], clients["csrf"], clients["id"]
    deep = "[" * 100_000
    preview = f"/admin/event-sets/{event_set_id}/preview"
    for data, message in (
        ({"preview_sample": deep}, "sample trigger: not valid JSON"),
        ({"preview_lead": "L-1", "preview_attributes": deep}, "attributes: not valid JSON"),
        ({"preview_lead": "L-1", "preview_attributes": "1" * 5000}, "attributes: not valid JSON"),
    ):
        answer = pages.post(preview, data={"csrf_token": csrf, **data})
        assert answer.status_code == 200 and message in answer.text
    new = f"/admin/event-sets/{event_set_id}/mappings/new"
    form = {
        "csrf_token": csrf,
        "trigger": "lead.sold",
        "event_choice": "Lead",
        "value_mode": "none",
    }
    condition = {"cond_attribute": "x", "cond_op": "eq"}
    for data, field in (
        ({"value_mode": "fixed", "value_fixed": "inf"}, "properties.value"),
        ({"value_mode": "fixed", "value_fixed": "nan"}, "properties.value"),
        ({**condition, "cond_value": "NaN"}, "when.0"),
        ({**condition, "cond_value": "a\x00b"}, "when.0"),
        ({**condition, "cond_op": "in", "cond_value": deep}, "when.0"),
        ({**condition, "cond_op": "in", "cond_value": ",".join("x" * 1001)}, "when.0"),
    ):
        answer = pages.post(new, data={**form, **data})
        assert answer.status_code == 400, (data, answer.text[-500:])
        assert field in field_errors(answer.text), (data, field_errors(answer.text))
    with session_scope(workspace=ALL_WORKSPACES) as session:
        from models import Mapping

        assert session.query(Mapping).filter_by(event_set_id=event_set_id).count() == 2
