"""The chaos suite's private PostgreSQL cluster: start, SIGKILL of the postmaster, crash
recovery with the committed rows still there, fast restart, cleanup (~5 s)."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from chaos.services import PrivateCluster, ServiceUnavailable, postgres_bindir

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


@pytest.fixture
def cluster(server_dir: Path) -> PrivateCluster:
    try:
        postgres_bindir()
    except ServiceUnavailable as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{error}; CI=true requires it")
        pytest.skip(str(error))
    return PrivateCluster(server_dir / "postgres", server_dir / "postgres.log")


@pytest.mark.timeout(60)
def test_a_sigkilled_postmaster_recovers_its_committed_rows(cluster: PrivateCluster) -> None:
    try:
        cluster.init()
        assert cluster.start() == "first start"
        with psycopg.connect(cluster.admin_url, autocommit=True) as conn:
            assert conn.execute("SHOW fsync").fetchone() == ("on",)
            assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept SELECT generate_series(1, 1000)")
        idle = psycopg.connect(cluster.admin_url)  # a backend that must die with the postmaster
        children, _ = cluster.crash()
        assert children >= 1 and not cluster.running
        assert cluster.record.children_died_by_themselves == children
        assert cluster.record.children_killed_by_us == 0
        with pytest.raises(psycopg.OperationalError):
            idle.execute("SELECT 1")
        idle.close()

        assert cluster.start() == "crash recovery"
        assert any("redo starts at" in line for line in cluster.record.recovery_lines)
        with psycopg.connect(cluster.admin_url) as conn:
            assert conn.execute("SELECT count(*) FROM kept").fetchone() == (1000,)

        cluster.fast_stop()
        assert not cluster.running
        assert cluster.start() == "clean start"
        with psycopg.connect(cluster.admin_url) as conn:
            assert conn.execute("SELECT sum(n) FROM kept").fetchone() == (500500,)
        assert cluster.record.crashes == cluster.record.crash_recoveries == 1
    finally:
        cluster.cleanup()
    assert not cluster.running
    assert not cluster.root.exists()
