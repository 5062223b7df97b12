"""The admin login as an attacker uses it, over real HTTP (uvicorn in a thread).

Parallel wrong passwords cannot get past the lockout (item 6 of issue 13); the argon2 work
is bounded per process and per client, and a trickle of bad attempts cannot keep an admin
locked out (item 7); every refusal is the same answer after the same work, so usernames
cannot be enumerated (item 8).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from crm_postback.commands import authentication
from crm_postback.configuration import admin_accounts
from crm_postback.configuration.admin_accounts import add_member_in, create_user, find_user
from crm_postback.web.app import create_app
from models import DEFAULT_WORKSPACE_ID, AdminSession, AdminUser, Role
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import app_in_thread, apply_env  # type: ignore[import-not-found]
from tests.crm_postback.web.admin.conftest import PASSWORD, csrf_of  # type: ignore[import-not-found]

WRONG = "not the password at all"
GENEROUS = {"ADMIN_LOGIN_RATE_LIMIT": "10000/minute", "ADMIN_LOGIN_QUEUE": "64"}


class CountingHasher(PasswordHasher):
    """argon2 as the app uses it, counting each hash and verify and how many run at once.
    `hold` (when cleared) keeps every verify waiting, so slots fill deterministically."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.verified: list[str] = []
        self.hashed = 0
        self.running = 0
        self.most_running = 0
        self.hold = threading.Event()
        self.hold.set()

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        with self.lock:
            self.verified.append(hash if isinstance(hash, str) else hash.decode())
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            self.hold.wait(timeout=30)
            return super().verify(hash, password)
        finally:
            with self.lock:
                self.running -= 1

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        with self.lock:
            self.hashed += 1
        return super().hash(password, salt=salt)


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> CountingHasher:
    counting = CountingHasher()
    monkeypatch.setattr(admin_accounts, "_hasher", counting)
    return counting


@pytest.fixture(params=["sqlite_db", "pg_db"])
def database(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param)
    return url


def add_user(username: str, password: str = PASSWORD, active: bool = True) -> str:
    """Creates the user; returns its password hash."""
    with session_scope(workspace=ALL_WORKSPACES) as session:
        user = create_user(session, username, password)
        add_member_in(session, DEFAULT_WORKSPACE_ID, user, Role.OWNER)
        user.active = active
        session.commit()
        return user.password_hash


def user_row(username: str) -> AdminUser:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        user = find_user(session, username)
        assert user is not None
        session.expunge(user)
        return user


@dataclass
class Server:
    url: str
    cookies: dict[str, str] = field(default_factory=dict)
    csrf: str = ""

    def prepare(self) -> None:
        """A login form's cookie and CSRF token, shared by every attempt below."""
        with httpx.Client(base_url=self.url) as client:
            page = client.get("/admin/login")
            self.cookies = dict(client.cookies)
            self.csrf = csrf_of(page.text)

    def attempt(self, username: str, password: str) -> httpx.Response:
        with httpx.Client(base_url=self.url, cookies=self.cookies, timeout=60) as client:
            return client.post(
                "/admin/login",
                data={"csrf_token": self.csrf, "username": username, "password": password},
            )

    def parallel(self, attempts: list[tuple[str, str]]) -> list[httpx.Response]:
        barrier = threading.Barrier(len(attempts))

        def one(item: tuple[str, str]) -> httpx.Response:
            barrier.wait(timeout=30)
            return self.attempt(*item)

        with ThreadPoolExecutor(len(attempts)) as pool:
            return list(pool.map(one, attempts))


@pytest.fixture
def serve(database: str) -> Iterator[Callable[[], Server]]:
    servers: list[Any] = []

    def start() -> Server:
        context = app_in_thread(create_app())
        servers.append(context)
        server = Server(context.__enter__())
        server.prepare()
        return server

    yield start
    for context in servers:
        context.__exit__(None, None, None)


