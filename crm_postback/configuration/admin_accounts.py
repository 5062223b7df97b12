"""Admin users, browser sessions and API tokens (no commit here; callers commit).

Passwords are hashed with argon2id. A browser session is a random id in a signed cookie; the
database keeps only its SHA-256, with the session's CSRF token and expiry, so logout really
ends it. API tokens (`pba_…`) are personal to a user, shown once, stored as SHA-256.

A login is checked in three steps (`commands.authentication.log_in` runs them):
`count_login_attempt` counts the attempt as failed before its password is looked at (one
UPDATE, so parallel attempts cannot all pass the lock check), `check_login_password` runs
the one argon2 verify every attempt runs, and `complete_login` clears the count and starts
the session. Every refusal says the same thing after the same work: an unknown user, a
wrong password, a locked or disabled account and the bootstrap user alike.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import case, delete, literal, null, or_, select, update
from sqlalchemy.orm import Session

from crm_postback.core.errors import InputRejected
from crm_postback.core.jsontext import is_storable_text
from crm_postback.core.settings import Settings
from models import (
    DEFAULT_WORKSPACE_ID,
    AdminSession,
    AdminToken,
    AdminUser,
    AdminUserSource,
    Role,
    Workspace,
    WorkspaceMember,
    utcnow,
)
from models.base import UTCDateTime
from models.bulk import insert_ignoring_conflicts

TOKEN_PREFIX = "pba_"
# Five failures within a minute of the first lock the account for a minute. Failures are
# forgotten a minute after the first of them and when a lockout ends, so an attacker's one
# bad attempt a minute never locks an admin out.
MAX_FAILED_LOGINS = 5
FAILURE_WINDOW = timedelta(minutes=1)
LOCKOUT = timedelta(minutes=1)
LOGIN_REFUSED = "wrong username or password; too many failed attempts lock an account for a minute"
LAST_SEEN_RESOLUTION = timedelta(seconds=60)
MIN_PASSWORD_LENGTH = 10
MAX_USERNAME_LENGTH = 100
# Stored for the bootstrap user until it logs in with ADMIN_PASSWORD in clear: no password
# verifies against it, so nobody logs in as that user through the stored hash alone.
UNUSABLE_HASH = "!"

_hasher = PasswordHasher()
# Verified against when there is no hash to check (an unknown user, a locked account), so
# every attempt runs one argon2 verify with the same parameters.
_DUMMY_HASH = _hasher.hash("no such user: a password nobody has")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def _text_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def hash_password(password: str) -> str:
    return _hasher.hash(_text_bytes(password))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, _text_bytes(password))
    except (VerificationError, InvalidHashError):
        return False


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InputRejected.one("password", f"must be at least {MIN_PASSWORD_LENGTH} characters")


def find_user(session: Session, username: str) -> AdminUser | None:
    return session.scalar(select(AdminUser).where(AdminUser.username == username.strip()))


# Usernames are the instance's: adding a member needs an existing user (made by an instance
# administrator); the name is not repeated back.
NO_SUCH_USER = "there is no admin user of this name"


def get_user(session: Session, username: str) -> AdminUser:
    user = find_user(session, username)
    if user is None:
        raise InputRejected.one("username", NO_SUCH_USER)
    return user


def create_user(
    session: Session,
    username: str,
    password: str,
    source: str = "cli",
    *,
    instance_admin: bool = False,
) -> AdminUser:
    username = username.strip()
    if not 1 <= len(username) <= 100 or any(c.isspace() for c in username):
        raise InputRejected.one("username", "must be 1 to 100 characters without spaces")
    if find_user(session, username) is not None:
        raise InputRejected.one("username", f"a user {username!r} exists")
    _check_password(password)
    user = AdminUser(
        username=username,
        password_hash=hash_password(password),
        source=source,
        active=True,
        instance_admin=instance_admin,
        failed_logins=0,
    )
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, user: AdminUser, password: str) -> None:
    _check_password(password)
    user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.failed_logins_since = None
    user.locked_until = None
    end_sessions(session, user)


def set_active(session: Session, user: AdminUser, active: bool) -> None:
    user.active = active
    if not active:
        end_sessions(session, user)


def end_sessions(session: Session, user: AdminUser) -> None:
    session.execute(delete(AdminSession).where(AdminSession.user_id == user.id))


class LoginRefused(Exception):
    """Always with LOGIN_REFUSED: it never says which part was wrong, nor that an account
    is locked (a locked state would tell that the account exists)."""

    def __init__(self) -> None:
        super().__init__(LOGIN_REFUSED)


@dataclass(frozen=True)
class LoginAttempt:
    """An attempt counted by `count_login_attempt`: what checking its password needs."""

    user_id: int | None  # None: no such user, or locked (refused whatever the password)
    password_hash: str
    active: bool
    bootstrap_password: str | None  # ADMIN_PASSWORD, when this is ADMIN_USERNAME


@dataclass(frozen=True)
class LoginCheck:
    accepted: bool
    new_hash: str | None  # to store: the stored one is outdated or missing


_REFUSED_ANYWAY = LoginAttempt(None, _DUMMY_HASH, False, None)


def _could_be_username(name: str) -> bool:
    """False for what no user can be called (and some databases cannot even compare)."""
    return 1 <= len(name) <= MAX_USERNAME_LENGTH and is_storable_text(name)


def _bootstrap_password(settings: Settings, name: str) -> str | None:
    bootstrap = settings.admin_username.strip()
    if bootstrap and settings.admin_password and name == bootstrap:
        return settings.admin_password
    return None


def _ensure_bootstrap_user(session: Session, name: str, secret: str, now: datetime) -> None:
    """ADMIN_USERNAME exists from its first login attempt on, so its failures are counted
    like anyone's. An argon2 hash in ADMIN_PASSWORD is stored as it is; a password in clear
    is stored hashed at its first successful login (hashing at every attempt would make this
    user's attempts slower than anyone else's)."""
    users = AdminUser.__table__
    is_hash = secret.startswith("$argon2")
    if session.scalar(select(users.c.id).where(users.c.username == name)) is None:
        session.execute(
            insert_ignoring_conflicts(session, users).values(
                username=name,
                password_hash=secret if is_hash else UNUSABLE_HASH,
                source=AdminUserSource.ENV,
                active=True,
                instance_admin=True,
                failed_logins=0,
                created_at=now,
            )
        )
        user_id = session.scalar(select(users.c.id).where(users.c.username == name))
        members = WorkspaceMember.__table__
        session.execute(
            insert_ignoring_conflicts(session, members).values(
                workspace_id=DEFAULT_WORKSPACE_ID, user_id=user_id, role=Role.OWNER, created_at=now
            )
        )
    elif is_hash:
        session.execute(
            update(users)
            .where(users.c.username == name, users.c.password_hash != secret)
            .values(password_hash=secret)
        )


def count_login_attempt(
    session: Session, settings: Settings, username: str, now: datetime | None = None
) -> LoginAttempt:
    """Counts the attempt as a failure, in one UPDATE that also locks the account at the
    fifth failure within FAILURE_WINDOW; a locked account is not counted and is refused
    whatever the password. `complete_login` clears the count if the password was right."""
    now = now or utcnow()
    name = username.strip()
    if not _could_be_username(name):
        return _REFUSED_ANYWAY
    bootstrap = _bootstrap_password(settings, name)
    if bootstrap is not None:
        _ensure_bootstrap_user(session, name, bootstrap, now)
    users = AdminUser.__table__
    at_now = literal(now, UTCDateTime())
    starts_over = or_(
        users.c.failed_logins_since.is_(None),
        users.c.failed_logins_since <= now - FAILURE_WINDOW,
        users.c.locked_until.is_not(None),  # a lockout that has ended
    )
    count = case((starts_over, 1), else_=users.c.failed_logins + 1)
    row = session.execute(
        update(users)
        .where(
            users.c.username == name,
            or_(users.c.locked_until.is_(None), users.c.locked_until <= now),
        )
        .values(
            failed_logins=count,
            failed_logins_since=case((starts_over, at_now), else_=users.c.failed_logins_since),
            locked_until=case(
                (count >= MAX_FAILED_LOGINS, literal(now + LOCKOUT, UTCDateTime())),
                else_=null(),
            ),
        )
        .returning(users.c.id, users.c.password_hash, users.c.active)
    ).one_or_none()
    if row is None:
        return _REFUSED_ANYWAY
    return LoginAttempt(row.id, row.password_hash, row.active, bootstrap)


def check_login_password(attempt: LoginAttempt, password: str) -> LoginCheck:
    """Runs exactly one argon2 verify, whatever the attempt (the dummy hash stands in when
    there is nothing to verify against); no transaction should be open meanwhile."""
    stored = attempt.password_hash
    matches = _verify(stored if stored.startswith("$argon2") else _DUMMY_HASH, password)
    clear = attempt.bootstrap_password
    if clear is not None and not clear.startswith("$argon2"):
        # ADMIN_PASSWORD in clear is the password; the stored hash may be older.
        right = hmac.compare_digest(_text_bytes(password), _text_bytes(clear))
    else:
        right = matches
    if not (right and attempt.user_id is not None and attempt.active):
        return LoginCheck(False, None)
    if not matches or _hasher.check_needs_rehash(stored):
        return LoginCheck(True, hash_password(password))
    return LoginCheck(True, None)


def complete_login(
    session: Session,
    settings: Settings,
    attempt: LoginAttempt,
    check: LoginCheck,
    now: datetime | None = None,
) -> str:
    """A new session id for an accepted attempt; its failures (and any lockout) cleared."""
    now = now or utcnow()
    if not check.accepted or attempt.user_id is None:
        raise LoginRefused()
    users = AdminUser.__table__
    values: dict[str, object] = {
        "failed_logins": 0,
        "failed_logins_since": None,
        "locked_until": None,
        "last_login_at": now,
    }
    if check.new_hash is not None:
        values["password_hash"] = check.new_hash
    still_there = session.execute(
        update(users)
        .where(users.c.id == attempt.user_id, users.c.active.is_(True))
        .values(**values)
        .returning(users.c.id)
    ).one_or_none()
    user = session.get(AdminUser, attempt.user_id) if still_there else None
    if user is None:  # deleted or disabled since the attempt was counted
        raise LoginRefused()
    return start_session(session, settings, user, now)


@dataclass(frozen=True)
class Membership:
    """A workspace an admin may act in, and the role they have there."""

    workspace_id: int
    name: str
    role: Role


@dataclass(frozen=True)
class Admin:
    """Who is calling: a logged-in browser or an API token, with the workspaces they may
    act in (every workspace, as owner, for an instance administrator). `workspace` is the
    one this request acts in, once the face has resolved it."""

    user_id: int
    username: str
    csrf_token: str | None  # None for API tokens (no cookies, no CSRF)
    via: str  # "web" or "api"
    instance_admin: bool = False
    memberships: tuple[Membership, ...] = ()
    workspace: Membership | None = None

    @property
    def actor(self) -> str:
        return f"{self.via}:{self.username}"

    def membership(self, name: str) -> Membership | None:
        return next((m for m in self.memberships if m.name == name), None)

    def default_membership(self) -> Membership | None:
        """The default workspace if a member of it, else the first by name."""
        for member in self.memberships:
            if member.workspace_id == DEFAULT_WORKSPACE_ID:
                return member
        return min(self.memberships, key=lambda m: m.name, default=None)

    def in_workspace(self, membership: Membership) -> Admin:
        return replace(self, workspace=membership)

    @property
    def current(self) -> Membership:
        if self.workspace is None:
            raise RuntimeError("the admin's workspace was not resolved")
        return self.workspace

    def may(self, role: Role) -> bool:
        """For showing or hiding what a role cannot use; the commands check for real."""
        return self.instance_admin or (
            self.workspace is not None and self.workspace.role.includes(role)
        )


def memberships_of(session: Session, user: AdminUser) -> tuple[Membership, ...]:
    """By workspace name; an instance administrator is owner of every workspace."""
    if user.instance_admin:
        rows = session.execute(select(Workspace.id, Workspace.name).order_by(Workspace.name))
        return tuple(Membership(row.id, row.name, Role.OWNER) for row in rows)
    found = session.execute(
        select(Workspace.id, Workspace.name, WorkspaceMember.role)
        .join(WorkspaceMember, WorkspaceMember.workspace_id == Workspace.id)
        .where(WorkspaceMember.user_id == user.id)
        .order_by(Workspace.name)
    )
    return tuple(Membership(row.id, row.name, row.role) for row in found)


def _admin(session: Session, user: AdminUser, csrf_token: str | None, via: str) -> Admin:
    return Admin(
        user.id,
        user.username,
        csrf_token,
        via,
        instance_admin=user.instance_admin,
        memberships=memberships_of(session, user),
    )


@dataclass(frozen=True)
class Member:
    user_id: int
    username: str
    role: Role
    active: bool


def list_members(session: Session) -> list[Member]:
    """The members of the session's workspace (the session's scope filters them)."""
    rows = session.execute(
        select(WorkspaceMember.user_id, AdminUser.username, WorkspaceMember.role, AdminUser.active)
        .join(AdminUser, AdminUser.id == WorkspaceMember.user_id)
        .order_by(AdminUser.username)
    )
    return [Member(row.user_id, row.username, row.role, row.active) for row in rows]


def checked_role(role: str | Role) -> Role:
    try:
        return Role(str(role).strip().lower())
    except ValueError:
        raise InputRejected.one("role", "must be viewer, editor or owner") from None


def find_member(session: Session, user: AdminUser) -> WorkspaceMember | None:
    """The user's membership of the session's workspace."""
    return session.scalar(select(WorkspaceMember).where(WorkspaceMember.user_id == user.id))


def add_member(session: Session, user: AdminUser, role: Role) -> WorkspaceMember:
    """Makes the user a member of the session's workspace."""
    if find_member(session, user) is not None:
        raise InputRejected.one("username", "is a member of this workspace already")
    member = WorkspaceMember(user_id=user.id, role=role)
    session.add(member)
    session.flush()
    return member


