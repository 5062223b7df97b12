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
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from crm_postback.cli import app as cli_app
from models import EventSet
from models.db import session_scope
from tests.conftest import EVENT_SET_ID, TOKEN, apply_env  # type: ignore[import-not-found]
from tests.crm_postback.web.admin.conftest import (  # type: ignore[import-not-found]
    field_errors,
    flashes,
)

HUGE_ID = 10**23
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
    with session_scope() as session:
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
    allowed = api.patch("/admin/api/event-sets/acme", json={"access_token": "env:POSTBACK_TOKEN_A"})
    assert allowed.status_code == 200 and allowed.json()["access_token"] == "env:POSTBACK_TOKEN_A"


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
    with session_scope() as session:
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
