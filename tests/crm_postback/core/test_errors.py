"""InputRejected.from_validation: fields named as the caller wrote them."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from crm_postback.core.errors import FieldError, InputRejected

Short = Annotated[str, StringConstraints(max_length=10)]


class Keys(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    email: Short | list[Short] | None = None
    value: str | int | float | bool | None = None


class Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    lead_id: str
    match_keys: Keys | None = None
    attributes: dict[str, str | int | float | bool | None] = {}


def _rejected(document: dict[str, Any], with_document: bool) -> InputRejected:
    with pytest.raises(ValidationError) as error:
        Doc.model_validate(document)
    if with_document:
        return InputRejected.from_validation(error.value, document=document)
    return InputRejected.from_validation(error.value)


@pytest.mark.parametrize("with_document", [True, False])
def test_union_members_are_not_named_in_the_field(with_document: bool) -> None:
    rejected = _rejected(
        {"lead_id": "L-1", "match_keys": {"email": "x" * 30, "value": {"a": 1}}}, with_document
    )
    assert [e.field for e in rejected.errors] == ["match_keys.email", "match_keys.value"]
    assert rejected.errors[0].message == "String should have at most 10 characters"
    assert "constrained-str" not in str(rejected) and "list[" not in str(rejected)


def test_a_key_named_like_a_union_member_is_kept_when_the_document_is_given() -> None:
    rejected = _rejected({"lead_id": "L-1", "attributes": {"str": [1]}}, with_document=True)
    assert [e.field for e in rejected.errors] == ["attributes.str"]


@pytest.mark.parametrize("with_document", [True, False])
def test_missing_and_unknown_fields_keep_their_names(with_document: bool) -> None:
    rejected = _rejected({"match_keys": {"emial": "a"}}, with_document)
    assert {e.field for e in rejected.errors} == {"lead_id", "match_keys.emial"}


def test_a_key_holding_an_at_sign_is_redacted() -> None:
    rejected = _rejected({"lead_id": "L", "jane@example.org": 1}, with_document=True)
    assert rejected.errors == [FieldError("<redacted>", "Extra inputs are not permitted")]
