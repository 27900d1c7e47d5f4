"""The Mongo IO manager through Dagster's own execution: lazy upserts out, DataFrames in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import dagster as dg
import pandas as pd
import pytest

import jira_pipeline.storage.io_manager as io_manager_module
from jira_pipeline.storage.io_manager import (
    CONNECTION_METADATA_KEY,
    MongoUpsertIOManager,
    RecordStream,
    Tombstone,
    Upsert,
    WriteItem,
    WriteStream,
)
from jira_pipeline.storage.upserts import mark_deleted_except, upsert_records
from jira_pipeline_tests.storage.conftest import Store, issue

DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_offset=1)


def _materialization(result: dg.ExecuteInMemoryResult, asset: str) -> dict:
    [event] = result.asset_materializations_for_node(asset)
    return {key: getattr(value, "value", value) for key, value in event.metadata.items()}


class CountedRecords(WriteStream):
    """A lazy stream of upserts that reports API counters once consumed (as the Jira assets
    do)."""

    def __init__(self, records: list[dict]) -> None:
        super().__init__((), self.counters)
        self._records = records
        self.consumed = 0

    def __iter__(self) -> Iterator[WriteItem]:
        for record in self.records():
            yield Upsert(record)

    def records(self) -> Iterator[dict]:
        for record in self._records:
            self.consumed += 1
            yield record

    def counters(self) -> dict:
        return {"api_calls": 3, "records_seen_by_asset": self.consumed}


class SlowRecords(CountedRecords):
    """Records that each take half a second of the IO manager's (injected) clock to arrive."""

    def __init__(self, records: list[dict], clock: list[float]) -> None:
        super().__init__(records)
        self._clock = clock

    def records(self) -> Iterator[dict]:
        for record in super().records():
            self._clock[0] += 0.5
            yield record


