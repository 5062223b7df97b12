"""`postback flower`: without FLOWER_BASIC_AUTH it listens only on a loopback address."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from crm_postback.cli import app as cli_app

runner = CliRunner()


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.5", "::1", "[::1]", "localhost"])
def test_flower_without_a_login_listens_on_any_loopback_address(
    address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.app import app as celery_app

    monkeypatch.setattr(celery_app, "start", lambda argv: None)  # where flower is installed
    result = runner.invoke(
        cli_app, ["flower", f"--address={address}"], env={"FLOWER_BASIC_AUTH": ""}
    )
    assert "FLOWER_BASIC_AUTH" not in result.output  # past the check (flower may be absent)


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "10.0.0.1", "flower.example"])
def test_flower_without_a_login_refuses_any_other_address(address: str) -> None:
    result = runner.invoke(
        cli_app, ["flower", f"--address={address}"], env={"FLOWER_BASIC_AUTH": ""}
    )
    assert result.exit_code == 2 and "FLOWER_BASIC_AUTH" in result.output