class Clock:
    """Stands in for `admin_accounts.utcnow`: the lockout reads the time only from there."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(admin_accounts, "utcnow", fake)
    return fake


# --- item 6: the lockout holds against parallel attempts ---------------------------------


def test_thirty_parallel_wrong_passwords_check_at_most_five(
    serve: Callable[[], Server], hasher: CountingHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, **GENEROUS)
    monkeypatch.setattr(authentication, "LOGIN_WAIT_SECONDS", 300.0)  # all wait their turn
    alice_hash = add_user("alice")
    server = serve()
    answers = server.parallel([("alice", WRONG)] * 30)
    assert {answer.status_code for answer in answers} == {401}
    # Only five attempts were allowed to try the password; they are all counted, and the
    # account is locked: even the right password is refused now.
    assert hasher.verified.count(alice_hash) <= 5
    row = user_row("alice")
    assert row.failed_logins == 5
    assert row.locked_until is not None and row.locked_until > datetime.now(UTC)
    assert server.attempt("alice", PASSWORD).status_code == 401
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalars(select(AdminSession)).all() == []


# --- item 7: bounded work -----------------------------------------------------------------


def test_concurrent_hashing_is_bounded_and_the_excess_answered_at_once(
    serve: Callable[[], Server], hasher: CountingHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(
        monkeypatch,
        ADMIN_LOGIN_RATE_LIMIT="10000/minute",
        ADMIN_LOGIN_CONCURRENCY="2",
        ADMIN_LOGIN_QUEUE="4",
    )
    monkeypatch.setattr(authentication, "LOGIN_WAIT_SECONDS", 300.0)  # the queue waits
    server = serve()
    hasher.hold.clear()  # the first verifies wait: two slots and four places in the queue fill
    answers: list[httpx.Response] = []
    done = threading.Condition()

    def one(index: int) -> None:
        answer = server.attempt(f"nobody-{index}", WRONG)
        with done:
            answers.append(answer)
            done.notify_all()

    threads = [threading.Thread(target=one, args=(index,)) for index in range(40)]
    for thread in threads:
        thread.start()
    with done:
        done.wait_for(lambda: len(answers) >= 34, timeout=20)
        busy = list(answers)
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/healthz").status_code == 200  # the process still answers
    hasher.hold.set()
    for thread in threads:
        thread.join(timeout=60)
    assert hasher.most_running <= 2
    assert len(busy) == 34 and {answer.status_code for answer in busy} == {503}
    assert all(int(answer.headers["retry-after"]) >= 1 for answer in busy)
    assert sorted(answer.status_code for answer in answers) == [401] * 6 + [503] * 34


def test_a_client_over_its_login_rate_gets_429_with_retry_after(
    serve: Callable[[], Server], hasher: CountingHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, ADMIN_LOGIN_RATE_LIMIT="3/minute")
    add_user("alice")
    server = serve()
    assert [server.attempt("alice", WRONG).status_code for _ in range(3)] == [401] * 3
    checked = len(hasher.verified)
    answer = server.attempt("alice", PASSWORD)
    assert answer.status_code == 429
    assert 1 <= int(answer.headers["retry-after"]) <= 60
    assert "alice" not in answer.text
    assert len(hasher.verified) == checked  # refused before any argon2 work


def test_the_login_rate_is_shared_through_redis(
    serve: Callable[[], Server],
    redis_url: str,
    hasher: CountingHasher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from crm_postback.web.admin.login_pages import login_rate_limit

    apply_env(monkeypatch, ADMIN_LOGIN_RATE_LIMIT="3/minute", RATE_LIMIT_STORAGE_URL=redis_url)
    from crm_postback.core.settings import get_settings

    login_rate_limit(get_settings()).clear("127.0.0.1")
    first, second = serve(), serve()  # two apps: in memory they would count apart
    assert first.attempt("nobody", WRONG).status_code == 401
    assert second.attempt("nobody", WRONG).status_code == 401
    assert first.attempt("nobody", WRONG).status_code == 401
    assert second.attempt("nobody", WRONG).status_code == 429
    login_rate_limit(get_settings()).clear("127.0.0.1")


def test_the_lockout_ends_and_a_trickle_of_bad_attempts_never_renews_it(
    serve: Callable[[], Server], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, **GENEROUS)
    add_user("alice")
    server = serve()
    for _ in range(5):
        assert server.attempt("alice", WRONG).status_code == 401
    assert server.attempt("alice", PASSWORD).status_code == 401  # locked
    for _ in range(20):
        # An attacker's one bad attempt a minute, just after each lockout would end.
        clock.advance(minutes=1, seconds=1)
        assert server.attempt("alice", WRONG).status_code == 401
        clock.advance(seconds=20)
        row = user_row("alice")
        assert row.locked_until is None or row.locked_until <= clock.now
    assert server.attempt("alice", PASSWORD).status_code == 303


def test_failed_attempts_are_forgotten_after_the_window(
    serve: Callable[[], Server], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, **GENEROUS)
    add_user("alice")
    server = serve()
    for _ in range(60):  # an hour of one bad attempt a minute, never a success between
        clock.advance(minutes=1)
        assert server.attempt("alice", WRONG).status_code == 401
    clock.advance(seconds=30)
    assert server.attempt("alice", PASSWORD).status_code == 303


# --- item 8: one answer, one argon2 verify, whoever is asked about --------------------------


def _answer_of(response: httpx.Response) -> tuple[int, str, dict[str, str]]:
    headers = {
        name: value
        for name, value in response.headers.items()
        if name not in {"set-cookie", "date"}
    }
    return response.status_code, response.text, headers


def test_every_refused_login_is_the_same_answer_after_the_same_work(
    serve: Callable[[], Server], hasher: CountingHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, ADMIN_USERNAME="root", ADMIN_PASSWORD="bootstrap secret!", **GENEROUS)
    add_user("alice")
    add_user("carol")
    add_user("dave", active=False)
    server = serve()
    for _ in range(5):
        server.attempt("carol", WRONG)
    cases = {
        "unknown user": ("nobody", WRONG),
        "wrong password": ("alice", WRONG),
        "locked, wrong password": ("carol", WRONG),
        "locked, right password": ("carol", PASSWORD),
        "disabled, right password": ("dave", PASSWORD),
        "bootstrap user, first attempt": ("root", WRONG),
        "bootstrap user, again": ("root", WRONG),
        "NUL in the username": ("ali\x00ce", WRONG),
        "10,000 character username": ("a" * 10_000, WRONG),
        "empty": ("", ""),
    }
    answers = {}
    for case, (username, password) in cases.items():
        verified, hashed = len(hasher.verified), hasher.hashed
        answers[case] = _answer_of(server.attempt(username, password))
        assert (len(hasher.verified) - verified, hasher.hashed - hashed) == (1, 0), case
    expected = answers["unknown user"]
    assert expected[0] == 401
    for case, answer in answers.items():
        assert answer == expected, case
    assert "nobody" not in expected[1]
    # The refusals changed nothing that lets the right passwords in later.
    assert server.attempt("root", "bootstrap secret!").status_code == 303
    assert server.attempt("alice", PASSWORD).status_code == 303
