"""commands.authentication.log_in: the failed-login count, its window and the lockout (read
and set through the stored timestamps), the bootstrap user, and the bound on checks at once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from crm_postback.commands import authentication
from crm_postback.commands.authentication import log_in
from crm_postback.configuration import admin_accounts
from crm_postback.configuration.admin_accounts import (
    FAILURE_WINDOW,
    LOGIN_REFUSED,
    UNUSABLE_HASH,
    LoginRefused,
    create_user,
    find_user,
    hash_password,
)
from crm_postback.core.rate_limits import Busy
from models import AdminSession, AdminUser
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import apply_env  # type: ignore[import-not-found]

PASSWORD = "correct horse battery"
WRONG = "not the password at all"


@pytest.fixture(params=["sqlite_db", "pg_db"])
def database(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param)
    return url


@pytest.fixture
def alice(database: str) -> None:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        create_user(session, "alice", PASSWORD)
        session.commit()


def stored(username: str) -> AdminUser:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        user = find_user(session, username)
        assert user is not None
        session.expunge(user)
        return user


def store(username: str, **values: object) -> None:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        user = find_user(session, username)
        assert user is not None
        for name, value in values.items():
            setattr(user, name, value)
        session.commit()


def refused(username: str, password: str) -> bool:
    try:
        log_in(username, password)
    except LoginRefused as refusal:
        assert str(refusal) == LOGIN_REFUSED
        return True
    return False


def test_a_failure_is_counted_before_the_password_is_checked(
    alice: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    check = admin_accounts.check_login_password

    def checking(attempt: admin_accounts.LoginAttempt, password: str) -> admin_accounts.LoginCheck:
        seen.append(stored("alice").failed_logins)
        return check(attempt, password)

    monkeypatch.setattr(admin_accounts, "check_login_password", checking)
    assert refused("alice", WRONG)
    log_in("alice", PASSWORD)
    assert seen == [1, 2]  # committed before each check, the right password's too
    assert stored("alice").failed_logins == 0


def test_the_fifth_failure_locks_and_a_locked_account_is_not_counted(alice: None) -> None:
    for _ in range(5):
        assert refused("alice", WRONG)
    user = stored("alice")
    assert user.failed_logins == 5 and user.locked_until is not None
    assert refused("alice", PASSWORD)
    assert stored("alice").failed_logins == 5
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalars(select(AdminSession)).all() == []


def test_a_lockout_in_the_past_is_over_and_the_count_starts_again(alice: None) -> None:
    now = datetime.now(UTC)
    store(
        "alice",
        failed_logins=5,
        failed_logins_since=now - timedelta(seconds=70),
        locked_until=now - timedelta(seconds=1),
    )
    assert refused("alice", WRONG)
    user = stored("alice")
    assert user.failed_logins == 1 and user.locked_until is None
    log_in("alice", PASSWORD)


def test_failures_older_than_the_window_are_forgotten(alice: None) -> None:
    now = datetime.now(UTC)
    store("alice", failed_logins=4, failed_logins_since=now - FAILURE_WINDOW)
    assert refused("alice", WRONG)
    user = stored("alice")
    assert user.failed_logins == 1 and user.locked_until is None
    store("alice", failed_logins=4, failed_logins_since=now - timedelta(seconds=10))
    assert refused("alice", WRONG)
    user = stored("alice")
    assert user.failed_logins == 5 and user.locked_until is not None


def test_the_bootstrap_user_exists_from_its_first_attempt_and_is_counted(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, ADMIN_USERNAME="root", ADMIN_PASSWORD="from the environment")
    assert refused("root", WRONG)
    user = stored("root")
    assert user.source == "env" and user.failed_logins == 1
    assert user.password_hash == UNUSABLE_HASH  # not hashed for a wrong attempt
    log_in("root", "from the environment")
    user = stored("root")
    assert user.failed_logins == 0 and user.password_hash.startswith("$argon2id$")
    # A rotated ADMIN_PASSWORD takes over: the old one no longer works, the new one does.
    apply_env(monkeypatch, ADMIN_PASSWORD="rotated in the environment")
    assert refused("root", "from the environment")
    log_in("root", "rotated in the environment")
    assert admin_accounts._verify(stored("root").password_hash, "rotated in the environment")
    # ADMIN_PASSWORD as an argon2 hash is stored as it is.
    rotated = hash_password("as a hash now!")
    apply_env(monkeypatch, ADMIN_PASSWORD=rotated)
    assert refused("root", "rotated in the environment")
    assert stored("root").password_hash == rotated
    log_in("root", "as a hash now!")


def test_a_user_disabled_while_its_password_is_checked_is_refused(
    alice: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    check = admin_accounts.check_login_password

    def disabling(attempt: admin_accounts.LoginAttempt, password: str) -> admin_accounts.LoginCheck:
        store("alice", active=False)
        return check(attempt, password)

    monkeypatch.setattr(admin_accounts, "check_login_password", disabling)
    assert refused("alice", PASSWORD)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalars(select(AdminSession)).all() == []


def test_logins_beyond_the_gate_are_busy_and_not_counted(
    alice: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, ADMIN_LOGIN_CONCURRENCY="1", ADMIN_LOGIN_QUEUE="0")
    holding, release = threading.Event(), threading.Event()
    check = admin_accounts.check_login_password

    def slow(attempt: admin_accounts.LoginAttempt, password: str) -> admin_accounts.LoginCheck:
        holding.set()
        release.wait(timeout=30)
        return check(attempt, password)

    monkeypatch.setattr(admin_accounts, "check_login_password", slow)
    results: list[BaseException | str] = []

    def run() -> None:
        try:
            results.append(log_in("alice", WRONG))
        except (LoginRefused, Busy) as error:
            results.append(error)

    first = threading.Thread(target=run)
    first.start()
    assert holding.wait(timeout=10)
    with pytest.raises(Busy):
        log_in("alice", WRONG)
    assert stored("alice").failed_logins == 1  # the busy attempt was not counted
    release.set()
    first.join(timeout=30)
    assert len(results) == 1 and isinstance(results[0], LoginRefused)
    assert authentication._login_gate(authentication.get_settings()).slots == 1


def test_the_bootstrap_user_is_instance_admin_and_owner_of_default(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models import DEFAULT_WORKSPACE_ID, DEFAULT_WORKSPACE_NAME, Role

    apply_env(monkeypatch, ADMIN_USERNAME="root", ADMIN_PASSWORD="from the environment")
    session_id = log_in("root", "from the environment")
    admin = authentication.resume_admin_session(session_id)
    assert admin is not None and admin.instance_admin and stored("root").instance_admin
    assert admin.membership(DEFAULT_WORKSPACE_NAME) == admin_accounts.Membership(
        DEFAULT_WORKSPACE_ID, DEFAULT_WORKSPACE_NAME, Role.OWNER
    )
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        assert [(m.username, m.role) for m in admin_accounts.list_members(session)] == [
            ("root", Role.OWNER)
        ]
