"""The admin pages do what an admin needs: event sets, mappings, preview, delivery, audit."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from typing import Any

import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from crm_postback.api import enqueue_trigger
from crm_postback.simulator import SimulatorControl
from models import AuditEntry, EventSet, Mapping, Postback
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import EVENT_SET_ID, TOKEN  # type: ignore[import-not-found]
from tests.crm_postback.web.admin.conftest import (  # type: ignore[import-not-found]
    field_errors,
    flashes,
)
from tests.crm_postback.web.conftest import submitted, trigger  # type: ignore[import-not-found]

Client = tuple[TestClient, str]


def new_event_set(client: TestClient, csrf: str, **fields: str) -> Any:
    data = {
        "csrf_token": csrf,
        "name": "acme",
        "event_set_id": EVENT_SET_ID,
        "kind": "crm",
        "access_token": TOKEN,
        "advertiser_id": "7000000001",
        "lead_event_source": "AcmeLeads",
        "currency": "USD",
        "test_event_code": "",
        **fields,
    }
    return client.post("/admin/event-sets/new", data=data, follow_redirects=False)


def mapping_form(csrf: str, **fields: Any) -> dict[str, Any]:
    return {
        "csrf_token": csrf,
        "trigger": "lead.sold",
        "event_choice": "__custom__",
        "event_custom": "lead_sold",
        "enabled": "on",
        "cond_attribute": ["buyer_id", "value", ""],
        "cond_op": ["eq", "gte", "eq"],
        "cond_value": ["B17", "50", ""],
        "value_mode": "attribute",
        "value_from": "value",
        "currency_mode": "fixed",
        "currency_fixed": "EUR",
        "currency_from": "currency",
        "order_id_from": "sale_id",
        "content_type": "",
        "description": "",
        "action": "save",
        **fields,
    }


def only_mapping() -> Mapping:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        mapping = session.scalars(select(Mapping)).one()
        session.expunge(mapping)
        return mapping


def test_create_an_event_set_token_never_shown(admin_client: Client) -> None:
    client, csrf = admin_client
    response = new_event_set(client, csrf)
    assert response.status_code == 303
    page = client.get(response.headers["location"])
    assert "acme" in page.text and "••••••••" + TOKEN[-4:] in page.text
    assert TOKEN not in page.text
    assert "Event set &#39;acme&#39; created" in page.text
    listing = client.get("/admin/event-sets").text
    assert EVENT_SET_ID in listing and TOKEN not in listing
    with session_scope(workspace=ALL_WORKSPACES) as session:
        entry = session.scalars(select(AuditEntry)).one()
        assert (entry.action, entry.actor) == ("event_set.create", "web:alice")


def test_event_set_errors_are_shown_next_to_the_field(admin_client: Client) -> None:
    client, csrf = admin_client
    new_event_set(client, csrf)
    again = new_event_set(client, csrf, event_set_id="7300000000000000009")
    assert again.status_code == 400
    assert field_errors(again.text) == {"name": "an event set named 'acme' exists"}
    assert TOKEN not in again.text  # the typed token is not sent back
    bad_id = new_event_set(client, csrf, name="other", event_set_id="no spaces allowed")
    assert field_errors(bad_id.text) == {
        "event_set_id": "must be the TikTok event set ID or pixel code"
    }


def test_edit_replace_token_pause_resume_and_test_code(
    admin_client: Client, make_event_set: Callable[..., int]
) -> None:
    client, csrf = admin_client
    set_id = make_event_set()
    edit = client.get(f"/admin/event-sets/{set_id}/edit")
    assert "Leave empty to keep the current token" in edit.text and TOKEN not in edit.text
    saved = client.post(
        f"/admin/event-sets/{set_id}/edit",
        data={
            "csrf_token": csrf,
            "name": "acme-crm",
            "advertiser_id": "7000000001",
            "lead_event_source": "Acme",
            "currency": "GBP",
            "test_event_code": "",
            "access_token": "brand-new-token-4321",
        },
    )
    assert "Event set saved. The token was replaced." in flashes(saved.text)
    assert "••••••••4321" in saved.text and "brand-new-token-4321" not in saved.text
    bad = client.post(
        f"/admin/event-sets/{set_id}/edit",
        data={"csrf_token": csrf, "name": "acme-crm", "currency": "XYZ", "lead_event_source": "A"},
    )
    assert bad.status_code == 400
    assert field_errors(bad.text) == {"currency": "'XYZ' is not supported by TikTok"}
    for action, data, expected in [
        ("pause", {}, "paused"),
        ("resume", {}, "active"),
        ("test-code", {"test_event_code": "TEST42"}, "active"),
    ]:
        client.post(f"/admin/event-sets/{set_id}/{action}", data={"csrf_token": csrf, **data})
        with session_scope(workspace=ALL_WORKSPACES) as session:
            assert session.get(EventSet, set_id).status == expected  # type: ignore[union-attr]
    page = client.get(f"/admin/event-sets/{set_id}")
    assert "test events: TEST42" in page.text
    client.post(f"/admin/event-sets/{set_id}/test-code", data={"csrf_token": csrf, "turn": "off"})
    with session_scope(workspace=ALL_WORKSPACES) as session:
        event_set = session.get(EventSet, set_id)
        assert event_set is not None and event_set.test_event_code is None
        actions = [
            e.action
            for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
            if e.entity_type == "event_set"
        ]
    assert actions == [
        "event_set.create",
        "event_set.update",
        "event_set.token",
        "event_set.pause",
        "event_set.resume",
        "event_set.update",
        "event_set.update",
    ]
    audit_page = client.get(f"/admin/audit?event_set={set_id}").text
    assert "web:alice" in audit_page and "brand-new-token" not in audit_page
    assert "&#34;replaced&#34;" in audit_page


def test_add_a_conditional_mapping_then_edit_disable_delete(
    admin_client: Client, make_event_set: Callable[..., int]
) -> None:
    client, csrf = admin_client
    set_id = make_event_set(mappings=())
    form_page = client.get(f"/admin/event-sets/{set_id}/mappings/new")
    assert '<option value="Purchase"' in form_page.text  # standard events offered
    assert ">EUR</option>" in form_page.text  # TikTok's currencies
    saved = client.post(f"/admin/event-sets/{set_id}/mappings/new", data=mapping_form(csrf))
    assert any("Mapping 1 created (v1)" in f for f in flashes(saved.text))
    mapping = only_mapping()
    assert (mapping.trigger_type, mapping.event_name, mapping.version) == (
        "lead.sold",
        "lead_sold",
        1,
    )
    assert mapping.conditions == [
        {"attribute": "buyer_id", "op": "eq", "value": "B17"},
        {"attribute": "value", "op": "gte", "value": 50},
    ]
    assert mapping.properties == {"currency": "EUR", "order_id_from": "sale_id"}
    assert "buyer_id == &#34;B17&#34;" in saved.text and "value &gt;= 50" in saved.text
    # The edit form shows what is stored, and saving it unchanged changes nothing.
    edit = client.get(f"/admin/event-sets/{set_id}/mappings/{mapping.id}")
    assert 'value="B17"' in edit.text and 'value="50"' in edit.text
    unchanged = client.post(
        f"/admin/event-sets/{set_id}/mappings/{mapping.id}", data=mapping_form(csrf)
    )
    assert any("unchanged (v1)" in f for f in flashes(unchanged.text))
    client.post(
        f"/admin/event-sets/{set_id}/mappings/{mapping.id}",
        data=mapping_form(
            csrf,
            event_choice="Purchase",
            cond_attribute=["state", ""],
            cond_op=["in", "eq"],
            cond_value=["CA, NY", ""],
        ),
    )
    mapping = only_mapping()
    assert mapping.version == 2 and mapping.event_name == "Purchase"
    assert mapping.conditions == [{"attribute": "state", "op": "in", "value": ["CA", "NY"]}]
    client.post(
        f"/admin/event-sets/{set_id}/mappings/{mapping.id}/toggle", data={"csrf_token": csrf}
    )
    assert only_mapping().enabled is False and only_mapping().version == 3
    deleted = client.post(
        f"/admin/event-sets/{set_id}/mappings/{mapping.id}/delete", data={"csrf_token": csrf}
    )
    assert any("deleted" in f for f in flashes(deleted.text))
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalars(select(Mapping)).all() == []
        actions = [(e.action, e.actor) for e in session.scalars(select(AuditEntry))]
    assert actions[-4:] == [
        ("mapping.create", "web:alice"),
        ("mapping.update", "web:alice"),
        ("mapping.update", "web:alice"),
        ("mapping.delete", "web:alice"),
    ]


def test_a_mapping_that_cannot_produce_a_valid_payload_is_not_saved(
    admin_client: Client, make_event_set: Callable[..., int]
) -> None:
    client, csrf = admin_client
    set_id = make_event_set(mappings=())
    response = client.post(
        f"/admin/event-sets/{set_id}/mappings/new",
        data=mapping_form(
            csrf,
            trigger="Lead Sold",
            event_custom="purchase",
            cond_attribute=["value", "state"],
            cond_op=["gt", "in"],
            cond_value=["a lot", "[1, 2"],
            currency_fixed="XYZ",
            content_type="bundle",
        ),
    )
    assert response.status_code == 400
    assert "This mapping cannot be saved" in response.text
    errors = field_errors(response.text)
    assert errors["event"] == "standard events are case-sensitive: did you mean 'Purchase'?"
    assert errors["trigger"].startswith("must be lowercase letters")
    assert errors["when.0"] == "'gt' compares numbers; the value is not a number"
    assert errors["when.1"] == "'in' needs a list of values"
    assert errors["properties.currency"] == "'XYZ' is not a currency TikTok supports"
    assert errors["properties.content_type"] == "must be one of product, product_group"
    # what was typed is kept
    assert 'value="Lead Sold"' in response.text and 'value="a lot"' in response.text
    tampered = client.post(
        f"/admin/event-sets/{set_id}/mappings/new",
        data=mapping_form(csrf, event_choice="Leed", value_mode="fixed", value_fixed="lots"),
    )
    assert field_errors(tampered.text) == {
        "event": "'Leed' is not a TikTok standard event",
        "properties.value": "must be a number, e.g. 25 or 9.99",
    }
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalars(select(Mapping)).all() == []


def preview_json(page: str) -> dict[str, Any]:
    found = re.search(r'<pre class="json" id="preview-json">(.*?)</pre>', page, re.S)
    assert found, page[-3000:]
    return json.loads(html.unescape(found.group(1)))


def test_preview_an_unsaved_mapping_with_a_stored_lead(
    admin_client: Client,
    make_event_set: Callable[..., int],
    simulator: SimulatorControl,
    eager: None,
) -> None:
    client, csrf = admin_client
    set_id = make_event_set(mappings=({"trigger_type": "lead.submitted", "event_name": "Lead"},))
    enqueue_trigger(submitted("L-7"))
    before = simulator.count_events()
    page = client.post(
        f"/admin/event-sets/{set_id}/mappings/new",
        data=mapping_form(
            csrf,
            action="preview",
            preview_lead="L-7",
            preview_attributes='{"buyer_id": "B17", "value": 80, "sale_id": "S-1"}',
        ),
    )
    assert page.status_code == 200
    body = preview_json(page.text)
    [event] = body["data"]
    assert body["event_source"] == "crm" and body["event_source_id"] == EVENT_SET_ID
    assert event["event"] == "lead_sold"
    assert event["properties"] == {"value": 80.0, "currency": "EUR", "order_id": "S-1"}
    assert event["user"]["ttclid"] == "E.C.P.click-1"
    assert "this mapping (as edited)" in page.text
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert len(session.scalars(select(Mapping)).all()) == 1  # nothing saved
    assert simulator.count_events() == before  # nothing sent
    # a condition that does not hold is explained
    miss = client.post(
        f"/admin/event-sets/{set_id}/mappings/new",
        data=mapping_form(
            csrf, action="preview", preview_lead="L-7", preview_attributes='{"buyer_id": "B2"}'
        ),
    )
    assert "Nothing would be sent" in miss.text and "does not hold" in miss.text


def test_preview_page_with_a_pasted_sample_or_a_stored_trigger(
    admin_client: Client, make_event_set: Callable[..., int], sqlite_db: str
) -> None:
    client, csrf = admin_client
    set_id = make_event_set()
    sample = json.dumps(
        {
            "type": "lead.submitted",
            "lead_id": "L-9",
            "match_keys": {"email": "Jane@Example.com"},
        }
    )
    page = client.post(
        f"/admin/event-sets/{set_id}/preview", data={"csrf_token": csrf, "preview_sample": sample}
    )
    assert preview_json(page.text)["data"][0]["event"] == "Lead"
    assert "Jane@Example.com" not in page.text.split("<textarea")[-1].split("</form>")[1]
    bad = client.post(
        f"/admin/event-sets/{set_id}/preview", data={"csrf_token": csrf, "preview_sample": "{x"}
    )
    assert "sample trigger: not valid JSON" in bad.text
    enqueue_trigger(submitted("L-3"))
    with session_scope(workspace=ALL_WORKSPACES) as session:
        from models import Trigger

        trigger_id = session.scalars(select(Trigger.id)).one()
    stored = client.get(f"/admin/event-sets/{set_id}/preview?trigger_id={trigger_id}")
    assert preview_json(stored.text)["data"][0]["event"] == "Lead"
    assert f"#{trigger_id} lead.submitted" in stored.text


def test_export_yaml_from_the_page(
    admin_client: Client, make_event_set: Callable[..., int]
) -> None:
    client, _ = admin_client
    set_id = make_event_set()
    response = client.get(f"/admin/event-sets/{set_id}/mappings.yaml")
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"acme-mappings.yaml\"; filename*=UTF-8''acme-mappings.yaml"
    )
    assert [m["event"] for m in yaml.safe_load(response.text)["mappings"]] == ["lead_sold", "Lead"]


def test_verify_with_tiktok(
    admin_client: Client, make_event_set: Callable[..., int], simulator: SimulatorControl
) -> None:
    client, csrf = admin_client
    set_id = make_event_set(advertiser_id="7000000001")
    page = client.post(f"/admin/event-sets/{set_id}/verify", data={"csrf_token": csrf})
    assert flashes(page.text) == [
        f"verified: TikTok knows event set {EVENT_SET_ID} for advertiser 7000000001"
    ]
    other = make_event_set(
        name="other", source_id="7300000000000000777", advertiser_id="7000000001"
    )
    page = client.post(f"/admin/event-sets/{other}/verify", data={"csrf_token": csrf})
    assert "is not among its 1 CRM event set(s)" in page.text
    wrong = make_event_set(
        name="wrong", source_id="7300000000000000778", token="bad", advertiser_id="7000000001"
    )
    page = client.post(f"/admin/event-sets/{wrong}/verify", data={"csrf_token": csrf})
    assert "TikTok answered 40105: Access token is invalid." in html.unescape(page.text)
    no_adv = make_event_set(name="no-adv", source_id="7300000000000000779")
    page = client.post(f"/admin/event-sets/{no_adv}/verify", data={"csrf_token": csrf})
    assert "set the advertiser ID first" in page.text


def test_delivery_view_counts_errors_lead_history_and_replay(
    admin_client: Client,
    make_event_set: Callable[..., int],
    simulator: SimulatorControl,
    eager: None,
) -> None:
    client, csrf = admin_client
    set_id = make_event_set()
    enqueue_trigger(submitted("L-1"))
    simulator.set_faults(http_5xx_rate=1.0)
    enqueue_trigger(trigger("lead.sold", "L-1", attributes={"value": 9}))
    with session_scope(workspace=ALL_WORKSPACES) as session:
        sold = session.scalars(select(Postback).where(Postback.event_name == "lead_sold")).one()
        sold.status = "dead"  # as if the retry ladder had run out
        session.commit()
        sold_id = sold.id
    page = client.get("/admin/delivery")
    assert 'data-status="delivered">1<' in page.text and 'data-status="dead">1<' in page.text
    assert "Replay 1 dead" in page.text
    errors = page.text.split('id="last-errors"')[1]
    assert "lead_sold" in errors and "L-1" in errors
    lead = client.get("/admin/delivery?lead=L-1")
    assert f'name="postback_id" value="{sold_id}"' in lead.text
    assert "#1 v1" in lead.text  # the mapping version that produced it
    simulator.set_faults(http_5xx_rate=0.0)
    replayed = client.post(
        "/admin/delivery/replay",
        data={"csrf_token": csrf, "postback_id": str(sold_id), "lead": "L-1"},
    )
    assert "1 postback(s) re-queued with the same event_id." in flashes(replayed.text)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.get(Postback, sold_id).status == "delivered"  # type: ignore[union-attr]
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "postbacks.replay"))
        assert entry.one().after["postback_ids"] == [sold_id]
    assert simulator.count_events(event="lead_sold") == 1
    assert set_id


def test_unknown_things_are_404_pages(
    admin_client: Client, make_event_set: Callable[..., int]
) -> None:
    client, csrf = admin_client
    response = client.get("/admin/event-sets/999")
    assert response.status_code == 404 and "there is no event set 999" in response.text
    assert client.get("/admin/nothing-here").status_code == 404
    set_id = make_event_set()
    for path in (f"/event-sets/{set_id}/explode", f"/event-sets/{set_id}/mappings/1/explode"):
        response = client.post(f"/admin{path}", data={"csrf_token": csrf})
        assert response.status_code == 404 and "no action &#39;explode&#39;" in response.text
    response = client.get(f"/admin/event-sets/{set_id}/mappings/99")
    assert response.status_code == 404
    assert "event set &#39;acme&#39; has no mapping 99" in response.text
