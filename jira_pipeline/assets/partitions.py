"""The daily partitions of `jira_issues`, defined once: a partition is a UTC day of `updated`."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg

PARTITION_KEY_FORMAT = "%Y-%m-%d"


def issue_partitions(start: date) -> dg.DailyPartitionsDefinition:
    """Daily UTC partitions from `start`; `end_offset=1` makes today a partition.

    The start is a fixed date (never "N days ago") so the partition set never moves under
    materialized history.
    """
    return dg.DailyPartitionsDefinition(
        start_date=start.isoformat(), timezone="UTC", end_offset=1, fmt=PARTITION_KEY_FORMAT
    )


def partition_key_for(partitions: dg.DailyPartitionsDefinition, moment: datetime) -> str:
    """The key of the UTC day containing `moment` (the first partition for earlier moments)."""
    first = partitions.get_first_partition_key()
    assert first is not None
    key = moment.astimezone(UTC).strftime(PARTITION_KEY_FORMAT)
    return max(key, first)


def partition_keys_between(
    partitions: dg.DailyPartitionsDefinition, start: datetime, end: datetime
) -> list[str]:
    """Every partition key from the day of `start` to the day of `end`, inclusive."""
    first, last = partition_key_for(partitions, start), partition_key_for(partitions, end)
    day, keys = datetime.strptime(first, PARTITION_KEY_FORMAT), []
    while (key := day.strftime(PARTITION_KEY_FORMAT)) <= last:
        keys.append(key)
        day += timedelta(days=1)
    return keys
