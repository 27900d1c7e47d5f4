"""`MongoUpsertIOManager`: the one writer of entity collections: assets hand it lazy streams of
upserts and tombstones; MongoDB gets guarded upserts and proven deletions."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import BaseModel, Field
from pymongo.database import Database

from jira_pipeline.storage.copied_names import refresh_copied_names
from jira_pipeline.storage.daily_summary import (
    DailySummary,
    StoredIssueDays,
    partition_ranges,
    stored_issue_days,
    write_daily_summary,
)
from jira_pipeline.storage.derived_rows import DerivedRows, write_derived_rows
from jira_pipeline.storage.entities import ENTITIES, EntitySpec, UnknownEntityError
from jira_pipeline.storage.partitioned_writes import write_per_partition
from jira_pipeline.storage.resources import MongoResource
from jira_pipeline.storage.sync_cursors import FeedCursor, write_cursor
from jira_pipeline.storage.sync_errors import SyncError, UnstorableRecord
from jira_pipeline.storage.upserts import (
    DEFAULT_BATCH_SIZE,
    UpsertCounts,
    mark_deleted_except,
    mark_deleted_ids,
    older_objects_frozen,
    upsert_records,
)

if TYPE_CHECKING:  # imported where a DataFrame is built: pandas costs a run ~45 MB RSS
    import pandas as pd

CONNECTION_METADATA_KEY = "jira/connection_id"
# Timestamps every entity document carries besides its own datetime fields.
_STORAGE_DATETIMES = ("synced_at", "deleted_at")
# Odd records are logged one by one up to this many per run, then counted only.
_LOGGED_PER_KIND = 20


@dataclass(frozen=True)
class Upsert:
    """One record to store: upserted, version-guarded (or filed in jira_sync_errors)."""

    record: BaseModel | Mapping[str, Any] | UnstorableRecord


@dataclass(frozen=True)
class Tombstone:
    """Rows of `entity` the reconciliation proved gone from Jira, applied once every upsert
    before it in the stream is written: the Jira `ids` given, or, for a full refresh
    (`Tombstone.all_except`), every live row of the connection but the ones listed."""

    entity: str
    ids: frozenset[str] = frozenset()
    kept: frozenset[str] | None = None

    @classmethod
    def all_except(cls, entity: str, kept: Iterable[str]) -> Tombstone:
        return cls(entity, kept=frozenset(kept))


WriteItem = Upsert | Tombstone | FeedCursor


class WriteStream:
    """What an asset hands the IO manager: a lazy stream of upserts and tombstones.

    Dagster takes a *generator* returned by an asset for a stream of events, so the items are
    wrapped in this. The IO manager reads the stream once, writing upserts in batches while it
    is read and applying tombstones after the upserts; `metadata()` is asked once the whole
    stream is written (what fetching cost: API calls, retries, ...) and joins the
    materialization's metadata. Nothing is written anywhere but by the IO manager.
    """

    def __init__(
        self,
        items: Iterable[WriteItem],
        metadata: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self._items = items
        self._metadata = metadata

    def __iter__(self) -> Iterator[WriteItem]:
        return iter(self._items)

    def metadata(self) -> dict[str, Any]:
        return dict(self._metadata()) if self._metadata is not None else {}


class RecordStream(WriteStream):
    """A stream of upserts only, from plain records (dicts or pydantic models)."""

    def __init__(
        self,
        records: Iterable[Any],
        final_metadata: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__((Upsert(record) for record in records), final_metadata)


def spec_for_asset(asset_key: dg.AssetKey) -> EntitySpec:
    """The entity an asset stores: its key's last part is the collection (`jira_issues`), possibly
    after a connection prefix (`acme_jira_issues`): one collection per entity, rows carry
    `connection_id`."""
    name = asset_key.path[-1]
    for spec in ENTITIES.values():
        if name == spec.collection or name.endswith(f"_{spec.collection}"):
            return spec
    collections = ", ".join(spec.collection for spec in ENTITIES.values())
    raise UnknownEntityError(
        f"asset {asset_key.to_user_string()} is not a Jira entity asset: the Mongo IO manager "
        f"stores only {collections} (name the asset after one, or give it another IO manager)"
    )


class MongoUpsertIOManager(dg.ConfigurableIOManager):
    """Upserts the records an asset returns, in batches, and loads them back as a DataFrame.

    `handle_output` takes a `WriteStream` (upserts and tombstones; its `metadata()` joins the
    materialization once everything is written: how an asset reports its API-call counters), or
    any iterable of records (dicts or pydantic models). Either is consumed lazily, so memory is
    bounded by one batch however large the partition or backfill. It is the only writer of the
    entity collections.
    """

    mongo: MongoResource
    batch_size: int = Field(default=DEFAULT_BATCH_SIZE, ge=1, description="records per bulk write")
    include_deleted: bool = Field(
        default=False, description="load_input also returns rows marked is_deleted"
    )

    @older_objects_frozen()
    def handle_output(
        self, context: dg.OutputContext,
        obj: WriteStream | Iterable[Any] | DailySummary | DerivedRows | None,
    ) -> None:
        if isinstance(obj, DailySummary):
            self._write_daily_summary(context, obj)
            return
        if isinstance(obj, DerivedRows):
            self._write_derived_rows(context, obj)
            return
        spec = spec_for_asset(context.asset_key)
        started = time.perf_counter()
        records = obj if obj is not None else ()
        stream = records if isinstance(records, WriteStream) else RecordStream(records)
        odd = OddRecordReport(context, spec)
        db = self.mongo.get_database()
        connection_id = declared_connection_id(context.definition_metadata)
        tombstones: list[Tombstone] = []
        cursors: list[FeedCursor] = []
        # Several partitions in one step: each partition's materialization gets its own counts.
        upserted = _upserted(stream, tombstones, cursors)
        # Closed when a write fails: the stream stops then (a walk or a fetch it started in the
        # background is cancelled), not whenever the garbage collector reaches it.
        with closing(upserted):
            watched = odd.watch(upserted)  # consumed by either
            counts: UpsertCounts = write_per_partition(
                context, db, spec, watched, batch_size=self.batch_size,
                connection_id=connection_id, on_sync_error=odd.sync_error,
            ) or upsert_records(
                db, spec.name, watched, batch_size=self.batch_size,
                connection_id=connection_id, on_sync_error=odd.sync_error,
            )
        marked = sum(
            apply_tombstone(db, spec, connection_id, tombstone, context.log)
            for tombstone in tombstones
        )
        for cursor in cursors:  # a feed's position, stored once what it covers is written
            if connection_id is None:
                raise ValueError(f"a feed cursor needs the asset's {CONNECTION_METADATA_KEY}")
            write_cursor(db, connection_id, cursor)
        # A dimension written: issues' copies of its names follow in the same step.
        renamed = refresh_copied_names(db, spec.name, connection_id)
        # The stream is read while it is written, so this covers fetching from Jira too.
        duration = time.perf_counter() - started
        metadata: dict[str, Any] = {
            "inserted": counts.inserted,
            "updated": counts.updated,
            "unchanged": counts.unchanged,
            "skipped_stale": counts.skipped_stale,
            "dagster/row_count": counts.total,
            "duration_s": dg.MetadataValue.float(round(duration, 3)),
            "records_per_s": dg.MetadataValue.float(round(counts.total / max(duration, 1e-9), 1)),
            "collection": spec.collection,
            **renamed,
            **odd.metadata(counts),
        }
        if isinstance(obj, WriteStream):
            metadata["marked_deleted"] = marked
        metadata.update(stream.metadata())
        context.add_output_metadata(metadata)

    def _write_daily_summary(self, context: dg.OutputContext, summary: DailySummary) -> None:
        """The summary's ranges replace their stored rows (`storage/daily_summary.py`)."""
        counts = write_daily_summary(self.mongo.get_database(), summary)
        context.add_output_metadata({
            "inserted": counts.inserted, "updated": counts.updated,
            "unchanged": counts.unchanged, "removed": counts.removed,
        })  # fmt: skip

    def _write_derived_rows(self, context: dg.OutputContext, derived: DerivedRows) -> None:
        """Each scope's rows replace its stored ones (`storage/derived_rows.py`)."""
        started = time.perf_counter()
        counts = write_derived_rows(self.mongo.get_database(), derived)
        context.add_output_metadata({
            "inserted": counts.inserted, "updated": counts.updated,
            "unchanged": counts.unchanged, "removed": counts.removed,
            "dagster/row_count": counts.rows, "collection": derived.spec.collection,
            "duration_s": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
            **(dict(derived.metadata()) if derived.metadata is not None else {}),
        })  # fmt: skip

    def load_input(self, context: dg.InputContext) -> pd.DataFrame | StoredIssueDays:
        if _input_type(context) is StoredIssueDays:
            return self._stored_issue_days(context)
        spec = spec_for_asset(context.asset_key)
        selector: dict[str, Any] = {}
        if not self.include_deleted:
            selector["is_deleted"] = {"$ne": True}
        upstream = context.upstream_output
        connection_id = declared_connection_id(
            upstream.definition_metadata if upstream is not None else None
        )
        if connection_id is not None:
            selector["connection_id"] = connection_id
        windows = _input_windows(context)
        if windows is not None and spec.version_field is not None:
            ranges = [{spec.version_field: {"$gte": start, "$lt": end}} for start, end in windows]
            selector["$or"] = ranges if ranges else [{"_id": None}]
        projection = {field: 1 for field in spec.key_fields} | {"_id": 0}
        cursor = self.mongo.get_database()[spec.collection].find(selector, projection)
        import pandas as pd

        frame = pd.DataFrame(list(cursor), columns=list(spec.key_fields))
        for column in (*spec.datetime_fields, *_STORAGE_DATETIMES):
            if column in frame:
                frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame

    def _stored_issue_days(self, context: dg.InputContext) -> StoredIssueDays:
        """What the daily summary reads: a lazy reader of the issues its partitions' days need,
        projected, a week of `updated` per query (never the whole collection at once)."""
        upstream = context.upstream_output
        connection_id = declared_connection_id(
            upstream.definition_metadata if upstream is not None else None
        )
        partitions_def = context.asset_partitions_def if context.has_asset_partitions else None
        if not isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
            return stored_issue_days(self.mongo.get_database(), connection_id, [(None, None)])
        ranges = partition_ranges(partitions_def, list(context.asset_partition_keys))
        return stored_issue_days(
            self.mongo.get_database(), connection_id, ranges, origin=partitions_def.start
        )


