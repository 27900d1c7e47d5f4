"""Jira timestamps parse to aware UTC (through `datetime.fromisoformat`) and format back."""

from datetime import UTC, datetime, timedelta, timezone
from typing import assert_type

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
        ("2024-01-02T03:04:05.678+0000", datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)),
        ("2025-01-15T09:30:12.345+0100", datetime(2025, 1, 15, 8, 30, 12, 345000, tzinfo=UTC)),
        ("2025-01-15T09:30:12.345-0800", datetime(2025, 1, 15, 17, 30, 12, 345000, tzinfo=UTC)),
        ("2025-01-15T00:30:00.000+1300", datetime(2025, 1, 14, 11, 30, tzinfo=UTC)),
        ("2025-01-15T09:30:12+05:30", datetime(2025, 1, 15, 4, 0, 12, tzinfo=UTC)),
        ("2025-01-15T09:30:12Z", datetime(2025, 1, 15, 9, 30, 12, tzinfo=UTC)),
        ("2025-01-15T09:30:12.345+05:45", datetime(2025, 1, 15, 3, 45, 12, 345000, tzinfo=UTC)),
        ("2025-01-15T09:30:12.345", datetime(2025, 1, 15, 9, 30, 12, 345000, tzinfo=UTC)),
        ("2025-01-15 09:30", datetime(2025, 1, 15, 9, 30, tzinfo=UTC)),
        ("  2025-01-15T09:30:12Z\n", datetime(2025, 1, 15, 9, 30, 12, tzinfo=UTC)),
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


def test_an_aware_datetime_is_converted_to_utc():
    tokyo = datetime(2025, 1, 1, 9, tzinfo=timezone(timedelta(hours=9)))
    parsed = parse_jira_datetime(tokyo)
    assert parsed == datetime(2025, 1, 1, 0, tzinfo=UTC) and parsed.tzinfo is UTC


def test_a_string_gives_a_datetime_and_none_gives_none_to_the_type_checker_too() -> None:
    parsed = assert_type(parse_jira_datetime("2024-01-02T03:04:05.678+0000"), datetime)
    assert parsed.tzinfo is UTC
    assert assert_type(parse_jira_datetime(None), None) is None


@pytest.mark.parametrize(
    "text", ["yesterday", "", "2025-13-01", "2025-01-15T25:00:00Z", "15/01/2025", "1736933412345"],
)
def test_garbage_is_rejected_by_name(text):
    with pytest.raises(TimestampError, match="not a Jira timestamp"):
        parse_jira_datetime(text)


@pytest.mark.parametrize("value", [1736933412345, 17.5, ["2025-01-15"], {"date": "2025-01-15"}])
def test_a_value_of_another_type_is_a_timestamp_error_not_a_crash(value):
    with pytest.raises(TimestampError, match="not a Jira timestamp"):
        parse_jira_datetime(value)


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
