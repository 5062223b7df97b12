"""Texts a postback or trigger carries in its history, shared by the layers that write them
(the worker, the withdrawal command, the operator's replay) and those that read them back
(diagnostics)."""

from __future__ import annotations

from datetime import datetime


def consent_withdrawn_message(withdrawn_at: datetime) -> str:
    """Why a postback of a lead that withdrew consent was not sent."""
    return f"the lead withdrew consent at {withdrawn_at.isoformat(timespec='seconds')}; not sent"


# In a trigger's `error`, for each event of it not stored because its caller event_id was
# taken: "event Lead with event_id 'x'" then one of these (by an outbox row, or by another
# trigger of the same run). Diagnostics counts the triggers whose note holds either.
ALREADY_IN_THE_OUTBOX = " is already in the outbox"
MADE_TWICE_IN_THE_RUN = " is also made by trigger "
EVENT_ID_TAKEN_NOTES = (ALREADY_IN_THE_OUTBOX, MADE_TWICE_IN_THE_RUN)
