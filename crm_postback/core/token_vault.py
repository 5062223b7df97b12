"""Access tokens at rest: Fernet-encrypted in the database, or referenced from the environment.

A token is never logged and never shown back; `mask_token` gives the only displayable form.

An environment reference names a variable of its own: `env:POSTBACK_TOKEN_<NAME>` (capitals,
digits, `_`). Any other name is refused when it is set and never read when it is opened, so
an admin cannot make the worker or a verify send another variable (the admin password, a
database URL) to the Events API host, nor learn which variables exist.
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


class TokenUnavailable(RuntimeError):
    """The event set's token cannot be read (missing env var, wrong key); message names why."""


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


def seal_token(token: str, settings: Settings) -> str:
    """What to store: an `env:POSTBACK_TOKEN_…` reference as given, or the Fernet ciphertext
    of a token. Another env: name is refused (InputRejected naming access_token)."""
    if token.startswith(ENV_REFERENCE_PREFIX):
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
            raise TokenUnavailable(f"access_token: environment variable {name} is not set")
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
