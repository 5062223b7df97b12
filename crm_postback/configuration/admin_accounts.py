"""Admin users, browser sessions and API tokens (no commit here; callers commit).

Passwords are hashed with argon2id. A browser session is a random id in a signed cookie; the
database keeps only its SHA-256, with the session's CSRF token and expiry, so logout really
ends it. API tokens (`pba_…`) are personal to a user, shown once, stored as SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from crm_postback.core.errors import InputRejected
from crm_postback.core.settings import Settings
from models import AdminSession, AdminToken, AdminUser, utcnow

TOKEN_PREFIX = "pba_"
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=1)
LAST_SEEN_RESOLUTION = timedelta(seconds=60)
MIN_PASSWORD_LENGTH = 10

_hasher = PasswordHasher()
# Verified against when the username is unknown, so both cases take the same time.
_DUMMY_HASH = _hasher.hash("no such user: a password nobody has")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InputRejected.one("password", f"must be at least {MIN_PASSWORD_LENGTH} characters")


def find_user(session: Session, username: str) -> AdminUser | None:
    return session.scalar(select(AdminUser).where(AdminUser.username == username.strip()))


def get_user(session: Session, username: str) -> AdminUser:
    user = find_user(session, username)
    if user is None:
        raise InputRejected.one("username", f"no admin user {username!r}")
    return user


def create_user(session: Session, username: str, password: str, source: str = "cli") -> AdminUser:
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
        failed_logins=0,
    )
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, user: AdminUser, password: str) -> None:
    _check_password(password)
    user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    end_sessions(session, user)


def set_active(session: Session, user: AdminUser, active: bool) -> None:
    user.active = active
    if not active:
        end_sessions(session, user)


def end_sessions(session: Session, user: AdminUser) -> None:
    session.execute(delete(AdminSession).where(AdminSession.user_id == user.id))


def ensure_bootstrap_user(session: Session, settings: Settings) -> None:
    """ADMIN_USERNAME / ADMIN_PASSWORD: creates that user, or resets its password to the
    environment's. ADMIN_PASSWORD may be an argon2 hash instead of the password."""
    name, password = settings.admin_username.strip(), settings.admin_password
    if not name or not password:
        return
    is_hash = password.startswith("$argon2")
    user = find_user(session, name)
    if user is None:
        user = AdminUser(
            username=name,
            password_hash=password if is_hash else hash_password(password),
            source="env",
            active=True,
            failed_logins=0,
        )
        session.add(user)
        session.flush()
        return
    if is_hash:
        if user.password_hash != password:
            user.password_hash = password
    elif not _verify(user.password_hash, password):
        user.password_hash = hash_password(password)


class LoginRefused(Exception):
    pass


def authenticate(
    session: Session, settings: Settings, username: str, password: str, now: datetime | None = None
) -> AdminUser:
    """The user, or LoginRefused with a message that never says which part was wrong."""
    now = now or utcnow()
    if username.strip() == settings.admin_username.strip():
        ensure_bootstrap_user(session, settings)
    user = find_user(session, username)
    if user is None:
        _verify(_DUMMY_HASH, password)
        raise LoginRefused("wrong username or password")
    if user.locked_until is not None and user.locked_until > now:
        seconds = int((user.locked_until - now).total_seconds()) + 1
        raise LoginRefused(f"too many failed attempts; try again in {seconds} s")
    if not _verify(user.password_hash, password) or not user.active:
        user.failed_logins = (user.failed_logins or 0) + 1
        if user.failed_logins >= MAX_FAILED_LOGINS:
            user.locked_until = now + LOCKOUT
        raise LoginRefused("wrong username or password")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    return user


@dataclass(frozen=True)
class Admin:
    """Who is calling: a logged-in browser or an API token."""

    user_id: int
    username: str
    csrf_token: str | None  # None for API tokens (no cookies, no CSRF)
    via: str  # "web" or "api"

    @property
    def actor(self) -> str:
        return f"{self.via}:{self.username}"


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
    return Admin(user.id, user.username, row.csrf_token, "web")


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
    return Admin(user.id, user.username, None, "api")
