"""A small client of the simulator's `/_sim/*` control endpoints."""

from __future__ import annotations

import time
from typing import Any

import requests

_POLL_SECONDS = 0.05


class SimulatorControl:
    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()

    def health(self) -> bool:
        try:
            response = self._session.get(self._url("health"), timeout=self.timeout)
        except requests.RequestException:
            return False
        return response.ok

    def register_event_set(
        self,
        event_set_id: str,
        access_token: str,
        kind: str = "crm",
        name: str = "",
        advertiser_id: str = "",
    ) -> dict[str, Any]:
        """Register (or re-register with a new token, to simulate rotation) an event set."""
        return self._post(
            "event-sets",
            {
                "event_set_id": event_set_id,
                "access_token": access_token,
                "kind": kind,
                "name": name,
                "advertiser_id": advertiser_id,
            },
        )

    def set_faults(self, **rates: float | int | None) -> dict[str, Any]:
        """Change some fault settings (e.g. `throttle_rate=0.2`); returns all of them."""
        return self._post("faults", rates)

    def set_rate_limit(self, rate: str | None, strategy: str = "moving") -> dict[str, Any] | None:
        """Answer 40100 above `rate` track requests per access token (`limits` notation:
        "5/second", "100 per minute"; strategy `moving` or `fixed` window); None turns it
        off. Returns the limit now in force."""
        payload: dict[str, Any] = {"rate": rate}
        if rate is not None:
            payload["strategy"] = strategy
        result: dict[str, Any] | None = self._post("rate-limit", payload)["rate_limit"]
        return result

    def requests(self) -> list[dict[str, Any]]:
        """The latest track requests: `at` (epoch seconds), `token` (a fingerprint) and
        `rate_limited` (refused by the request limit)."""
        result: list[dict[str, Any]] = self._get("requests")
        return result

    def events(self, **filters: str | bool) -> list[dict[str, Any]]:
        """Accepted events; filters: event_source_id, event_id, event, include_duplicates."""
        result: list[dict[str, Any]] = self._get("events", _query(filters))
        return result

    def count_events(self, **filters: str | bool) -> int:
        result: dict[str, int] = self._get("events", {**_query(filters), "count_only": "true"})
        return result["count"]

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._get("stats")
        return result

    def reset(self, event_sets: bool = False) -> None:
        self._post("reset", {"event_sets": event_sets})

    def wait_for_events(
        self, count: int, timeout: float = 30.0, **filters: str | bool
    ) -> list[dict[str, Any]]:
        """Poll until at least `count` matching events arrived; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        seen = self.count_events(**filters)
        while seen < count:
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"expected {count} events matching {filters or 'anything'}, "
                    f"got {seen} within {timeout} s"
                )
            time.sleep(_POLL_SECONDS)
            seen = self.count_events(**filters)
        return self.events(**filters)

    def close(self) -> None:
        self._session.close()

    def _url(self, endpoint: str) -> str:
        return f"{self.base_url}/_sim/{endpoint}"

    def _get(self, endpoint: str, params: dict[str, str] | None = None) -> Any:
        response = self._session.get(self._url(endpoint), params=params, timeout=self.timeout)
        response.raise_for_status()
        return response.json()

    def _post(self, endpoint: str, payload: dict[str, Any]) -> Any:
        response = self._session.post(self._url(endpoint), json=payload, timeout=self.timeout)
        response.raise_for_status()
        return response.json()


def _query(filters: dict[str, str | bool]) -> dict[str, str]:
    return {
        name: ("true" if value else "false") if isinstance(value, bool) else value
        for name, value in filters.items()
    }
