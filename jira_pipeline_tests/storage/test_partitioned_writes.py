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


def _by_day(record: Mapping[str, Any] | BaseModel) -> str:
    assert isinstance(record, Mapping)
    return str(record["updated"].date().isoformat())


def test_one_batch_spanning_days_counts_each_outcome_for_its_own_day(store: Store) -> None:
    spec = entity_spec("issues")
    days = [T0 + timedelta(days=n) for n in range(3)]
    keys = [day.date().isoformat() for day in days]
    collection = store.db[spec.collection]
    # Stored before the run: issue 1 (day 0, to be updated), 2 (day 1, unchanged) and 3 (day 2,
    # stored at a newer version than the run brings: stale).
    upsert_by_partition(store.db, spec, [
        issue(1, days[0]), issue(2, days[1]), issue(3, days[2] + timedelta(hours=2)),
    ], _by_day, keys, batch_size=10)

    records = [
        issue(1, days[0] + timedelta(minutes=5), summary="edited"),  # day 0: updated
        issue(4, days[2]),  # day 2: inserted
        issue(2, days[1]),  # day 1: unchanged
        issue(3, days[2]),  # day 2: skipped as stale
        {**issue(5, days[1]), "issue_id": None},  # day 1: no Jira id, dead-lettered
        issue(6, days[0]),  # day 0: an older copy, superseded in the batch
        issue(6, days[1]),  # day 1: inserted
    ]
    counts = upsert_by_partition(store.db, spec, records, _by_day, keys, batch_size=len(records))

    figures = {key: (c.inserted, c.updated, c.unchanged, c.skipped_stale, c.dead_lettered)
               for key, c in counts.items()}
    assert figures == {
        keys[0]: (0, 1, 0, 1, 0),
        keys[1]: (1, 0, 1, 0, 1),
        keys[2]: (1, 0, 0, 1, 0),
    }
    assert collection.find_one({"issue_id": "1"})["summary"] == "edited"
    assert collection.find_one({"issue_id": "3"})["updated"].hour == (T0 + timedelta(hours=2)).hour
    assert collection.count_documents({}) == 5


def test_a_stream_failing_mid_batch_loses_nothing_a_rerun_does_not_complete(store: Store) -> None:
    spec = entity_spec("issues")
    days = [T0 + timedelta(days=n) for n in range(4)]
    keys = [day.date().isoformat() for day in days]
    records = [issue(n, days[n % 4] + timedelta(minutes=n)) for n in range(30)]

    def failing() -> Any:
        for number, record in enumerate(records):
            if number == 17:
                raise ConnectionError("Jira went away")
            yield record

    try:
        upsert_by_partition(store.db, spec, failing(), _by_day, keys, batch_size=5)
    except ConnectionError:
        pass
    else:
        raise AssertionError("the stream's error must reach the caller")
    collection = store.db[spec.collection]
    # Whole batches before the failure are stored (15 records); none of them is half-written.
    stored = {doc["issue_id"] for doc in collection.find({}, {"issue_id": 1})}
    assert stored == {str(n) for n in range(15)}

    again = upsert_by_partition(store.db, spec, records, _by_day, keys, batch_size=5)

    assert sum(c.unchanged for c in again.values()) == 15
    assert sum(c.inserted for c in again.values()) == 15
    for n, key in enumerate(keys):
        assert again[key].total == sum(1 for m in range(30) if m % 4 == n)
    assert collection.count_documents({}) == 30
