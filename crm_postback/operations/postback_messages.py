"""Texts a postback carries in its history (`last_message`), shared by every layer that ends
a row the same way: the worker at resolution and at the claim, the withdrawal command, and
the operator's replay."""

from __future__ import annotations

from datetime import datetime


def consent_withdrawn_message(withdrawn_at: datetime) -> str:
    """Why a postback of a lead that withdrew consent was not sent."""
    return f"the lead withdrew consent at {withdrawn_at.isoformat(timespec='seconds')}; not sent"
