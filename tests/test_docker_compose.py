"""docker-compose.yml is right by construction: no Docker engine runs here, so check it.

Every command a service runs must parse against the real `postback` CLI (and every task beat
schedules must exist in the Celery app); every variable set for the app must be a setting it
reads, and the settings production needs must be set; healthchecks probe a route or port the
service really serves.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.main import get_command

from crm_postback.cli import app as cli_app
from crm_postback.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APP_SERVICES = {n: s for n, s in SERVICES.items() if s.get("image") == "crm-postback:latest"}
SETTING_NAMES = {name.upper() for name in Settings.model_fields}
NEEDED_BY_WORKERS = {"DATABASE_URL", "BROKER_URL", "TIKTOK_API_BASE_URL", "TOKEN_ENCRYPTION_KEY"}
# Settings whose default only suits the embedded single-machine setup (SQLite and a key file in
# the data dir, a filesystem broker): each service that reads them must set them.
REQUIRED_IN_CONTAINERS = {
    "migrate": {"DATABASE_URL"},
    "worker": NEEDED_BY_WORKERS | {"METRICS_HOST", "METRICS_PORT"},
    "beat": {"DATABASE_URL", "BROKER_URL"},
    "web": {"DATABASE_URL", "BROKER_URL", "TOKEN_ENCRYPTION_KEY"},
    "flower": {"BROKER_URL"},
}


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
    assert set(APP_SERVICES) == {"migrate", "worker", "beat", "web", "simulator", "flower"}
    assert set(REQUIRED_IN_CONTAINERS) == set(APP_SERVICES) - {"simulator"}


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


@pytest.mark.parametrize("name", sorted(REQUIRED_IN_CONTAINERS))
def test_settings_each_service_needs_are_set(name: str) -> None:
    needed = REQUIRED_IN_CONTAINERS[name]
    assert needed <= SETTING_NAMES, f"not settings: {needed - SETTING_NAMES}"
    missing = needed - set(APP_SERVICES[name].get("environment", {}))
    assert not missing, f"{name} lacks {missing}"


def test_secrets_are_required_not_defaulted() -> None:
    env = APP_SERVICES["worker"]["environment"]
    for name in ("DATABASE_URL", "TOKEN_ENCRYPTION_KEY"):
        assert ":?" in env[name], f"{name} must fail loudly when .env lacks it"


def test_web_is_published_on_loopback_with_its_metrics_behind_a_token() -> None:
    """`postback serve --host 0.0.0.0` refuses to start without METRICS_TOKEN, so compose
    requires it; the port is published on the host's loopback, for a reverse proxy."""
    from typer.testing import CliRunner

    web = APP_SERVICES["web"]
    assert ":?" in web["environment"]["METRICS_TOKEN"]
    assert web["ports"] and all(str(p).startswith("127.0.0.1:") for p in web["ports"])
    result = CliRunner().invoke(cli_app, web["command"][1:], env={"METRICS_TOKEN": ""})
    assert result.exit_code == 2 and "METRICS_TOKEN" in result.output
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            if name != "simulator":  # a stand-in TikTok, behind its profile
                assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port}"


def test_web_believes_x_forwarded_for_from_the_docker_gateway() -> None:
    """The proxy on the host reaches the published port through Docker's bridge gateway:
    unless the app believes X-Forwarded-For from there, every client is that one address
    and shares one login-limit bucket."""
    import ipaddress

    value = APP_SERVICES["web"]["environment"]["FORWARDED_ALLOW_IPS"]
    match = re.fullmatch(r"\$\{FORWARDED_ALLOW_IPS:-([^}]+)\}", value)
    assert match, value
    networks = [ipaddress.ip_network(n.strip()) for n in match.group(1).split(",")]
    for gateway in ("172.17.0.1", "172.18.0.1", "192.168.16.1"):  # Docker's default pools
        assert any(ipaddress.ip_address(gateway) in n for n in networks), gateway
    assert all(n.is_private for n in networks)
    assert Settings(forwarded_allow_ips=match.group(1)).forwarded_allow_ips == match.group(1)