def get_member(session: Session, user: AdminUser) -> WorkspaceMember:
    member = find_member(session, user)
    if member is None:
        raise InputRejected.one("username", "is not a member of this workspace")
    return member


def remove_member(session: Session, member: WorkspaceMember) -> None:
    session.delete(member)
    session.flush()


def add_member_in(session: Session, workspace_id: int, user: AdminUser, role: Role) -> None:
    """Makes the user a member of a workspace, in a session over every workspace."""
    exists = session.scalar(
        select(WorkspaceMember.id).where(
            WorkspaceMember.workspace_id == workspace_id, WorkspaceMember.user_id == user.id
        )
    )
    if exists is not None:
        raise InputRejected.one("username", "is a member of this workspace already")
    session.add(WorkspaceMember(workspace_id=workspace_id, user_id=user.id, role=role))
    session.flush()


def start_session(
    session: Session, settings: Settings, user: AdminUser, now: datetime | None = None
) -> str:
    """A new session id (for the cookie); a fresh id at each login prevents fixation."""
    now = now or utcnow()
    session_id = secrets.token_urlsafe(32)
    session.execute(
        delete(AdminSession).where(AdminSession.expires_at < now)
    )  # tidy up sessions that ended on their own
    session.add(
        AdminSession(
            user_id=user.id,
            session_sha256=digest(session_id),
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(hours=settings.admin_session_max_hours),
        )
    )
    session.flush()
    return session_id


