"""Who is calling: an ingest key, an admin token, an admin's browser session, a login.

Each check writes its own bookkeeping (a key's or token's last use, a session's expiry, the
failed-login counter) and commits it, so the faces that ask never commit. None of them writes
an audit entry: they change no configuration, and a token checked on every request would
bury the changes that matter.

Each runs in `models.db.in_transaction`, which repeats the work once on a fresh connection
when the pooled one was dead. Repeating is safe: each is a lookup plus bookkeeping; at worst
a refused login counts twice, or a login leaves an unused session row that expires.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from crm_postback.configuration import admin_accounts, api_keys
from crm_postback.configuration.admin_accounts import Admin, LoginRefused
from crm_postback.configuration.api_keys import Caller
from crm_postback.core.settings import get_settings
from models.db import in_transaction


def identify_api_key(key: str) -> Caller | None:
    """The ingest key's caller, None for an unknown key; `KeyRevoked` for a revoked one."""
    return in_transaction(lambda session: api_keys.authenticate(session, key))


def identify_admin_token(token: str) -> Admin:
    """The admin a `pba_…` token belongs to; `TokenRefused` (with its HTTP status) otherwise."""
    return in_transaction(lambda session: admin_accounts.authenticate_token(session, token))


def resume_admin_session(session_id: str) -> Admin | None:
    """The admin logged in with this browser session, None once it expired or ended."""
    settings = get_settings()
    return in_transaction(
        lambda session: admin_accounts.resume_session(session, settings, session_id)
    )


def log_in(username: str, password: str) -> str:
    """A new session id for the cookie. A refused login raises `LoginRefused` after its
    failed-attempt count is committed (the lockout depends on it)."""
    settings = get_settings()

    def attempt(session: Session) -> str | LoginRefused:
        try:
            user = admin_accounts.authenticate(session, settings, username, password)
        except LoginRefused as refused:
            return refused  # committed, then raised
        return admin_accounts.start_session(session, settings, user)

    outcome = in_transaction(attempt)
    if isinstance(outcome, LoginRefused):
        raise outcome
    return outcome


def log_out(session_id: str) -> None:
    in_transaction(lambda session: admin_accounts.end_session(session, session_id))
