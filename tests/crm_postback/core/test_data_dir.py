"""The embedded default's data dir is its owner's alone: the folder (and the broker folder in it)
0700, the SQLite file with its -wal and -shm, token.key and session.key 0600, whichever way
they come to exist: `postback db upgrade`, the first use of the engine, the demo's setup, a
worker's broker, the admin's session key. What existed before is the operator's: left as it is,
with one warning when group or others may read it."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crm_postback.cli import app as cli
from crm_postback.core.data_dir import ensure_private_dir, ensure_private_file
from crm_postback.core.settings import Settings, get_settings
from models import DEFAULT_WORKSPACE_ID
from tests.conftest import apply_env  # type: ignore[import-not-found]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def private_files(data_dir: Path) -> dict[str, int]:
    names = ("postback.db", "postback.db-wal", "postback.db-shm", "token.key", "session.key")
    return {name: mode(data_dir / name) for name in names}


def use_everything(settings: Settings) -> None:
    """What a first run does: a write through the engine, a token sealed, the admin's key,
    the filesystem broker's folders."""
    from crm_postback.web.admin import session_secret
    from worker.app import broker_options

    make_event_set_without_fixture()
    session_secret(settings)
    broker_options(settings)


def make_event_set_without_fixture() -> None:
    from crm_postback.configuration.audit import SYSTEM_ACTOR
    from crm_postback.configuration.event_set_service import create_event_set
    from models.db import session_scope

    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        create_event_set(
            session,
            get_settings(),
            name="acme",
            source_id="7300000000000000001",
            access_token="private-token-123456",
            actor=SYSTEM_ACTOR,
        )
        session.commit()


@pytest.fixture
def new_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A data dir that does not exist yet, two levels below an existing folder, under the
    usual umask (022: files 0644, folders 0755 unless made private)."""
    old = os.umask(0o022)
    data_dir = tmp_path / "new" / "data"
    apply_env(monkeypatch, POSTBACK_DATA_DIR=str(data_dir), BROKER_URL="filesystem://")
    yield data_dir
    os.umask(old)


def test_db_upgrade_and_first_use_leave_only_private_files(new_data_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    use_everything(get_settings())

    assert mode(new_data_dir) == 0o700
    assert mode(new_data_dir.parent) == 0o700  # created on the way, so private too
    for folder in ("broker", "broker/queue", "broker/processed", "broker/control"):
        assert mode(new_data_dir / folder) == 0o700, folder
    assert private_files(new_data_dir) == dict.fromkeys(private_files(new_data_dir), 0o600)


def test_the_engine_makes_the_embedded_file_private_without_db_upgrade(
    new_data_dir: Path,
) -> None:
    from models.db import get_engine
    from models.migrate import upgrade

    get_engine()  # what the web, the worker or any CLI command does first
    upgrade(get_settings().effective_database_url)
    use_everything(get_settings())
    assert mode(new_data_dir) == 0o700
    assert set(private_files(new_data_dir).values()) == {0o600}


def test_the_demos_data_dir_is_private(new_data_dir: Path) -> None:
    """`postback demo` makes its own data dir and runs the migrations directly."""
    from crm_postback.cli.demo import fresh_data_dir
    from models.migrate import upgrade

    fresh_data_dir(new_data_dir)
    upgrade(get_settings().effective_database_url)  # the demo's _configure does this first
    use_everything(get_settings())
    assert mode(new_data_dir) == 0o700
    assert set(private_files(new_data_dir).values()) == {0o600}


def test_a_migration_creates_any_sqlite_file_private(tmp_path: Path) -> None:
    """DATABASE_URL=sqlite:///elsewhere.db: the file is new, so it is created 0600; the folder
    is the operator's and is left alone."""
    from models.migrate import upgrade

    upgrade(f"sqlite:///{tmp_path / 'elsewhere.db'}")
    assert mode(tmp_path / "elsewhere.db") == 0o600


def open_data_dir(tmp_path: Path) -> tuple[Path, Path]:
    """A data dir and postback.db that group and others may read, made before this code ran
    (by an older version, or by an operator sharing them with a second user)."""
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o750)
    file = folder / "postback.db"
    file.write_bytes(b"")
    file.chmod(0o640)
    return folder, file


def test_existing_open_paths_are_left_as_they_are_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder, file = open_data_dir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="crm_postback.core.data_dir"):
        for _ in range(3):  # every process start and engine use calls these
            assert ensure_private_file(file) == file
            assert ensure_private_dir(folder) == folder
    assert (mode(folder), mode(file)) == (0o750, 0o640)
    warned = [record.getMessage() for record in caplog.records]
    assert len(warned) == 2, warned
    assert str(folder) in warned[0] and "750" in warned[0]
    assert str(file) in warned[1] and "640" in warned[1]


def test_existing_paths_of_another_owner_do_not_stop_a_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A process that does not own the data dir may not chmod it: every process failed to
    start with PermissionError."""
    folder, file = open_data_dir(tmp_path)

    def not_the_owner(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chmod", not_the_owner)
    with caplog.at_level(logging.WARNING, logger="crm_postback.core.data_dir"):
        ensure_private_file(file)
        ensure_private_dir(folder / "broker")
    assert mode(folder / "broker") == 0o700  # what it creates is still private
    assert (mode(folder), mode(file)) == (0o750, 0o640)
    assert any(str(file) in record.getMessage() for record in caplog.records)


def test_private_paths_raise_no_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="crm_postback.core.data_dir"):
        file = ensure_private_file(tmp_path / "fresh" / "postback.db")
        ensure_private_file(file)
        ensure_private_dir(file.parent)
    assert (mode(file.parent), mode(file)) == (0o700, 0o600)
    assert caplog.records == []