def test_handle_output_upserts_and_reports_counts_duration_and_the_assets_own_metadata(
    store: Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(io_manager_module, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    stream = SlowRecords([issue(i) for i in range(4)], clock)

    @dg.asset
    def jira_issues() -> CountedRecords:
        return stream

    io_manager = MongoUpsertIOManager(mongo=store.resource())
    first = dg.materialize([jira_issues], resources={"io_manager": io_manager})
    second = dg.materialize([jira_issues], resources={"io_manager": io_manager})

    meta = _materialization(first, "jira_issues")
    assert (meta["inserted"], meta["updated"], meta["unchanged"], meta["skipped_stale"]) == (
        4, 0, 0, 0,
    )  # fmt: skip
    assert meta["dagster/row_count"] == 4
    # The duration covers reading the stream (fetching from Jira), not only the writes.
    assert (meta["duration_s"], meta["records_per_s"]) == (2.0, 2.0)
    assert meta["api_calls"] == 3 and meta["records_seen_by_asset"] == 4
    assert _materialization(second, "jira_issues")["unchanged"] == 4
    assert store.db.jira_issues.count_documents({}) == 4


def test_connection_prefixed_asset_keys_write_the_shared_entity_collection(store: Store) -> None:
    @dg.asset(key=["acme", "jira_issues"])
    def acme_issues() -> list[dict]:
        return [issue(1, connection_id="acme")]

    io_manager = MongoUpsertIOManager(mongo=store.resource())
    dg.materialize([acme_issues], resources={"io_manager": io_manager})

    assert store.db.jira_issues.find_one({"connection_id": "acme"})["key"] == "ACME-1"


def test_records_are_written_batch_by_batch_while_the_stream_is_read(store: Store) -> None:
    batch = 10
    stored_when_yielded: list[tuple[int, int]] = []

    def records() -> Iterator[dict]:
        for i in range(5 * batch):
            stored_when_yielded.append((i, store.db.jira_issues.count_documents({})))
            yield issue(i)

    @dg.asset
    def jira_issues() -> RecordStream:
        return RecordStream(records())

    io_manager = MongoUpsertIOManager(mongo=store.resource(), batch_size=batch)
    dg.materialize([jira_issues], resources={"io_manager": io_manager})

    assert [stored for i, stored in stored_when_yielded if i % batch == 0] == [0, 10, 20, 30, 40]
    assert all(i - stored <= batch for i, stored in stored_when_yielded)


def test_a_stream_of_several_batches_and_a_partial_one_is_stored_whole(store: Store) -> None:
    # Memory bounded by a batch is measured in benchmarks/storage_bench.py (RSS, 50,000 records):
    # here, that batching loses and repeats nothing.
    total, batch = 2_345, 1_000

    @dg.asset
    def jira_issues() -> RecordStream:
        return RecordStream(issue(i) for i in range(total))

    io_manager = MongoUpsertIOManager(mongo=store.resource(), batch_size=batch)
    result = dg.materialize([jira_issues], resources={"io_manager": io_manager})

    assert _materialization(result, "jira_issues")["inserted"] == total
    assert store.db.jira_issues.count_documents({}) == total
    assert sorted(int(i) for i in store.db.jira_issues.distinct("issue_id")) == list(range(total))


def test_tombstones_are_applied_once_every_upsert_before_them_is_written(store: Store) -> None:
    batch = 2
    upsert_records(store.db, "issues", [issue(i) for i in (7, 8, 9)])
    written_when_tombstoned: list[int] = []

    def items() -> Iterator[WriteItem]:
        for i in range(5):
            yield Upsert(issue(i))
        # The IO manager still holds the last, partial batch: it is written before the marks.
        written_when_tombstoned.append(store.db.jira_issues.count_documents({}))
        yield Tombstone("issues", frozenset({"8", "9", "4"}))

    @dg.asset(metadata={CONNECTION_METADATA_KEY: "conn-1"})
    def jira_issues() -> WriteStream:
        return WriteStream(items(), lambda: {"api_calls": 2})

    io_manager = MongoUpsertIOManager(mongo=store.resource(), batch_size=batch)
    result = dg.materialize([jira_issues], resources={"io_manager": io_manager})

    meta = _materialization(result, "jira_issues")
    assert (meta["inserted"], meta["marked_deleted"], meta["api_calls"]) == (5, 3, 2)
    assert written_when_tombstoned == [3 + 4]  # 4 of the 5 upserts: one batch still held
    deleted = {d["issue_id"] for d in store.db.jira_issues.find({"is_deleted": True})}
    assert deleted == {"4", "8", "9"}


def test_a_full_refresh_tombstone_marks_every_live_row_but_those_listed(store: Store) -> None:
    upsert_records(store.db, "issues", [issue(i) for i in (1, 2, 3)])
    upsert_records(store.db, "issues", [issue(5, connection_id="other")])

    @dg.asset(metadata={CONNECTION_METADATA_KEY: "conn-1"})
    def jira_issues() -> WriteStream:
        return WriteStream([Upsert(issue(1)), Tombstone.all_except("issues", {"1", "2"})])

    io_manager = MongoUpsertIOManager(mongo=store.resource())
    result = dg.materialize([jira_issues], resources={"io_manager": io_manager})

    assert _materialization(result, "jira_issues")["marked_deleted"] == 1
    deleted = {(d["connection_id"], d["issue_id"])
               for d in store.db.jira_issues.find({"is_deleted": True})}
    assert deleted == {("conn-1", "3")}  # another connection's rows are never touched


def test_a_tombstone_without_a_declared_connection_marks_nothing(store: Store) -> None:
    upsert_records(store.db, "issues", [issue(1)])

    @dg.asset
    def jira_issues() -> WriteStream:
        return WriteStream([Tombstone("issues", frozenset({"1"}))])

    io_manager = MongoUpsertIOManager(mongo=store.resource())
    result = dg.materialize([jira_issues], resources={"io_manager": io_manager},
                            raise_on_error=False)

    assert not result.success
    assert store.db.jira_issues.count_documents({"is_deleted": True}) == 0


# --- load_input --------------------------------------------------------------------------------

DAY = datetime(2026, 1, 5, tzinfo=UTC)
MS = timedelta(milliseconds=1)


def _seed_edges(store: Store) -> None:
    """Issues right at and around the midnights that bound 2026-01-05."""
    upsert_records(
        store.db,
        "issues",
        [
            issue("before", DAY - MS),  # 2026-01-04 23:59:59.999
            issue("start", DAY),  # 2026-01-05 00:00:00.000
            issue("end", DAY + timedelta(days=1) - MS),  # 2026-01-05 23:59:59.999
            issue("next", DAY + timedelta(days=1)),  # 2026-01-06 00:00:00.000
            issue("ancient", datetime(2019, 6, 1, tzinfo=UTC)),  # before the first partition
        ],
    )


def _read(
    store: Store,
    *,
    partitioned: bool,
    partition_key: str | None = None,
    mapping: dg.PartitionMapping | None = None,
    upstream_metadata: dict | None = None,
) -> pd.DataFrame:
    """Materialize one asset downstream of jira_issues and return the DataFrame it was given."""
    seen: list[pd.DataFrame] = []

    @dg.asset(partitions_def=DAILY if partitioned else None, metadata=upstream_metadata)
    def jira_issues() -> list[dict]:
        raise AssertionError("only read in these tests")

    @dg.asset(
        partitions_def=DAILY if partition_key else None,
        ins={"jira_issues": dg.AssetIn(partition_mapping=mapping)},
        io_manager_key="memory",
    )
    def view(jira_issues: pd.DataFrame) -> None:
        seen.append(jira_issues)

    dg.materialize(
        [jira_issues, view],
        selection=[view],
        partition_key=partition_key,
        resources={
            "io_manager": MongoUpsertIOManager(mongo=store.resource()),
            "memory": dg.InMemoryIOManager(),
        },
    )
    [frame] = seen
    return frame


def test_a_partitioned_input_is_its_window_from_midnight_inclusive_to_midnight_exclusive(
    store: Store,
) -> None:
    _seed_edges(store)

    frame = _read(store, partitioned=True, partition_key="2026-01-05")

    assert sorted(frame["issue_id"]) == ["end", "start"]
    assert "raw" not in frame.columns
    assert str(frame["updated"].dt.tz) == "UTC"
    assert frame.set_index("issue_id").loc["start", "updated"] == pd.Timestamp(DAY)


def test_a_partition_mapping_spanning_two_days_reads_both_windows(store: Store) -> None:
    _seed_edges(store)

    frame = _read(
        store,
        partitioned=True,
        partition_key="2026-01-06",
        mapping=dg.TimeWindowPartitionMapping(start_offset=-1),
    )

    assert sorted(frame["issue_id"]) == ["end", "next", "start"]


def test_an_unpartitioned_asset_reading_the_partitioned_issues_gets_the_whole_collection(
    store: Store,
) -> None:
    _seed_edges(store)
    mark_deleted_except(store.db, "issues", "conn-1", ["before", "start", "end", "next"])

    frame = _read(store, partitioned=True)

    # "ancient" predates the first partition: still live data, but it was marked deleted here,
    # and deleted rows are left out.
    assert sorted(frame["issue_id"]) == ["before", "end", "next", "start"]


def test_an_empty_window_gives_an_empty_frame_with_the_key_columns(store: Store) -> None:
    _seed_edges(store)

    frame = _read(store, partitioned=True, partition_key="2026-01-02")

    assert frame.empty
    assert {"issue_id", "key", "updated", "status_id"} <= set(frame.columns)


def test_an_input_is_limited_to_the_upstream_assets_connection(store: Store) -> None:
    upsert_records(store.db, "issues", [issue(1), issue(2, connection_id="other")])

    frame = _read(store, partitioned=False, upstream_metadata={"jira/connection_id": "conn-1"})

    assert list(frame["connection_id"]) == ["conn-1"]


class SelfReferringStream(WriteStream):
    """A stream whose generator refers back to it (as the comments' does): it is closed by
    the IO manager when a write fails, not whenever the cycle collector runs."""

    def __init__(self, records: list[dict]) -> None:
        super().__init__(self._generate(records))
        self.closed_while_failing = False
        self.failing = False

    def _generate(self, records: list[dict]) -> Iterator[WriteItem]:
        try:
            for record in records:
                yield Upsert(record)
        finally:
            self.closed_while_failing = self.failing


def test_a_failed_write_closes_the_stream_at_once(
    store: Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gc

    stream = SelfReferringStream([issue(i) for i in range(5)])

    def failing_upserts(db: object, entity: str, records: Iterator[object], **kwargs: object):
        next(iter(records))
        stream.failing = True
        raise RuntimeError("the store went away")

    monkeypatch.setattr(io_manager_module, "upsert_records", failing_upserts)
    monkeypatch.setattr(io_manager_module, "write_per_partition", lambda *a, **k: None)

    @dg.asset
    def jira_issues() -> WriteStream:
        return stream

    gc.disable()  # the cycle collector must not be what closes it
    try:
        result = dg.materialize([jira_issues], raise_on_error=False,
                                resources={"io_manager": MongoUpsertIOManager(
                                    mongo=store.resource())})
        assert not result.success
        assert stream.closed_while_failing
    finally:
        gc.enable()
