"""Tokens at rest: sealed with Fernet, or an `env:POSTBACK_TOKEN_…` reference and no other,
set by the operator only; a variable that is not set is named to the operator only."""

from __future__ import annotations

import pytest

from crm_postback.core.errors import InputRejected
from crm_postback.core.settings import get_settings
from crm_postback.core.token_vault import (
    OPERATOR_ONLY,
    REFERENCE_RULE,
    VARIABLE_NOT_SET,
    TokenUnavailable,
    open_token,
    seal_token,
    token_hint,
)


def test_a_token_is_sealed_and_opened() -> None:
    settings = get_settings()
    sealed = seal_token("secret-token-123456", settings, references_allowed=False)
    assert "secret-token" not in sealed
    assert open_token(sealed, settings) == "secret-token-123456"
    assert token_hint(sealed, settings) == "••••••••3456"


def test_a_reference_to_a_token_variable_is_read_at_open(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    sealed = seal_token("env:POSTBACK_TOKEN_ACME_1", settings, references_allowed=True)
    assert sealed == "env:POSTBACK_TOKEN_ACME_1"
    assert token_hint(sealed, settings) == "env:POSTBACK_TOKEN_ACME_1"
    monkeypatch.setenv("POSTBACK_TOKEN_ACME_1", "from-the-environment")
    assert open_token(sealed, settings) == "from-the-environment"
    monkeypatch.delenv("POSTBACK_TOKEN_ACME_1")
    with pytest.raises(TokenUnavailable) as missing:
        open_token(sealed, settings)
    # Said to the operator by name; everywhere else (a pause reason, the admin) without it.
    assert "POSTBACK_TOKEN_ACME_1 is not set" in missing.value.operator_message
    assert str(missing.value) == VARIABLE_NOT_SET
    assert "POSTBACK_TOKEN_ACME" not in str(missing.value)


@pytest.mark.parametrize(
    "reference", ["env:POSTBACK_TOKEN_ACME", "env:ADMIN_PASSWORD", "env:", "env:x\nY"]
)
def test_only_the_operator_may_reference_the_environment(reference: str) -> None:
    """The environment is one for every workspace: from an admin face any env: reference is
    refused, with one message whatever it names (no oracle, no echo)."""
    with pytest.raises(InputRejected) as refused:
        seal_token(reference, get_settings(), references_allowed=False)
    assert str(refused.value) == f"access_token: {OPERATOR_ONLY}"
    assert str(refused.value).count("POSTBACK_TOKEN_") == 1  # the rule's <NAME>, no name


@pytest.mark.parametrize(
    "reference",
    [
        "env:ADMIN_PASSWORD",
        "env:DATABASE_URL",
        "env:postback_token_acme",  # the prefix is exact
        "env:POSTBACK_TOKEN_",  # a name after it
        "env:POSTBACK_TOKEN_A-B",
        "env:POSTBACK_TOKEN_A\nB",
        "env:" + "POSTBACK_TOKEN_" + "A" * 65,
    ],
)
def test_any_other_variable_is_refused_naming_the_field_not_the_value(reference: str) -> None:
    with pytest.raises(InputRejected) as refused:
        seal_token(reference, get_settings(), references_allowed=True)
    assert [e.field for e in refused.value.errors] == ["access_token"]
    assert str(refused.value) == f"access_token: {REFERENCE_RULE}"  # the name is not echoed


def test_a_stored_reference_outside_the_prefix_is_never_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stored before names were restricted: the same answer whether the variable exists or
    not (no oracle), and its value never leaves."""
    settings = get_settings()
    monkeypatch.setenv("ADMIN_PASSWORD", "the-admin-password")
    monkeypatch.delenv("NO_SUCH_VARIABLE_HERE", raising=False)
    messages = []
    for stored in ("env:ADMIN_PASSWORD", "env:NO_SUCH_VARIABLE_HERE"):
        with pytest.raises(TokenUnavailable) as refused:
            open_token(stored, settings)
        messages.append(str(refused.value).replace(stored[4:], "NAME"))
        assert "the-admin-password" not in str(refused.value)
        assert "set-token" in str(refused.value)
        assert token_hint(stored, settings) == "(refused env: reference; set the token again)"
    assert messages[0] == messages[1]
