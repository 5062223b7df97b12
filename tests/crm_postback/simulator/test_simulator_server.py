"""The simulator over real HTTP: track, dedup, crm/list, control endpoints, keep-alive."""

from __future__ import annotations

import hashlib
import http.client
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from crm_postback.simulator import (
    RegisteredEventSet,
    SimulatorControl,
    SimulatorServer,
    SimulatorState,
)

BodyFactory = Callable[..., dict[str, Any]]
Track = Callable[..., requests.Response]
TRACK_PATH = "/open_api/v1.3/event/track/"
CRM_LIST_PATH = "/open_api/v1.3/crm/list/"
NARROWING_KEYS = ("first_name", "last_name", "city", "state", "country", "zip_code")


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def test_accepted_events_are_recorded_and_visible(
    track: Track, control: SimulatorControl, crm_body: BodyFactory, crm_set: RegisteredEventSet
) -> None:
    body = crm_body(3)
    response = track(body)

    assert response.status_code == 200
    reply = response.json()
    assert reply["code"] == 0
    assert reply["message"] == "OK"
    assert reply["data"] == {}
    assert len(reply["request_id"]) >= 20

    events = control.events()
    assert [e["payload"] for e in events] == body["data"]
    first = events[0]
    assert first["event_source_id"] == crm_set.event_set_id
    assert first["event_source"] == "crm"
    assert first["event"] == "lead_sold"
    assert first["event_id"] == body["data"][0]["event_id"]
    assert first["event_time"] == body["data"][0]["event_time"]
    assert first["test_event_code"] == "TEST12345"
    assert first["request_id"] == reply["request_id"]
    assert first["duplicate"] is False

    only = control.events(event_id=body["data"][1]["event_id"])
    assert [e["payload"] for e in only] == [body["data"][1]]
    assert control.events(event="nothing-like-this") == []


def test_every_field_is_kept_verbatim_for_the_control_api_and_the_record(
    tmp_path: Path,
    registry: dict[str, RegisteredEventSet],
    crm_body: BodyFactory,
    web_body: BodyFactory,
) -> None:
    hashed = {key: sha256(key) for key in NARROWING_KEYS}
    crm = crm_body(2)
    crm["data"][0]["user"].update(hashed)
    crm["data"][0]["limited_data_use"] = True
    crm["data"][1] = {  # a lead known only by its TikTok lead id: no user object
        "event": "lead_sold",
        "event_time": crm["data"][1]["event_time"],
        "event_id": "pixel-evt-0001",
        "lead": {"lead_id": "7300000000000000099", "lead_event_source": "AcmeCRM"},
        "limited_data_use": False,
    }
    web = web_body()
    web["data"][0]["user"].update({**hashed, "locale": "pt-BR"})
    web["data"][0]["page"] = {"url": "https://example.com/f?a=1", "referrer": "https://t.co/"}
    web["data"][0]["limited_data_use"] = False
    record = tmp_path / "events.jsonl"
    state = SimulatorState(event_sets=registry.values(), record_path=record)

    with SimulatorServer(state=state) as server:
        for body, token in ((crm, "crm-token-1"), (web, "web-token-1")):
            reply = requests.post(
                server.url + TRACK_PATH, json=body, headers={"Access-Token": token}, timeout=5
            ).json()
            assert reply["code"] == 0, reply
        control = SimulatorControl(server.url)
        seen = [event["payload"] for event in control.events()]
        control.close()

    assert seen == crm["data"] + web["data"]
    assert "user" not in seen[1]
    recorded = [json.loads(line)["payload"] for line in record.read_text().splitlines()]
    assert recorded == seen


def test_request_ids_are_unique(track: Track, crm_body: BodyFactory) -> None:
    ids = {track(crm_body(first=n)).json()["request_id"] for n in range(20)}
    assert len(ids) == 20


def test_duplicate_is_answered_ok_but_counted_and_dropped(
    track: Track, control: SimulatorControl, crm_body: BodyFactory
) -> None:
    body = crm_body()
    assert track(body).json()["code"] == 0
    assert track(body).json()["code"] == 0

    stats = control.stats()
    assert stats["events_accepted"] == 2
    assert stats["events_unique"] == 1
    assert stats["events_duplicate"] == 1
    assert len(control.events()) == 1
    copies = control.events(include_duplicates=True)
    assert [e["duplicate"] for e in copies] == [False, True]


