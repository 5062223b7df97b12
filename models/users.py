"""Admin users (hashed passwords), their browser sessions and their API tokens."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, StrEnumText, UTCDateTime, utcnow


class AdminUserSource(StrEnum):
    ENV = "env"  # bootstrapped from ADMIN_USERNAME / ADMIN_PASSWORD
    CLI = "cli"  # created with `postback admin user-add`


class AdminUser(Base):
    """Someone who may log in to /admin. Only an argon2 hash of the password is stored."""

    __tablename__ = "admin_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    source: Mapped[AdminUserSource] = mapped_column(
        StrEnumText(AdminUserSource, 16), default=AdminUserSource.CLI
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Manages workspaces and their members, and has the owner's role in every workspace.
    instance_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # Failed logins counted since `failed_logins_since`; forgotten a window after it.
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    failed_logins_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AdminSession(Base):
    """One logged-in browser. The cookie holds a random id; only its SHA-256 is stored."""

    __tablename__ = "admin_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("admin_users.id", ondelete="CASCADE"), index=True
    )
    session_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AdminToken(Base):
    """A personal bearer token of an admin user for the admin JSON API (automation)."""

    __tablename__ = "admin_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("admin_users.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[str] = mapped_column(String(100))
    token_prefix: Mapped[str] = mapped_column(String(16))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
