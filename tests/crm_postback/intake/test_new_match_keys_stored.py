"""Names, address parts, locale and page through the Python API, on SQLite and PostgreSQL: only
hashes (and the sanitised page) are stored, a bad key costs only itself, and parallel upserts
of one lead keep one row with the newest keys."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select, text

from crm_postback.api import enqueue_trigger, enqueue_triggers, upsert_lead_keys
from models import Lead, Trigger
from models.db import get_engine, session_scope
from models.workspace_scope import ALL_WORKSPACES

RAW = {
    "first_name": "Zelda-Secretname",
    "last_name": "O'Privatissimo",
    "city": "Quietsville Hollow",
    "state": "Hiddenstate",
    "country": "US",
    "zip_code": "97531-8642",
}
RAW_FORMS = (
    "Zelda",
    "zelda",
    "Secretname",
    "secretname",
    "Privatissimo",
    "privatissimo",
    "Quietsville",
    "quietsville",
    "Hiddenstate",
    "hiddenstate",
    "97531",
    "zelda.secret@privacy-test.example",
    "2133734253",
)


def sha(text_: str) -> str:
    return hashlib.sha256(text_.encode()).hexdigest()


@pytest.fixture(params=["sqlite_db", "pg_db"])
def backend(request: pytest.FixtureRequest, make_event_set: Callable[..., int]) -> str:
    name = str(request.param)
    request.getfixturevalue(name)
    make_event_set()
    return name


def trigger(lead: str = "L-1", **keys: Any) -> dict[str, Any]:
    return {
        "type": "lead.submitted",
        "lead_id": lead,
        "event_set": "acme",
        "occurred_at": "2026-01-01T00:00:00Z",
        "match_keys": keys,
    }


def every_stored_text(backend: str, isolated_settings: Path) -> str:
    if backend == "sqlite_db":
        files = [p.read_bytes() for p in isolated_settings.glob("**/postback.db*")]
        assert files, "the SQLite files were not found"
        return b"".join(files).decode("latin-1")
    engine = get_engine()
    texts: list[str] = []
    with engine.connect() as connection:
        for table in inspect(engine).get_table_names():
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                texts.append(repr(tuple(row)))
    return "\n".join(texts)


def test_raw_names_and_address_parts_are_never_stored(
    backend: str, isolated_settings: Path
) -> None:
    accepted = enqueue_trigger(
        {
            **trigger(
                email="zelda.secret@privacy-test.example",
                phone="+2132435345",
                locale="en_US",
                page={
                    "url": "https://acme.example/o?e=zelda.secret%40privacy-test.example&utm_source=tt",
                    "referrer": "https://www.tiktok.com/",
                },
                **RAW,
            ),
            "event_id": "pixel-1",
        }
    )
    assert [w.field for w in accepted.warnings] == ["match_keys.phone"]
    upsert_lead_keys("L-2", {**RAW, "first_name": "Zelda"})
    stored = every_stored_text(backend, isolated_settings)
    for raw in RAW_FORMS:
        assert raw not in stored, raw
    with session_scope(workspace=ALL_WORKSPACES) as session:
        lead = session.scalars(select(Lead).where(Lead.lead_ref == "L-1")).one()
        assert lead.first_name_hash == sha("zelda-secretname".replace("-", ""))
        assert lead.last_name_hash == sha("oprivatissimo")
        assert lead.city_hash == sha("quietsvillehollow")
        assert lead.state_hash == sha("hiddenstate")
        assert lead.country_hash == sha("us")
        assert lead.zip_code_hash == sha("97531")
        assert lead.locale == "en-US"
        assert lead.page_url == "https://acme.example/o?utm_source=tt"
        assert lead.page_referrer == "https://www.tiktok.com/"
        row = session.scalars(select(Trigger)).one()
        assert (row.event_id, row.dropped_keys) == ("pixel-1", ["phone"])


@pytest.mark.parametrize(
    ("keys", "dropped"),
    [
        ({"country": "United States"}, ["country"]),
        ({"first_name": "..."}, ["first_name"]),
        ({"page": {"url": "javascript:alert(1)"}}, ["page_url"]),
        ({"page": {"referrer": "x" * 3000}}, ["page_referrer"]),
        ({"locale": "not a tag"}, ["locale"]),
        ({"zip_code": "9" * 40, "city": "ok"}, ["zip_code"]),
    ],
)
def test_a_bad_new_key_is_dropped_and_the_others_arrive(
    backend: str, keys: dict[str, Any], dropped: list[str]
) -> None:
    accepted = enqueue_trigger(trigger(email="jane@example.com", ttclid="E.C.P.1", **keys))
    assert accepted.warnings and all(w.message.endswith("; dropped") for w in accepted.warnings)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalars(select(Trigger.dropped_keys)).one() == dropped
        lead = session.scalars(select(Lead)).one()
        assert lead.email_hashes == [sha("jane@example.com")] and lead.ttclid == "E.C.P.1"


def test_the_page_urls_ttclid_wins_over_the_one_given(backend: str) -> None:
    enqueue_trigger(
        trigger(ttclid="E.C.P.given", page={"url": "https://acme.example/?ttclid=E.C.P.url"})
    )
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalars(select(Lead.ttclid)).one() == "E.C.P.url"


@pytest.mark.parametrize(
    ("query", "warned"),
    [
        ("ttclid=abc%00def", False),  # NUL: not storable on PostgreSQL
        ("ttclid=abc%0A%1B%5B31mdef", False),  # control characters: forged history lines
        ("ttclid=" + "E" * 600, True),  # longer than a ttclid may be
    ],
)
def test_a_poisoned_url_ttclid_never_fails_the_batch(
    backend: str, query: str, warned: bool
) -> None:
    """A visitor of the landing page controls its URL: a ttclid there gets a ttclid key's
    checks, and the batch around it is stored."""
    poison = trigger("L-poison", email="p@example.com", page={"url": f"https://a.example/?{query}"})
    items = enqueue_triggers(
        [trigger("L-good-0", email="g0@example.com"), poison, trigger("L-good-1")]
    )
    assert [item.accepted is not None for item in items] == [True, True, True]
    fields = [w.field for w in items[1].warnings]
    assert fields == (["match_keys.page.url"] if warned else [])
    with session_scope(workspace=ALL_WORKSPACES) as session:
        lead = session.scalars(select(Lead).where(Lead.lead_ref == "L-poison")).one()
        assert lead.ttclid is None
        # Not printable once decoded: the parameter goes; only too long: the URL keeps it.
        assert lead.page_url == (f"https://a.example/?{query}" if warned else "https://a.example/")
        assert session.scalar(select(func.count()).select_from(Trigger)) == 3


def test_parallel_upserts_of_one_lead_keep_one_row_with_every_kind(backend: str) -> None:
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def upsert(n: int) -> None:
        try:
            barrier.wait()
            upsert_lead_keys(
                "L-race",
                {
                    "first_name": f"Name{n}",
                    "city": f"City{n}",
                    "email": f"p{n}@example.com",
                    "phone": "+2132435345",  # dropped each time, never fails the call
                },
                limited_data_use=n % 2 == 0,
            )
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=upsert, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with session_scope(workspace=ALL_WORKSPACES) as session:
        [lead] = session.scalars(select(Lead)).all()
        names = {sha(f"name{n}") for n in range(8)}
        assert lead.first_name_hash in names
        assert lead.city_hash in {sha(f"city{n}") for n in range(8)}
        assert len(lead.email_hashes) == 5  # the newest five of eight
        assert lead.phone_hashes == []
        assert lead.limited_data_use in (True, False)


def test_dropped_keys_are_counted_by_kind_on_the_metrics(backend: str) -> None:
    from crm_postback.observability.metric_definitions import metrics

    def count(kind: str) -> float:
        value = metrics().registry.get_sample_value(
            "postback_match_keys_dropped_total", {"workspace": "default", "kind": kind}
        )
        return value or 0.0

    before = count("phone"), count("country")
    enqueue_trigger(trigger(email="jane@example.com", phone="+2132435345", country="Germany"))
    upsert_lead_keys("L-2", {"phone": "12345678901234"})
    assert (count("phone"), count("country")) == (before[0] + 2, before[1] + 1)
