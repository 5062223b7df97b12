"""The tasks' own handling of what a message carries."""

from __future__ import annotations

import pytest

from crm_postback.core.settings import MAX_BATCH_LINGER_MS, get_settings
from tests.conftest import apply_env  # type: ignore[import-not-found]
from worker.tasks import _linger_seconds


@pytest.mark.parametrize(
    ("carried", "seconds"),
    [
        (None, 0.25),  # a publisher that did not say: this worker's BATCH_LINGER_MS
        (0, 0.0),
        (40, 0.04),
        (10**12, MAX_BATCH_LINGER_MS / 1000),  # never longer than a setting may say
        (-5, 0.0),
        (True, 0.0),
        ("100", 0.0),
        (1.5e9, 0.0),
        ([100], 0.0),
    ],
)
def test_a_wake_up_lingers_as_its_message_says_within_the_setting_s_bounds(
    carried: object, seconds: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, BATCH_LINGER_MS="250")
    assert _linger_seconds(get_settings(), carried) == seconds