def test_dedup_key_includes_the_event_name(
    track: Track, control: SimulatorControl, crm_body: BodyFactory
) -> None:
    body = crm_body()
    other_stage = crm_body()
    other_stage["data"][0]["event"] = "lead_qualified"
    track(body)
    track(other_stage)
    assert control.stats()["events_unique"] == 2


def test_rejected_request_records_nothing(
    track: Track, control: SimulatorControl, crm_body: BodyFactory
) -> None:
    body = crm_body(2)
    body["data"][1]["user"]["email"] = ["plain@example.com"]

    reply = track(body).json()

    assert reply["code"] == 40062
    assert reply["message"] == "Batch.1.user.email: PII must be SHA-256 hashed."
    assert control.events() == []
    stats = control.stats()
    assert stats["requests_by_code"] == {"40062": 1}
    assert stats["requests_by_http_status"] == {"200": 1}


def test_malformed_json_is_a_param_error(simulator: SimulatorServer) -> None:
    response = requests.post(
        simulator.url + TRACK_PATH,
        data=b'{"event_source": "crm", ',
        headers={"Access-Token": "crm-token-1", "Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 200
    assert response.json()["code"] == 40002
    assert response.json()["message"] == "Invalid request body."


def test_missing_token_header(track: Track, crm_body: BodyFactory) -> None:
    assert track(crm_body(), token=None).json()["code"] == 40104


def test_path_without_trailing_slash_is_not_found(simulator: SimulatorServer) -> None:
    response = requests.post(simulator.url + TRACK_PATH.rstrip("/"), json={}, timeout=5)
    assert response.status_code == 404


def test_track_only_accepts_post(simulator: SimulatorServer) -> None:
    assert requests.get(simulator.url + TRACK_PATH, timeout=5).status_code == 405


def test_connections_are_kept_alive(simulator: SimulatorServer, crm_body: BodyFactory) -> None:
    address = urlsplit(simulator.url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=5)
    try:
        sockets = []
        for number in range(3):
            connection.request(
                "POST",
                TRACK_PATH,
                body=json.dumps(crm_body(first=number)),
                headers={"Access-Token": "crm-token-1", "Content-Type": "application/json"},
            )
            response = connection.getresponse()
            assert json.loads(response.read())["code"] == 0
            assert not response.will_close
            sockets.append(connection.sock)
        assert sockets[0] is sockets[1] is sockets[2]
    finally:
        connection.close()


def test_token_rotation_by_re_registering(
    track: Track, control: SimulatorControl, crm_body: BodyFactory, crm_set: RegisteredEventSet
) -> None:
    before = control.register_event_set(
        crm_set.event_set_id, "crm-token-rotated", name=crm_set.name,
        advertiser_id=crm_set.advertiser_id,
    )  # fmt: skip

    assert track(crm_body()).json()["code"] == 40105
    assert track(crm_body(), token="crm-token-rotated").json()["code"] == 0
    assert before["create_time"] == crm_set.create_time


def test_reset_keeps_event_sets_unless_asked(
    track: Track, control: SimulatorControl, crm_body: BodyFactory
) -> None:
    track(crm_body())
    control.set_faults(throttle_rate=0.5)

    control.reset()
    stats = control.stats()
    assert stats["events_accepted"] == 0
    assert stats["requests_total"] == 0
    assert stats["faults"]["throttle_rate"] == 0
    assert control.events() == []
    assert track(crm_body()).json()["code"] == 0

    control.reset(event_sets=True)
    assert control.stats()["event_sets"] == 0
    assert track(crm_body()).json()["code"] == 40105


def test_registering_a_new_web_event_set(
    simulator: SimulatorServer, control: SimulatorControl, web_body: BodyFactory
) -> None:
    control.register_event_set("CPIXELNEW", "web-token-new", kind="web")
    body = web_body()
    body["event_source_id"] = "CPIXELNEW"
    reply = requests.post(
        simulator.url + TRACK_PATH, json=body, headers={"Access-Token": "web-token-new"}, timeout=5
    ).json()
    assert reply["code"] == 0
    assert control.events(event_source_id="CPIXELNEW")[0]["event_source"] == "web"


def test_control_rejects_bad_input(control: SimulatorControl, simulator: SimulatorServer) -> None:
    with pytest.raises(requests.HTTPError):
        control.set_faults(throttle_rate=2)
    with pytest.raises(requests.HTTPError):
        control.set_faults(no_such_fault=0.1)
    with pytest.raises(requests.HTTPError):
        control.register_event_set("x", "token", kind="app")
    assert requests.get(simulator.url + "/_sim/nothing", timeout=5).status_code == 404
    assert control.health() is True


def test_health_is_false_when_nothing_listens(simulator: SimulatorServer) -> None:
    url = simulator.url
    simulator.stop()
    assert SimulatorControl(url, timeout=1).health() is False


def test_stopping_drops_keep_alive_connections(
    simulator: SimulatorServer, track: Track, crm_body: BodyFactory
) -> None:
    assert track(crm_body()).json()["code"] == 0
    simulator.stop()
    with pytest.raises(requests.ConnectionError):
        track(crm_body(first=1))


class TestCrmList:
    @staticmethod
    def crm_list(
        simulator: SimulatorServer, token: str | None = "crm-token-1", **params: str
    ) -> dict[str, Any]:
        headers = {"Access-Token": token} if token is not None else {}
        response = requests.get(
            simulator.url + CRM_LIST_PATH, params=params, headers=headers, timeout=5
        )
        assert response.status_code == 200
        reply: dict[str, Any] = response.json()
        return reply

    @pytest.fixture(autouse=True)
    def second_crm_set(self, control: SimulatorControl) -> None:
        control.register_event_set(
            "7300000000000000003", "crm-token-1", name="Second", advertiser_id="6900000000000000001"
        )

    def test_lists_crm_sets_of_the_advertiser_owned_by_the_token(
        self, simulator: SimulatorServer
    ) -> None:
        reply = self.crm_list(simulator, advertiser_id="6900000000000000001")

        assert reply["code"] == 0
        sets = reply["data"]["crm_event_sets"]
        assert {s["event_set_id"] for s in sets} == {"7300000000000000001", "7300000000000000003"}
        assert set(sets[0]) == {"event_set_id", "name", "create_time"}
        assert sets[0]["create_time"].endswith("Z")

    def test_filters_by_name(self, simulator: SimulatorServer) -> None:
        reply = self.crm_list(simulator, advertiser_id="6900000000000000001", name="Second")
        assert [s["event_set_id"] for s in reply["data"]["crm_event_sets"]] == [
            "7300000000000000003"
        ]
        nothing = self.crm_list(simulator, advertiser_id="6900000000000000001", name="Secon")
        assert nothing["data"]["crm_event_sets"] == []

    def test_filters_by_event_set_ids(self, simulator: SimulatorServer) -> None:
        reply = self.crm_list(
            simulator,
            advertiser_id="6900000000000000001",
            event_set_ids=json.dumps(["7300000000000000001", "7399999999999999999"]),
        )
        assert [s["name"] for s in reply["data"]["crm_event_sets"]] == ["AcmeCRM leads"]

    def test_other_advertiser_or_token_sees_nothing(self, simulator: SimulatorServer) -> None:
        other_advertiser = self.crm_list(simulator, advertiser_id="6900000000000000002")
        assert other_advertiser["data"]["crm_event_sets"] == []
        other_token = self.crm_list(
            simulator, token="crm-token-2", advertiser_id="6900000000000000001"
        )
        assert other_token["data"]["crm_event_sets"] == []

    @pytest.mark.parametrize(
        ("token", "params", "code"),
        [
            (None, {"advertiser_id": "6900000000000000001"}, 40104),
            ("bogus", {"advertiser_id": "6900000000000000001"}, 40105),
            ("crm-token-1", {}, 40002),
            ("crm-token-1", {"advertiser_id": "1", "event_set_ids": "7300000000000000001"}, 40002),
        ],
        ids=["no-token", "bad-token", "no-advertiser", "ids-not-json-array"],
    )
    def test_errors(
        self, simulator: SimulatorServer, token: str | None, params: dict[str, str], code: int
    ) -> None:
        assert self.crm_list(simulator, token, **params)["code"] == code
