"""Upserts grouped by partition: interleaved days are counted per day, memory stays bounded."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from jira_pipeline.storage.entities import entity_spec
from jira_pipeline.storage.partitioned_writes import HELD_BATCHES, upsert_by_partition
from jira_pipeline_tests.storage.conftest import T0, Store, issue


def test_interleaved_days_are_counted_per_day_with_a_bounded_hold(store: Store) -> None:
    days = [T0 + timedelta(days=n) for n in range(5)]
    spec = entity_spec("issues")
    # Round-robin over five days, more records than the hold: forces writes of partial batches.
    records = [issue(n, days[n % 5] + timedelta(minutes=n)) for n in range(103)]
    def partition_of(record: Mapping[str, Any] | BaseModel) -> str:
        assert isinstance(record, Mapping)
        return record["updated"].date().isoformat()

    keys = [day.date().isoformat() for day in days] + ["a-day-without-records"]
    counts = upsert_by_partition(store.db, spec, records, partition_of, keys, batch_size=4)

    assert {key: c.inserted for key, c in counts.items()} == {
        **{day.date().isoformat(): sum(1 for n in range(103) if n % 5 == i)
           for i, day in enumerate(days)},
        "a-day-without-records": 0,
    }
    assert store.db[spec.collection].count_documents({}) == 103

    # The same records again, partly newer: updates and unchanged are attributed per day too.
    newer = [issue(n, days[n % 5] + timedelta(minutes=n, seconds=1), summary="changed")
             if n < 10 else issue(n, days[n % 5] + timedelta(minutes=n)) for n in range(103)]
    again = upsert_by_partition(store.db, spec, newer, partition_of, keys, batch_size=4)
    assert sum(c.updated for c in again.values()) == 10
    assert sum(c.unchanged for c in again.values()) == 93
    assert again[days[0].date().isoformat()].updated == 2  # records 0 and 5
    assert HELD_BATCHES * 4 < 103
