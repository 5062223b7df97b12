"""Request examples published in /openapi.json (docs/http-api.md shows the same calls with curl)."""

from __future__ import annotations

from typing import Any

_SUBMITTED = {
    "type": "lead.submitted",
    "lead_id": "L-1001",
    "event_set": "acme-crm",
    "occurred_at": "2026-11-21T10:00:00Z",
    "match_keys": {
        "email": "jane@example.com",
        "phone": "(213) 373-4253",
        "ttclid": "E.C.P.click-123",
        "tiktok_lead_id": "7311111111111111111",
        "first_name": "Jane",
        "last_name": "Doe",
        "city": "Los Angeles",
        "state": "CA",
        "country": "US",
        "zip_code": "90012",
    },
    "event_id": "pixel-ev-8d1f",
}
_SOLD = {
    "type": "lead.sold",
    "lead_id": "L-1001",
    "event_set": "acme-crm",
    "occurred_at": "2026-11-21T10:20:00Z",
    "attributes": {"value": 42.5, "currency": "USD", "buyer_id": "B17"},
    "idempotency_key": "sale-88412",
}

TRIGGER_EXAMPLES: dict[str, Any] = {
    "single": {"summary": "One trigger with match keys (hashed on arrival)", "value": _SUBMITTED},
    "batch": {"summary": "A batch: answered item by item", "value": [_SUBMITTED, _SOLD]},
}
LEAD_KEYS_EXAMPLES: dict[str, Any] = {
    "late_keys": {
        "summary": "Keys that arrived after the first trigger",
        "value": {"match_keys": {"ttclid": "E.C.P.click-123", "tiktok_lead_id": "7311111111"}},
    },
    "limited_data_use": {
        "summary": "The lead opted out of data sharing (US state privacy law)",
        "value": {"limited_data_use": True},
    },
}
