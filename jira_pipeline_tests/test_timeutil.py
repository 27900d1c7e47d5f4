from datetime import UTC, datetime

import pytest

from jira_pipeline.timeutil import (
    TimestampError,
    format_jira_datetime,
    from_epoch_ms,
    parse_jira_datetime,
    to_epoch_ms,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-15T09:30:12.345+0100", datetime(2025, 1, 15, 8, 30, 12, 345000, tzinfo=UTC)),
        ("2025-01-15T09:30:12.345-0800", datetime(2025, 1, 15, 17, 30, 12, 345000, tzinfo=UTC)),
        ("2025-01-15T00:30:00.000+1300", datetime(2025, 1, 14, 11, 30, tzinfo=UTC)),
        ("2025-01-15T09:30:12+05:30", datetime(2025, 1, 15, 4, 0, 12, tzinfo=UTC)),
        ("2025-01-15T09:30:12Z", datetime(2025, 1, 15, 9, 30, 12, tzinfo=UTC)),
        ("2025-01-15", datetime(2025, 1, 15, tzinfo=UTC)),
    ],
)
def test_jira_timestamps_parse_to_aware_utc(text, expected):
    parsed = parse_jira_datetime(text)
    assert parsed == expected
    assert parsed.utcoffset().total_seconds() == 0


def test_naive_datetime_is_taken_as_utc_and_none_stays_none():
    assert parse_jira_datetime(datetime(2025, 1, 1, 12)) == datetime(2025, 1, 1, 12, tzinfo=UTC)
    assert parse_jira_datetime(None) is None


def test_garbage_is_rejected_by_name():
    with pytest.raises(TimestampError, match="not a Jira timestamp"):
        parse_jira_datetime("yesterday")


@pytest.mark.parametrize("offset", [-480, 0, 60, 330, 780])
def test_format_round_trips_through_parse(offset):
    moment = datetime(2025, 3, 9, 23, 59, 59, 999000, tzinfo=UTC)
    text = format_jira_datetime(moment, offset)
    assert parse_jira_datetime(text) == moment


def test_epoch_milliseconds_round_trip_and_refuse_naive():
    moment = datetime(2024, 2, 29, 0, 0, tzinfo=UTC)
    assert to_epoch_ms(moment) == 1709164800000
    assert from_epoch_ms(1709164800000) == moment
    with pytest.raises(TimestampError):
        to_epoch_ms(datetime(2024, 2, 29))
