"""docs/configuration.md lists every setting of `Settings`, with its type and default: it is
generated (`python -m crm_postback.core.settings_reference`), and these tests fail when the file
is not what a fresh generation gives, or when what it says does not hold for `Settings`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import Field

from crm_postback.core import settings_reference
from crm_postback.core.settings import Settings
from crm_postback.core.settings_reference import (
    BEGIN_MARKER,
    DESCRIPTIONS_NOT_IN_SETTINGS,
    END_MARKER,
    REFERENCE_PATH,
    with_fresh_table,
)

DOCUMENT = REFERENCE_PATH.read_text(encoding="utf-8")


def documented_rows() -> dict[str, list[str]]:
    """The generated table as the file has it: variable -> [type, default, what it does]."""
    table = DOCUMENT.split(BEGIN_MARKER, 1)[1].split(END_MARKER, 1)[0]
    rows: dict[str, list[str]] = {}
    for line in table.strip().splitlines()[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_the_file_is_a_fresh_generation() -> None:
    assert with_fresh_table(DOCUMENT) == DOCUMENT, (
        "docs/configuration.md is stale: run python -m crm_postback.core.settings_reference"
    )


def test_every_setting_is_documented_once_and_nothing_else() -> None:
    assert list(documented_rows()) == [name.upper() for name in Settings.model_fields]


def test_each_documented_default_given_as_the_variable_is_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable, (_type, default, _what) in documented_rows().items():
        monkeypatch.setenv(variable, "" if default == "empty" else default.strip("`"))
    from_the_document = Settings(_env_file=None)
    for name, field in Settings.model_fields.items():
        assert getattr(from_the_document, name) == field.default, name


def test_every_setting_says_what_it_does_from_one_source() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description or DESCRIPTIONS_NOT_IN_SETTINGS.get(name), name
        assert not (field.description and name in DESCRIPTIONS_NOT_IN_SETTINGS), (
            f"{name} has a description in Settings now: drop it from DESCRIPTIONS_NOT_IN_SETTINGS"
        )
    assert set(DESCRIPTIONS_NOT_IN_SETTINGS) <= set(Settings.model_fields)


class _AddedSetting(Settings):
    wake_up_budget_ms: int = Field(250, gt=0, description="A setting nobody documented yet.")


class _ChangedDefault(Settings):
    lead_wait_seconds: int = Field(
        7200, ge=0, description="How long a trigger for an unknown lead waits for that lead."
    )


@pytest.mark.parametrize("changed", [_AddedSetting, _ChangedDefault])
def test_a_changed_settings_class_makes_the_file_stale(changed: type[Settings]) -> None:
    assert with_fresh_table(DOCUMENT, changed) != DOCUMENT


def test_check_mode_exits_1_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(DOCUMENT.replace("`3600`", "`1800`"), encoding="utf-8")
    assert settings_reference.main(["--check", "--path", str(stale)]) == 1
    assert settings_reference.main(["--path", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == DOCUMENT
    assert settings_reference.main(["--check", "--path", str(stale)]) == 0


def test_type_and_bounds_are_rendered_from_the_field() -> None:
    rows = documented_rows()
    assert rows["RETRY_JITTER_RATIO"][0] == "float, ≥ 0, ≤ 1"
    assert rows["LOG_FORMAT"][0] == "`text` or `json`"
    assert rows["RETRY_SCHEDULE_SECONDS"][0] == "list of int (JSON)"
    assert rows["ADMIN_COOKIE_SECURE"][1] == "`false`"
