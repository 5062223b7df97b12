"""docker-compose.yml is right by construction: no Docker engine runs here, so check it.

Every command a service runs must parse against the real `postback` CLI; every variable set
for the app must be a setting it reads, and the settings production needs must be set.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.main import get_command

from crm_postback.cli import app as cli_app
from crm_postback.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APP_SERVICES = {n: s for n, s in SERVICES.items() if s.get("image") == "crm-postback:latest"}
SETTING_NAMES = {name.upper() for name in Settings.model_fields}
NEEDED_BY_WORKERS = {"DATABASE_URL", "BROKER_URL", "TIKTOK_API_BASE_URL", "TOKEN_ENCRYPTION_KEY"}


def resolve_cli(args: list[str]) -> Any:
    """Walks `postback <group> <command> --options` and parses the options strictly.

    Typer ships its own copy of click, so groups are recognised by behaviour, not by class.
    """
    command: Any = get_command(cli_app)
    context = command.make_context("postback", [], resilient_parsing=True)
    remaining = list(args)
    while hasattr(command, "get_command"):
        assert remaining, f"{args}: names a group, not a command"
        sub = command.get_command(context, remaining[0])
        assert sub is not None, f"{args}: no command {remaining[0]!r}"
        command, remaining = sub, remaining[1:]
        if hasattr(command, "get_command"):
            context = command.make_context(command.name, [], parent=context, resilient_parsing=True)
    try:
        command.make_context(command.name, remaining, parent=context)
    except Exception as error:  # the vendored click's UsageError
        raise AssertionError(f"{args}: {error}") from error
    return command


def test_app_services_are_the_expected_ones() -> None:
    assert set(APP_SERVICES) == {"migrate", "worker", "beat", "simulator"}


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_every_command_exists_in_the_cli(name: str) -> None:
    command = APP_SERVICES[name]["command"]
    assert command[0] == "postback", "app services run the project's CLI"
    resolve_cli(command[1:])


def test_a_wrong_command_would_be_caught() -> None:
    with pytest.raises(AssertionError, match="no-such-option"):
        resolve_cli(["worker", "--no-such-option"])
    with pytest.raises(AssertionError):
        resolve_cli(["db", "migrate-all"])


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_every_variable_set_is_a_setting(name: str) -> None:
    unknown = set(APP_SERVICES[name].get("environment", {})) - SETTING_NAMES
    assert not unknown, f"{name} sets variables no setting reads: {unknown}"


@pytest.mark.parametrize("name", ["migrate", "worker", "beat"])
def test_required_settings_are_set(name: str) -> None:
    missing = NEEDED_BY_WORKERS - set(APP_SERVICES[name]["environment"])
    assert not missing, f"{name} lacks {missing}"


def test_database_url_points_at_the_postgres_service() -> None:
    env = APP_SERVICES["worker"]["environment"]
    postgres = SERVICES["postgres"]["environment"]
    assert env["DATABASE_URL"].startswith("postgresql+psycopg://" + postgres["POSTGRES_USER"])
    assert env["DATABASE_URL"].endswith("@postgres:5432/" + postgres["POSTGRES_DB"])
    assert env["BROKER_URL"].startswith("redis://redis:6379")


def test_depends_on_conditions_are_satisfiable() -> None:
    for name, service in SERVICES.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in SERVICES, f"{name} depends on missing {target}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{target} has no healthcheck"
            if rule["condition"] == "service_completed_successfully":
                assert SERVICES[target].get("restart") == "no", f"{target} must be one-shot"


def test_exactly_one_beat_and_a_safe_redis() -> None:
    assert SERVICES["beat"]["deploy"]["replicas"] == 1
    assert "--beat" not in APP_SERVICES["worker"]["command"]
    redis_command = " ".join(SERVICES["redis"]["command"])
    assert "--appendonly yes" in redis_command and "--maxmemory-policy noeviction" in redis_command


def test_interpolated_variables_are_documented_in_env_example() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    documented = set(re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert used <= documented, f"not in .env.example: {used - documented}"


def test_dockerfile_copies_what_exists_and_installs_the_cli() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (\S+)", dockerfile, re.M):
        assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    packages = {line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")}
    for package in ("worker", "models", "mappings", "crm_postback"):
        assert package in packages
    assert 'postback = "crm_postback.cli:main"' in (ROOT / "pyproject.toml").read_text()
