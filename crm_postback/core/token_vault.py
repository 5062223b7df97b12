"""Access tokens at rest: Fernet-encrypted in the database, or referenced from the environment.

A token is never logged and never shown back; `mask_token` gives the only displayable form.

An environment reference names a variable of its own: `env:POSTBACK_TOKEN_<NAME>` (capitals,
digits, `_`). Any other name is refused when it is set and never read when it is opened, so
nobody can make the worker or a verify send another variable (the admin password, a
database URL) to the Events API host.

The environment is the operator's: one for every workspace of the instance. So a reference is
set only by the operator, from the CLI (`references_allowed`; the admin faces are refused):
an owner of one workspace cannot point its event set at another advertiser's variable, nor
learn from the answers which variables exist. For the same reason a variable that is not set
is reported without its name (`str(error)`, what the worker's pause reason and the admin show);
`TokenUnavailable.operator_message` names it, for the CLI.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from crm_postback.core.data_dir import ensure_private_dir
from crm_postback.core.errors import InputRejected
from crm_postback.core.settings import Settings

ENV_REFERENCE_PREFIX = "env:"
ENV_NAME_PREFIX = "POSTBACK_TOKEN_"
_ENV_NAME = re.compile(r"POSTBACK_TOKEN_[A-Z0-9_]{1,64}")
REFERENCE_RULE = "an env: reference must name a variable POSTBACK_TOKEN_<NAME> (A-Z, 0-9, _)"
OPERATOR_ONLY = (
    "an env: reference (env:POSTBACK_TOKEN_<NAME>) is set only by the operator, from the CLI "
    "(postback event-set set-token); give the token itself"
)
VARIABLE_NOT_SET = (
    "access_token: the environment variable this event set references is not set "
    "(the operator sees its name: postback event-set verify)"
)


class TokenUnavailable(RuntimeError):
    """The event set's token cannot be read (missing env var, wrong key). `str()` says why
    without naming a variable (it is shown on the admin faces and stored as the pause
    reason); `operator_message` may name it (the CLI)."""

    def __init__(self, message: str, *, operator_message: str | None = None) -> None:
        super().__init__(message)
        self.operator_message = operator_message or message


def mask_token(token: str) -> str:
    if len(token) <= 8:
        return "•" * len(token)
    return "•" * 8 + token[-4:]


def _key_file(settings: Settings) -> Path:
    return settings.postback_data_dir / "token.key"


def _fernet(settings: Settings) -> Fernet:
    if settings.token_encryption_key:
        return Fernet(settings.token_encryption_key.encode())
    path = _key_file(settings)
    if not path.exists():
        ensure_private_dir(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key())
    return Fernet(path.read_bytes().strip())


def allowed_reference(name: str) -> bool:
    """May `env:<name>` be read? Only variables named for tokens."""
    return _ENV_NAME.fullmatch(name) is not None


def is_reference(token: str) -> bool:
    return token.startswith(ENV_REFERENCE_PREFIX)


def seal_token(token: str, settings: Settings, *, references_allowed: bool) -> str:
    """What to store: an `env:POSTBACK_TOKEN_…` reference as given, or the Fernet ciphertext
    of a token. A reference without `references_allowed` (only the operator, on the CLI, may
    name the environment), or to another name, is refused (InputRejected naming
    access_token, never echoing the name)."""
    if is_reference(token):
        if not references_allowed:
            raise InputRejected.one("access_token", OPERATOR_ONLY)
        if not allowed_reference(token[len(ENV_REFERENCE_PREFIX) :]):
            raise InputRejected.one("access_token", REFERENCE_RULE)
        return token
    return _fernet(settings).encrypt(token.encode()).decode()


def open_token(stored: str, settings: Settings) -> str:
    if stored.startswith(ENV_REFERENCE_PREFIX):
        name = stored[len(ENV_REFERENCE_PREFIX) :]
        if not allowed_reference(name):
            # Stored before names were restricted: not read, whatever it names.
            raise TokenUnavailable(
                f"access_token: {REFERENCE_RULE}; rename the variable and set the token "
                "again (postback event-set set-token)"
            )
        value = os.environ.get(name, "")
        if not value:
            raise TokenUnavailable(
                VARIABLE_NOT_SET,
                operator_message=f"access_token: environment variable {name} is not set",
            )
        return value
    try:
        return _fernet(settings).decrypt(stored.encode()).decode()
    except InvalidToken as exc:
        raise TokenUnavailable(
            "access_token: cannot be decrypted with this TOKEN_ENCRYPTION_KEY"
        ) from exc


def token_hint(stored: str, settings: Settings) -> str:
    """Masked form for display; an env reference is shown by its variable name."""
    if stored.startswith(ENV_REFERENCE_PREFIX):
        if not allowed_reference(stored[len(ENV_REFERENCE_PREFIX) :]):
            return "(refused env: reference; set the token again)"
        return stored
    try:
        return mask_token(open_token(stored, settings))
    except TokenUnavailable:
        return "(unreadable)"