def _input_type(context: dg.InputContext) -> Any:
    dagster_type = getattr(context, "dagster_type", None)
    return getattr(dagster_type, "typing_type", None)


class OddRecordReport:
    """Counts and logs, naming each record's key, the key fields stored as null (Jira sent a
    value of an unexpected type) and the records sent to `jira_sync_errors`."""

    def __init__(self, context: dg.OutputContext, spec: EntitySpec) -> None:
        self._log = context.log
        self._spec = spec
        self.fields_nulled: Counter[str] = Counter()
        self._nulled_logged = 0
        self._errors_logged = 0

    def watch(self, records: Iterable[Any]) -> Iterator[Any]:
        for record in records:
            nulled = getattr(record, "nulled_fields", ())
            if nulled:
                self.fields_nulled.update(nulled)
                self._nulled_logged += 1
                if self._nulled_logged <= _LOGGED_PER_KIND and self._log is not None:
                    name = getattr(record, "key", None) or getattr(record, self._spec.id_field, "")
                    self._log.warning(
                        f"{self._spec.name} {name}: stored with {', '.join(nulled)} null: Jira "
                        "sent a value of an unexpected type (kept as sent under `raw`)"
                    )
            yield record

    def sync_error(self, error: SyncError) -> None:
        self._errors_logged += 1
        if self._errors_logged <= _LOGGED_PER_KIND and self._log is not None:
            self._log.warning(f"not stored, kept in jira_sync_errors: {error.describe()}")

    def metadata(self, counts: UpsertCounts) -> dict[str, Any]:
        if self._log is not None:
            for kind, seen in (("records with null fields", self._nulled_logged),
                               ("dead letters", self._errors_logged)):
                if seen > _LOGGED_PER_KIND:
                    self._log.warning(f"{seen} {kind} in this run; the first "
                                      f"{_LOGGED_PER_KIND} are logged above")
        return {
            "dead_lettered": counts.dead_lettered,
            "raw_truncated": counts.raw_truncated,
            "fields_nulled": dg.MetadataValue.json(dict(sorted(self.fields_nulled.items()))),
        }


