"""Who is calling: an ingest key, an admin token, an admin's browser session, a login.

Each check writes its own bookkeeping (a key's or token's last use, a session's expiry, the
failed-login counter) and commits it, so the faces that ask never commit. None of them writes
an audit entry: they change no configuration, and a token checked on every request would
bury the changes that matter.

Each runs in `models.db.in_transaction`, which repeats the work once on a fresh connection
when the pooled one was dead. Repeating is safe: each is a lookup plus bookkeeping; at worst
a refused login counts twice, or a login leaves an unused session row that expires.

A login's argon2 check takes 64 MiB, so a web process checks at most
ADMIN_LOGIN_CONCURRENCY logins at once and lets ADMIN_LOGIN_QUEUE more wait; any other
login is refused with `Busy` at once, before it is counted.
"""

from __future__ import annotations

import threading

from crm_postback.configuration import admin_accounts, api_keys
from crm_postback.configuration.admin_accounts import Admin, LoginRefused
from crm_postback.configuration.api_keys import Caller
from crm_postback.core.rate_limits import WorkGate
from crm_postback.core.settings import Settings, get_settings
from models.db import in_transaction
from models.workspace_scope import ALL_WORKSPACES

# A login waiting longer than this for its check is answered busy.
LOGIN_WAIT_SECONDS = 10.0
_gate: WorkGate | None = None
_gate_lock = threading.Lock()


def identify_api_key(key: str) -> Caller | None:
    """The ingest key's caller, None for an unknown key; `KeyRevoked` for a revoked one."""
    return in_transaction(
        lambda session: api_keys.authenticate(session, key), workspace=ALL_WORKSPACES
    )


def identify_admin_token(token: str) -> Admin:
    """The admin a `pba_…` token belongs to; `TokenRefused` (with its HTTP status) otherwise."""
    return in_transaction(
        lambda session: admin_accounts.authenticate_token(session, token), workspace=ALL_WORKSPACES
    )


def resume_admin_session(session_id: str) -> Admin | None:
    """The admin logged in with this browser session, None once it expired or ended."""
    settings = get_settings()
    return in_transaction(
        lambda session: admin_accounts.resume_session(session, settings, session_id),
        workspace=ALL_WORKSPACES,
    )


def _login_gate(settings: Settings) -> WorkGate:
    """The process's gate, made again only when its settings change (tests)."""
    global _gate
    with _gate_lock:
        wanted = (settings.admin_login_concurrency, settings.admin_login_queue, LOGIN_WAIT_SECONDS)
        if _gate is None or (_gate.slots, _gate.queue, _gate.wait_seconds) != wanted:
            _gate = WorkGate(*wanted)
        return _gate


def log_in(username: str, password: str) -> str:
    """A new session id for the cookie. `LoginRefused` (one message for every reason) after
    the attempt was counted as failed and committed, or `core.rate_limits.Busy` when the
    process is checking as many logins as it may (nothing counted)."""
    settings = get_settings()
    with _login_gate(settings).slot():
        attempt = in_transaction(
            lambda session: admin_accounts.count_login_attempt(session, settings, username),
            workspace=ALL_WORKSPACES,
        )
        check = admin_accounts.check_login_password(attempt, password)
        if not check.accepted:
            raise LoginRefused()
        return in_transaction(
            lambda session: admin_accounts.complete_login(session, settings, attempt, check),
            workspace=ALL_WORKSPACES,
        )


def log_out(session_id: str) -> None:
    in_transaction(
        lambda session: admin_accounts.end_session(session, session_id), workspace=ALL_WORKSPACES
    )
