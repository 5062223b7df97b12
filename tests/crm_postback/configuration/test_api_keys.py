"""API keys in a workspace: what create_key accepts, and a key of another workspace not found."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from crm_postback.configuration.api_keys import (
    NO_SUCH_EVENT_SET,
    PERMISSIONS,
    Caller,
    KeyRevoked,
    authenticate,
    checked_rate_limit,
    create_key,
    event_set_names,
    get_key,
    list_keys,
    revoke_key,
)
from crm_postback.configuration.audit import SYSTEM_ACTOR
from crm_postback.configuration.event_set_service import create_event_set
from crm_postback.configuration.workspaces import add_workspace
from crm_postback.core.errors import InputRejected
from crm_postback.core.rate_limits import NO_RATE_LIMIT
from crm_postback.core.settings import Settings, get_settings
from models import DEFAULT_WORKSPACE_ID, ApiKey
from models.db import get_engine, session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import EVENT_SET_ID, TOKEN  # type: ignore[import-not-found]
from tests.sql_statements import recorded_statements  # type: ignore[import-not-found]

OTHER_SET_ID = "7300000000000000009"


@pytest.fixture(params=["sqlite_db", "pg_db"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


@pytest.fixture
def two_workspaces(backend: str, make_event_set: Callable[..., int]) -> tuple[int, int]:
    """The default workspace with event sets `acme` and `second`; `globex` with `hidden`."""
    make_event_set()
    make_event_set(name="second", source_id="7300000000000000003")
    with session_scope(workspace=ALL_WORKSPACES) as session:
        other = add_workspace(session, "globex").id
        session.commit()
    with session_scope(workspace=other) as session:
        create_event_set(
            session,
            get_settings(),
            name="hidden",
            source_id=OTHER_SET_ID,
            access_token=TOKEN,
            actor=SYSTEM_ACTOR,
        )
        session.commit()
    return DEFAULT_WORKSPACE_ID, other


def refused(work: Callable[[], object]) -> list[tuple[str, str]]:
    with pytest.raises(InputRejected) as caught:
        work()
    return [(error.field, error.message) for error in caught.value.errors]


def test_a_key_may_be_limited_to_event_sets_named_any_way(two_workspaces: tuple[int, int]) -> None:
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        new = create_key(session, "router", event_sets=["acme", EVENT_SET_ID, " second "])
        assert new.event_set_ids is not None and len(new.event_set_ids) == 2
        row = get_key(session, new.id)
        assert event_set_names(session, row) == ["acme", "second"]
        by_id = create_key(session, "by-id", event_sets=[new.event_set_ids[0]])
        assert by_id.event_set_ids == new.event_set_ids[:1]
        everything = create_key(session, "all")
        assert everything.event_set_ids is None and everything.permissions == PERMISSIONS
        assert event_set_names(session, get_key(session, everything.id)) is None


def test_an_event_set_of_another_workspace_is_refused_as_one_that_does_not_exist(
    two_workspaces: tuple[int, int],
) -> None:
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        references: tuple[int | str, ...] = (
            *("hidden", OTHER_SET_ID, "nothing-at-all", "3", "jane@example.com"),
            *(True, 2**31, "2147483648", "\x00", "x" * 101),  # no id, no name
        )
        answers = [
            refused(lambda ref=ref: create_key(session, "router", event_sets=["acme", ref]))
            for ref in references
        ]
        session.rollback()
    assert all(answer == [("event_set", NO_SUCH_EVENT_SET)] for answer in answers)
    for text in ("hidden", OTHER_SET_ID, "jane"):
        assert text not in str(answers)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalars(select(ApiKey)).all() == []


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"permissions": ["triggers:send", "admin"]}, "permission"),
        ({"permissions": []}, "permission"),
        ({"rate_limit": "lots"}, "rate_limit"),
        ({"rate_limit": "0/second"}, "rate_limit"),
        ({"rate_limit": "1" * 100 + "/second"}, "rate_limit"),
        ({"event_sets": []}, "event_set"),
    ],
)
def test_bad_options_are_refused_naming_the_field(
    two_workspaces: tuple[int, int], options: dict[str, object], field: str
) -> None:
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        answer = refused(lambda: create_key(session, "router", **options))  # type: ignore[arg-type]
    assert [f for f, _ in answer] == [field]
    assert "admin" not in str(answer) and "lots" not in str(answer)


def test_permissions_and_rate_limits_are_kept(two_workspaces: tuple[int, int]) -> None:
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        new = create_key(
            session,
            "reader",
            permissions=["postbacks:read", "triggers:send"],
            rate_limit="100 per second",
        )
        assert new.permissions == ("triggers:send", "postbacks:read")  # in the fixed order
        off = create_key(session, "unlimited", rate_limit="None")
        session.commit()
        assert off.rate_limit == "none"
    with session_scope(workspace=ALL_WORKSPACES) as session:
        caller = authenticate(session, new.key)
    assert caller == Caller(
        key_id=new.id,
        workspace_id=DEFAULT_WORKSPACE_ID,
        event_set_ids=None,
        permissions=frozenset({"triggers:send", "postbacks:read"}),
        rate_limit="100 per second",
    )
    assert not caller.may("leads:write")


def test_authentication_is_one_lookup_of_the_key_row(backend: str) -> None:
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        new = create_key(session, "router")
        session.commit()
    with (
        recorded_statements(get_engine()) as statements,
        session_scope(workspace=ALL_WORKSPACES) as session,
    ):
        assert authenticate(session, new.key) is not None
    [lookup] = [s.sql for s in statements if s.verb == "SELECT"]
    assert "api_keys" in lookup and "workspaces" not in lookup


def test_a_key_of_another_workspace_is_not_found_listed_or_revoked(
    two_workspaces: tuple[int, int],
) -> None:
    _, other = two_workspaces
    with session_scope(workspace=other) as session:
        theirs = create_key(session, "globex-router", event_sets=["hidden"])
        session.commit()
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        mine = create_key(session, "acme-router")
        session.commit()
        assert [row.id for row in list_keys(session)] == [mine.id]
        # The answer for an id nobody has: "no api key N", naming only the id asked for.
        assert refused(lambda: revoke_key(session, theirs.id)) == [
            ("id", f"no api key {theirs.id}")
        ]
        assert refused(lambda: get_key(session, 999)) == [("id", "no api key 999")]
        session.commit()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        caller = authenticate(session, theirs.key)  # not revoked
    assert caller is not None
    assert caller.workspace_id == other
    assert caller.event_set_ids is not None and len(caller.event_set_ids) == 1


def test_a_revoked_key_raises_with_its_caller(two_workspaces: tuple[int, int]) -> None:
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        new = create_key(session, "router")
        revoke_key(session, new.id)
        session.commit()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        with pytest.raises(KeyRevoked) as caught:
            authenticate(session, new.key)
        assert authenticate(session, new.key + "x") is None
    assert caught.value.caller.key_id == new.id


def test_one_list_of_words_turns_a_rate_limit_off(monkeypatch: pytest.MonkeyPatch) -> None:
    for word in NO_RATE_LIMIT:
        assert checked_rate_limit(f" {word.upper()} ") == word
        monkeypatch.setenv("INGEST_KEY_RATE_LIMIT", word.upper())
        assert Settings().ingest_key_rate_limit == word
    monkeypatch.setenv("ADMIN_LOGIN_RATE_LIMIT", "off")  # the login limit cannot be turned off
    with pytest.raises(ValueError, match="admin_login_rate_limit"):
        Settings()
