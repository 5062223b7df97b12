"""/healthz answers while the process is up; /readyz checks the database and the broker."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.conftest import apply_env  # type: ignore[import-not-found]


def test_healthz(anonymous: TestClient) -> None:
    response = anonymous.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_when_database_and_broker_answer(anonymous: TestClient) -> None:
    response = anonymous.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_is_503_when_the_broker_is_down(
    anonymous: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, BROKER_URL="redis://:s3cret@127.0.0.1:1/0")
    response = anonymous.get("/readyz")
    assert response.status_code == 503
    answer = response.json()
    assert answer["status"] == "not ready"
    assert answer["checks"]["database"] == "ok"
    assert answer["checks"]["broker"].startswith("error: ")
    assert "s3cret" not in response.text and "127.0.0.1" not in response.text


def test_readyz_is_503_when_the_database_is_down(
    anonymous: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, DATABASE_URL="postgresql://u:s3cret@127.0.0.1:1/none")
    response = anonymous.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("error: ")
    assert "s3cret" not in response.text
    assert anonymous.get("/healthz").status_code == 200