def resume_session(
    session: Session, settings: Settings, session_id: str, now: datetime | None = None
) -> Admin | None:
    now = now or utcnow()
    row = session.scalar(
        select(AdminSession).where(AdminSession.session_sha256 == digest(session_id))
    )
    if row is None:
        return None
    idle_limit = row.last_seen_at + timedelta(minutes=settings.admin_session_idle_minutes)
    user = session.get(AdminUser, row.user_id)
    if row.expires_at <= now or idle_limit <= now or user is None or not user.active:
        session.delete(row)
        return None
    if now - row.last_seen_at >= LAST_SEEN_RESOLUTION:
        row.last_seen_at = now
    return _admin(session, user, row.csrf_token, "web")


def end_session(session: Session, session_id: str) -> None:
    session.execute(delete(AdminSession).where(AdminSession.session_sha256 == digest(session_id)))


def csrf_matches(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


@dataclass(frozen=True)
class NewToken:
    id: int
    token: str  # shown once
    prefix: str


def create_token(session: Session, user: AdminUser, label: str) -> NewToken:
    label = label.strip()
    if not 1 <= len(label) <= 100:
        raise InputRejected.one("label", "must be 1 to 100 characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = AdminToken(
        user_id=user.id, label=label, token_prefix=token[:12], token_sha256=digest(token)
    )
    session.add(row)
    session.flush()
    return NewToken(row.id, token, row.token_prefix)


def get_token(session: Session, token_id: int) -> AdminToken:
    row = session.get(AdminToken, token_id)
    if row is None:
        raise InputRejected.one("id", f"no admin token {token_id}")
    return row


def revoke_token(session: Session, token_id: int) -> AdminToken:
    row = get_token(session, token_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


class TokenRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def authenticate_token(session: Session, token: str, now: datetime | None = None) -> Admin:
    now = now or utcnow()
    if not token.startswith(TOKEN_PREFIX):
        raise TokenRefused(
            401,
            "not an admin token: ingest API keys (pbk_…) cannot change configuration; "
            "create one with `postback admin token-create USER`",
        )
    row = session.scalar(select(AdminToken).where(AdminToken.token_sha256 == digest(token)))
    if row is None:
        raise TokenRefused(401, "unknown admin token")
    user = session.get(AdminUser, row.user_id)
    if row.revoked_at is not None or user is None or not user.active:
        raise TokenRefused(403, "this admin token has been revoked or its user disabled")
    if row.last_used_at is None or now - row.last_used_at >= LAST_SEEN_RESOLUTION:
        row.last_used_at = now
    return _admin(session, user, None, "api")


def tokens_of(session: Session, user_id: int) -> list[AdminToken]:
    """A user's tokens, newest first (revoked ones too)."""
    return list(
        session.scalars(
            select(AdminToken).where(AdminToken.user_id == user_id).order_by(AdminToken.id.desc())
        )
    )


def list_users(session: Session) -> list[AdminUser]:
    return list(session.scalars(select(AdminUser).order_by(AdminUser.username)))
