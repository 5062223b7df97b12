"""Who is calling: an ingest key, an admin token, an admin's browser session, a login.

Each check writes its own bookkeeping (a key's or token's last use, a session's expiry, the
failed-login counter) and commits it, so the faces that ask never commit. None of them writes
an audit entry: they change no configuration, and a token checked on every request would
bury the changes that matter.
"""

from __future__ import annotations

from crm_postback.configuration import admin_accounts, api_keys
from crm_postback.configuration.admin_accounts import Admin, LoginRefused
from crm_postback.configuration.api_keys import Caller
from crm_postback.core.settings import get_settings
from models.db import session_scope


def identify_api_key(key: str) -> Caller | None:
    """The ingest key's caller, None for an unknown key; `KeyRevoked` for a revoked one."""
    with session_scope() as session:
        caller = api_keys.authenticate(session, key)
        session.commit()
    return caller


def identify_admin_token(token: str) -> Admin:
    """The admin a `pba_…` token belongs to; `TokenRefused` (with its HTTP status) otherwise."""
    with session_scope() as session:
        admin = admin_accounts.authenticate_token(session, token)
        session.commit()
    return admin


def resume_admin_session(session_id: str) -> Admin | None:
    """The admin logged in with this browser session, None once it expired or ended."""
    with session_scope() as session:
        admin = admin_accounts.resume_session(session, get_settings(), session_id)
        session.commit()
    return admin


def log_in(username: str, password: str) -> str:
    """A new session id for the cookie. A refused login raises `LoginRefused` after its
    failed-attempt count is committed (the lockout depends on it)."""
    settings = get_settings()
    with session_scope() as session:
        try:
            user = admin_accounts.authenticate(session, settings, username, password)
        except LoginRefused:
            session.commit()
            raise
        session_id = admin_accounts.start_session(session, settings, user)
        session.commit()
    return session_id


def log_out(session_id: str) -> None:
    with session_scope() as session:
        admin_accounts.end_session(session, session_id)
        session.commit()