def test_beat_schedules_only_tasks_the_worker_has() -> None:
    from worker.app import app as celery_app

    celery_app.loader.import_default_modules()
    for entry in celery_app.conf.beat_schedule.values():
        assert entry["task"] in celery_app.tasks, entry["task"]
    assert "postback.purge_expired_data" in {
        e["task"] for e in celery_app.conf.beat_schedule.values()
    }


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def _probe(service: dict[str, Any]) -> tuple[str, int, str]:
    """(host, port, path) the healthcheck's python -c urllib one-liner requests."""
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], "the image has no curl: probe with python"
    code = test[3]
    ast.parse(code)  # it is valid Python
    match = re.search(r"urlopen\('http://([^:/]+):(\d+)(/[^']*)'", code)
    assert match, code
    return match.group(1), int(match.group(2)), match.group(3)


def test_web_serves_the_api_and_its_healthcheck_probes_a_real_route() -> None:
    from crm_postback.web.app import create_app

    web = APP_SERVICES["web"]
    command = web["command"]
    assert command[:2] == ["postback", "serve"]
    assert _option(command, "--host") == "0.0.0.0"
    # One process: counters are per process (docs/operations.md: PROMETHEUS_MULTIPROC_DIR).
    assert "--workers" not in command
    host, port, path = _probe(web)
    assert (host, port) == ("127.0.0.1", int(_option(command, "--port")))
    from fastapi.testclient import TestClient

    with TestClient(create_app()) as client:
        assert client.get(path).status_code == 200
        assert client.get("/metrics").status_code == 200  # what Prometheus scrapes
    assert any(p.endswith(":8000") for p in web["ports"])


def test_worker_healthcheck_probes_its_metrics_port() -> None:
    worker = APP_SERVICES["worker"]
    env = worker["environment"]
    assert env["METRICS_HOST"] == "0.0.0.0"
    _, port, path = _probe(worker)
    assert port == int(env["METRICS_PORT"]) and path == "/metrics"
    assert str(port) in [str(p) for p in worker.get("expose", [])]


def test_long_running_services_have_healthchecks() -> None:
    for name in ("postgres", "redis", "worker", "web"):
        assert "healthcheck" in SERVICES[name], name
    for name in ("worker", "beat", "web"):
        depends = SERVICES[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"


def test_optional_services_sit_behind_profiles() -> None:
    assert SERVICES["simulator"]["profiles"] == ["sim"]
    assert SERVICES["flower"]["profiles"] == ["flower"]
    for name, service in SERVICES.items():
        if name not in ("simulator", "flower"):
            assert "profiles" not in service, f"{name} must start with a plain `up`"


def test_flower_is_installed_in_the_image_and_protected() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r'pip install "\.\[flower\]"', dockerfile)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(d.startswith("flower") for d in extras["optional-dependencies"]["flower"])
    flower = SERVICES["flower"]
    assert "FLOWER_BASIC_AUTH" in flower["environment"]
    assert all(p.startswith("127.0.0.1:") for p in flower["ports"])

    from typer.testing import CliRunner

    result = CliRunner().invoke(cli_app, flower["command"][1:], env={"FLOWER_BASIC_AUTH": ""})
    assert result.exit_code == 2 and "FLOWER_BASIC_AUTH" in result.output


