from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError


@dataclass(frozen=True)
class FieldError:
    field: str  # dotted path, e.g. "match_keys.phone" or "attributes.value"
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InputRejected(ValueError):
    """Bad input from a routing system. Messages name fields and never echo raw match keys."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors

    @classmethod
    def one(cls, field: str, message: str) -> InputRejected:
        return cls([FieldError(field, message)])

    @classmethod
    def from_validation(cls, error: ValidationError, prefix: str = "") -> InputRejected:
        found = []
        for item in error.errors(include_input=False, include_url=False):
            # A key name can itself be PII (an email sent as a key): never echo one with "@".
            path = ".".join("<redacted>" if "@" in str(p) else str(p) for p in item["loc"])
            message = item["msg"].removeprefix("Value error, ")
            found.append(FieldError(f"{prefix}{path}" or "body", message))
        return cls(found)
