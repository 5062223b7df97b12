"""The chaos suite's drain check knows every final status of the outbox (no services)."""

from __future__ import annotations

from chaos.checks import FINAL, OutboxState
from models import FINAL_STATUSES, PostbackStatus


def test_rows_ended_on_purpose_are_final_so_the_outbox_counts_as_drained() -> None:
    state = OutboxState(
        triggers={"resolved": 4},
        postbacks={"delivered": 1, "no_match_key": 2, "consent_withdrawn": 1},
    )
    assert state.not_final == 0
    assert state.drained(4)


def test_every_final_status_of_the_outbox_and_no_open_one() -> None:
    assert set(FINAL) == set(FINAL_STATUSES)
    for status in PostbackStatus:
        expected_open = status in (
            PostbackStatus.PENDING,
            PostbackStatus.RETRYING,
            PostbackStatus.SENDING,
        )
        state = OutboxState(triggers={"resolved": 1}, postbacks={str(status): 1})
        assert state.drained(1) is not expected_open, status
