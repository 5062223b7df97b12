"""The worker's metrics server: multiprocess mode, a busy port, metrics off."""

from __future__ import annotations

import os
from typing import Any

import pytest

from crm_postback.observability.metric_definitions import MULTIPROC_ENV, reset_metrics
from crm_postback.observability.worker_metrics_server import start_worker_metrics
from tests.conftest import apply_env  # type: ignore[import-not-found]


def test_worker_metrics_port_in_use_is_a_warning(
    isolated_settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Run in-process with the env restored afterwards: multiprocess mode, a busy port."""
    import socket

    from crm_postback.core.settings import get_settings

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.delenv(MULTIPROC_ENV, raising=False)
        apply_env(monkeypatch, METRICS_PORT=str(port))
        served = start_worker_metrics(get_settings())
    try:
        assert served is not None and served.server is None
        assert "cannot listen" in caplog.text
        assert served.directory.is_dir()
    finally:
        assert served is not None
        served.stop()
        os.environ.pop(MULTIPROC_ENV, None)  # start_worker_metrics set it
        _back_to_single_process()
    assert not served.directory.exists()


def _back_to_single_process() -> None:
    from prometheus_client import values

    values.ValueClass = values.get_value_class()
    reset_metrics()


def test_metrics_off_when_the_port_is_zero(
    isolated_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crm_postback.core.settings import get_settings

    apply_env(monkeypatch, METRICS_PORT="0")
    assert start_worker_metrics(get_settings()) is None