def _upserted(
    stream: WriteStream, tombstones: list[Tombstone], cursors: list[FeedCursor]
) -> Generator[Any, None, None]:
    """The stream's records, in order; its tombstones (and feed cursors) are set aside for after
    the writes."""
    items = iter(stream)
    try:
        for item in items:
            if isinstance(item, Upsert):
                yield item.record
            elif isinstance(item, Tombstone):
                tombstones.append(item)
            elif isinstance(item, FeedCursor):
                cursors.append(item)
            else:
                raise TypeError(
                    f"a WriteStream holds Upsert, Tombstone and FeedCursor items, not "
                    f"{type(item).__name__}"
                )
    finally:
        # The stream's own generator is closed with this one (a stream that refers to its
        # generator is otherwise closed only by the cycle collector, its `finally` with it).
        close = getattr(items, "close", None)
        if close is not None:
            close()


def apply_tombstone(
    db: Database, spec: EntitySpec, connection_id: str | None, tombstone: Tombstone, log: Any
) -> int:
    """Mark the rows a tombstone names deleted (kept, `is_deleted: true`); how many were."""
    if tombstone.entity != spec.name:
        raise ValueError(
            f"a tombstone of {tombstone.entity} in the stream of {spec.collection}"
        )
    if connection_id is None:
        raise ValueError(
            f"a tombstone of {spec.name} needs the asset's {CONNECTION_METADATA_KEY} metadata: "
            "rows are only ever marked deleted within one connection"
        )
    if tombstone.kept is not None:
        marked = mark_deleted_except(db, spec.name, connection_id, tombstone.kept)
    else:
        marked = mark_deleted_ids(db, spec.name, connection_id, tombstone.ids)
    if marked and log is not None:
        log.info(f"marked {marked} {spec.name} deleted: Jira provably lacks them")
    return marked


def declared_connection_id(definition_metadata: Mapping[str, Any] | None) -> str | None:
    """The connection id an asset declares in its definition metadata, if any."""
    value = (definition_metadata or {}).get(CONNECTION_METADATA_KEY)
    value = getattr(value, "value", value)  # a MetadataValue or a plain string
    return str(value) if value else None


def _input_windows(context: dg.InputContext) -> list[tuple[datetime, datetime]] | None:
    """The upstream time windows this input covers, merged; None means the whole collection."""
    if not context.has_asset_partitions:
        return None
    partitions_def = context.asset_partitions_def
    if not isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return None
    keys = list(context.asset_partition_keys)
    # A non-partitioned asset reading a partitioned one is given every partition: that is the
    # whole collection, including rows from before the first partition.
    if set(keys) >= set(partitions_def.get_partition_keys()):
        return None
    windows = sorted(
        (partitions_def.time_window_for_partition_key(key) for key in keys),
        key=lambda window: window.start,
    )
    merged: list[tuple[datetime, datetime]] = []
    for window in windows:
        if merged and window.start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], window.end))
        else:
            merged.append((window.start, window.end))
    return merged