def test_env_example_documents_only_what_is_used() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    documented = set(re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert documented <= used | SETTING_NAMES, f"stale: {documented - used - SETTING_NAMES}"


def test_files_the_image_needs_are_package_data() -> None:
    """`pip install .` in the Dockerfile copies only .py files and declared package data."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]
    missing = []
    for package in ("worker", "models", "mappings", "crm_postback"):
        for path in (ROOT / package).rglob("*"):
            if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            relative = path.relative_to(ROOT / package).as_posix()
            if not any(fnmatch.fnmatch(relative, p) for p in patterns.get(package, [])):
                missing.append(f"{package}/{relative}")
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"


# The Sentinel variant: an override file, merged over docker-compose.yml as Compose does
# (mappings merge key by key, anything else is replaced).
SENTINEL_FILE = ROOT / "docker-compose.sentinel.yml"
SENTINEL_OVERRIDE: dict[str, Any] = yaml.safe_load(SENTINEL_FILE.read_text())
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")


def _merged(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{k: _merged(base.get(k), v) for k, v in override.items()}}
    return override


SENTINEL_SERVICES: dict[str, dict[str, Any]] = _merged(COMPOSE, SENTINEL_OVERRIDE)["services"]


def _sentinel_config(name: str) -> str:
    """The config file the sentinel's start-up command writes, as text."""
    command = SENTINEL_SERVICES[name]["command"]
    assert command[:2] == ["sh", "-c"], command
    script = command[2]
    assert script.startswith("printf '%s\\n' ") and "> /tmp/sentinel.conf" in script, script
    lines = re.findall(r"'([^']*)'", script.split(">", 1)[0])[1:]
    assert "exec redis-server /tmp/sentinel.conf --sentinel" in script
    return "\n".join(lines)


def test_sentinel_variant_has_a_primary_a_replica_and_three_sentinels() -> None:
    assert {"redis", "redis-replica", *SENTINELS} <= set(SENTINEL_SERVICES)
    replica = SENTINEL_SERVICES["redis-replica"]["command"]
    assert replica[replica.index("--replicaof") + 1 :][:2] == ["redis", "6379"]
    for name in ("redis", "redis-replica"):
        command = " ".join(SENTINEL_SERVICES[name]["command"])
        assert "--maxmemory-policy noeviction" in command and "--appendonly yes" in command
        assert f"--replica-announce-ip {name}" in command  # found by name after a restart
    for name in SENTINELS:
        config = _sentinel_config(name)
        assert "port 26379" in config.splitlines()
        assert "sentinel resolve-hostnames yes" in config  # `monitor` names a service
        assert "sentinel monitor crm redis 6379 2" in config.splitlines()
        assert "healthcheck" in SENTINEL_SERVICES[name]
    for volume in SENTINEL_OVERRIDE.get("volumes", {}):
        assert any(
            str(v).startswith(f"{volume}:")
            for s in SENTINEL_SERVICES.values()
            for v in s.get("volumes", [])
        ), f"unused volume {volume}"


def test_sentinel_variant_points_every_app_service_at_the_sentinels() -> None:
    from worker.app import broker_options

    (master,) = {
        line.split()[2]
        for name in SENTINELS
        for line in _sentinel_config(name).splitlines()
        if line.startswith("sentinel monitor ")
    }
    for name in ("worker", "beat", "web", "flower"):
        env = SENTINEL_SERVICES[name]["environment"]
        unknown = set(env) - SETTING_NAMES
        assert not unknown, f"{name} sets variables no setting reads: {unknown}"
        urls = env["BROKER_URL"].split(";")
        assert [u.removeprefix("sentinel://") for u in urls] == [f"{s}:26379" for s in SENTINELS]
        assert env["BROKER_SENTINEL_MASTER"] == master
        settings = Settings(broker_url=env["BROKER_URL"], broker_sentinel_master=master)
        assert broker_options(settings)["master_name"] == master
        # What the base file sets is still set (the override merges the environment).
        assert set(APP_SERVICES[name]["environment"]) <= set(env)
    rate_limits = SENTINEL_SERVICES["web"]["environment"]["RATE_LIMIT_STORAGE_URL"]
    hosts = ",".join(f"{s}:26379" for s in SENTINELS)
    assert rate_limits == f"redis+sentinel://{hosts}/{master}"
    Settings(rate_limit_storage_url=rate_limits)


def test_sentinel_variant_dependencies_exist_and_are_satisfiable() -> None:
    for name, service in SENTINEL_SERVICES.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in SENTINEL_SERVICES, f"{name} depends on missing {target}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in SENTINEL_SERVICES[target], f"{target} has no healthcheck"
    for name in ("worker", "beat", "web"):
        depends = SENTINEL_SERVICES[name]["depends_on"]
        assert set(SENTINELS) <= set(depends), f"{name} starts before the sentinels"
        assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert "${" not in SENTINEL_FILE.read_text(), "no variables beyond docker-compose.yml's"
