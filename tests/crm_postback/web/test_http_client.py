"""PostbackClient against the real app on uvicorn, and its retries against a scripted server."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from crm_postback.http_client import PostbackClient, PostbackError, TriggerRejected
from crm_postback.simulator import SimulatorControl
from tests.conftest import free_port  # type: ignore[import-not-found]
from tests.crm_postback.web.conftest import (  # type: ignore[import-not-found]
    RAW_EMAIL,
    submitted,
    trigger,
)

# --- against the real app ---------------------------------------------------------------


@pytest.fixture
def api(ready: SimulatorControl, live_server: str, api_key: str) -> PostbackClient:
    return PostbackClient(live_server, api_key, retries=1, backoff_seconds=0.01)


def test_send_trigger_and_a_retry_of_it(api: PostbackClient, ready: SimulatorControl) -> None:
    payload = submitted()
    first = api.send_trigger(payload)
    assert first.status == "accepted" and first.ok and first.trigger_id
    again = api.send_trigger(payload)
    assert (again.status, again.trigger_id) == ("duplicate", first.trigger_id)
    assert ready.stats()["events_accepted"] == 1
    assert "idempotency_key" not in payload  # the caller's dict is not changed


def test_a_rejected_trigger_raises_naming_the_field(api: PostbackClient) -> None:
    with pytest.raises(TriggerRejected) as caught:
        api.send_trigger({**submitted(), "occurred_at": "yesterday"})
    assert caught.value.status == 422
    assert caught.value.errors[0]["pointer"] == "/occurred_at"
    assert "occurred_at" in str(caught.value)


def test_a_bad_key_is_a_warning_unless_strict(api: PostbackClient, ready: SimulatorControl) -> None:
    bad_phone = {**submitted(), "match_keys": {"email": RAW_EMAIL, "phone": "12"}}
    answer = api.send_trigger(bad_phone)
    assert answer.status == "accepted"
    assert [w["field"] for w in answer.warnings] == ["match_keys.phone"]
    assert "12" not in str(answer.warnings)
    with pytest.raises(TriggerRejected) as caught:
        api.send_trigger({**bad_phone, "lead_id": "L-strict"}, strict=True)
    assert caught.value.errors[0]["pointer"] == "/match_keys/phone"
    [batch] = api.send_triggers([{**bad_phone, "lead_id": "L-batch"}])
    assert batch.ok and batch.warnings[0]["field"] == "match_keys.phone"
    warnings = api.upsert_lead("L-up", {"email": RAW_EMAIL, "phone": "12"})
    assert [w["field"] for w in warnings] == ["match_keys.phone"]
    with pytest.raises(PostbackError) as refused:
        api.upsert_lead("L-up", {"phone": "12"}, strict=True)
    assert refused.value.status == 422


def test_withdraw_consent(api: PostbackClient, ready: SimulatorControl) -> None:
    api.send_trigger(submitted("L-w"))
    answer = api.withdraw_consent("L-w")
    assert answer["consent_withdrawn_at"] and answer["already_withdrawn"] is False
    assert api.withdraw_consent("L-w")["already_withdrawn"] is True
    with pytest.raises(PostbackError) as unknown:
        api.withdraw_consent("L-nobody")
    assert unknown.value.status == 404


def test_send_triggers_answers_per_item(api: PostbackClient, ready: SimulatorControl) -> None:
    results = api.send_triggers(
        [submitted("L-1"), {**submitted("L-2"), "event_set": "nobody"}, submitted("L-3")]
    )
    assert [r.status for r in results] == ["accepted", "rejected", "accepted"]
    assert results[1].errors[0]["pointer"] == "/1/event_set"
    every_bad = api.send_triggers([{"type": "x"}])  # all rejected: answers, not an exception
    assert every_bad[0].status == "rejected" and not every_bad[0].ok


def test_upsert_lead_and_postbacks(api: PostbackClient, ready: SimulatorControl) -> None:
    api.upsert_lead("L/7", {"email": RAW_EMAIL})
    api.send_trigger(trigger("lead.submitted", "L/7"))
    history = api.postbacks("L/7")
    [postback] = history["triggers"][0]["postbacks"]
    assert postback["status"] == "delivered" and postback["last_code"] == 0
    with pytest.raises(PostbackError) as caught:
        api.upsert_lead("L-1", {"phone": "nope", "shoe_size": 44})
    assert caught.value.status == 422


def test_a_wrong_key_is_not_retried(live_server: str, api_key: str) -> None:
    client = PostbackClient(live_server, "pbk_wrong", retries=3, backoff_seconds=5)
    with pytest.raises(PostbackError) as caught:
        client.postbacks("L-1")  # would take > 30 s if 401 were retried
    assert caught.value.status == 401


def test_an_unknown_lead_and_a_missing_permission_are_raised_at_once(
    ready: SimulatorControl, live_server: str
) -> None:
    from tests.crm_postback.web.conftest import new_key  # type: ignore[import-not-found]

    sender = new_key("sender", permissions=["triggers:send"])
    client = PostbackClient(live_server, sender, retries=3, backoff_seconds=5)
    with pytest.raises(PostbackError) as caught:
        client.postbacks("L-1")  # would take > 30 s if 403 were retried
    assert caught.value.status == 403
    assert "postbacks:read" in caught.value.errors[0]["message"]
    reader = PostbackClient(live_server, new_key("reader"), retries=3, backoff_seconds=5)
    with pytest.raises(PostbackError) as caught:
        reader.postbacks("L-nobody")
    assert caught.value.status == 404


# --- retries, against a server that answers what the test scripts --------------------------


class Scripted:
    def __init__(self, answers: list[tuple[int, dict[str, str], Any]]) -> None:
        self.answers = answers
        self.bodies: list[Any] = []


@pytest.fixture
def scripted() -> Iterator[Callable[..., tuple[str, Scripted]]]:
    servers: list[ThreadingHTTPServer] = []

    def start(*answers: tuple[int, dict[str, str], Any]) -> tuple[str, Scripted]:
        script = Scripted(list(answers))

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                script.bodies.append(body)
                status, headers, answer = script.answers.pop(0)
                if answer == "echo":  # accept every item of the batch
                    items = body if isinstance(body, list) else [body]
                    answer = {
                        "accepted": len(items),
                        "duplicates": 0,
                        "rejected": 0,
                        "items": [
                            {"index": i, "status": "accepted", "trigger_id": 100 + i}
                            for i in range(len(items))
                        ],
                    }
                data = json.dumps(answer).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", script

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


UNAVAILABLE = (503, {}, {"errors": [{"pointer": None, "field": None, "message": "down"}]})


def test_5xx_and_429_are_retried_with_the_same_body(
    scripted: Callable[..., tuple[str, Scripted]],
) -> None:
    url, script = scripted(UNAVAILABLE, (429, {"Retry-After": "0"}, {}), (202, {}, "echo"))
    client = PostbackClient(url, "pbk_x", retries=3, backoff_seconds=0.01)
    result = client.send_trigger(submitted())
    assert result.status == "accepted"
    assert len(script.bodies) == 3
    assert script.bodies[0] == script.bodies[1] == script.bodies[2]
    assert "idempotency_key" not in script.bodies[0]  # the server derives it, the same each time


def test_generated_idempotency_keys_are_reused_on_retries(
    scripted: Callable[..., tuple[str, Scripted]],
) -> None:
    url, script = scripted(UNAVAILABLE, (202, {}, "echo"), (202, {}, "echo"))
    client = PostbackClient(
        url, "pbk_x", retries=2, backoff_seconds=0.01, generate_idempotency_keys=True
    )
    payload = submitted()
    client.send_trigger(payload)
    first_key = script.bodies[0]["idempotency_key"]
    assert first_key and script.bodies[1]["idempotency_key"] == first_key
    client.send_trigger(payload)  # a new logical call: a new key
    assert script.bodies[2]["idempotency_key"] != first_key
    client_given = {**payload, "idempotency_key": "mine"}
    url, script = scripted((202, {}, "echo"))
    PostbackClient(url, "pbk_x", generate_idempotency_keys=True).send_trigger(client_given)
    assert script.bodies[0]["idempotency_key"] == "mine"


def test_gives_up_after_the_retries(scripted: Callable[..., tuple[str, Scripted]]) -> None:
    url, script = scripted(UNAVAILABLE, UNAVAILABLE, UNAVAILABLE)
    client = PostbackClient(url, "pbk_x", retries=2, backoff_seconds=0.01)
    with pytest.raises(PostbackError) as caught:
        client.send_trigger(submitted())
    assert caught.value.status == 503 and len(script.bodies) == 3


def test_connection_errors_are_retried_then_raised() -> None:
    client = PostbackClient(
        f"http://127.0.0.1:{free_port()}", "pbk_x", retries=2, backoff_seconds=0.01
    )
    with pytest.raises(PostbackError, match="unreachable"):
        client.send_trigger(submitted())


def test_more_than_1000_triggers_go_in_batches(
    scripted: Callable[..., tuple[str, Scripted]],
) -> None:
    url, script = scripted((202, {}, "echo"), (202, {}, "echo"))
    results = PostbackClient(url, "pbk_x").send_triggers([submitted()] * 1500)
    assert [len(b) for b in script.bodies] == [1000, 500]
    assert [r.index for r in results] == list(range(1500))
