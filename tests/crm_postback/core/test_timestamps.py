from datetime import UTC, datetime, timedelta, timezone

from crm_postback.core.timestamps import naive_means_utc


def test_a_naive_datetime_is_taken_as_utc() -> None:
    assert naive_means_utc(datetime(2026, 12, 1, 10, 0)) == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def test_an_aware_datetime_keeps_its_zone_and_instant() -> None:
    plus_two = datetime(2026, 12, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert naive_means_utc(plus_two) is plus_two


def test_none_stays_none() -> None:
    assert naive_means_utc(None) is None
