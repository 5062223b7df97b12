"""The kinds of match key an event can carry, as bits of `postbacks.match_key_mask`.

The bit values are stored: never renumber one, only add new ones at the end.
"""

from __future__ import annotations

from enum import IntFlag


class MatchKeyKind(IntFlag):
    EMAIL = 1
    PHONE = 1 << 1
    EXTERNAL_ID = 1 << 2
    TTCLID = 1 << 3
    TTP = 1 << 4
    IP = 1 << 5
    USER_AGENT = 1 << 6
    LEAD_ID = 1 << 7  # lead.lead_id, the TikTok lead id (CRM)
    FIRST_NAME = 1 << 8
    LAST_NAME = 1 << 9
    CITY = 1 << 10
    STATE = 1 << 11
    COUNTRY = 1 << 12
    ZIP_CODE = 1 << 13
    LOCALE = 1 << 14
    PAGE_URL = 1 << 15


# Keys that identify a person or a click on their own; names and address parts only narrow
# a match down, so an event with nothing but those is not sent (`no_match_key`).
IDENTIFYING = (
    MatchKeyKind.EMAIL
    | MatchKeyKind.PHONE
    | MatchKeyKind.EXTERNAL_ID
    | MatchKeyKind.TTCLID
    | MatchKeyKind.TTP
    | MatchKeyKind.LEAD_ID
)
