"""Upserts counted per partition, so each partition of a multi-partition run reports its own."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import dagster as dg
from pydantic import BaseModel
from pymongo.database import Database

from jira_pipeline.storage.entities import EntitySpec
from jira_pipeline.storage.sync_errors import SyncError, SyncErrorLog
from jira_pipeline.storage.upserts import UpsertCounts, write_batch
from jira_pipeline.timeutil import parse_jira_datetime

# Batches of records held before they are written: the memory bound, as for an ungrouped write.
# A batch mixes partitions (a walk by id interleaves days) and each record's outcome is counted
# for its own partition: batches grouped by partition were about 8 issues each over 33 days
# (a fixed cost per bulk write: the read, the transaction and its commit).
HELD_BATCHES = 1

PartitionOf = Callable[[Mapping[str, Any] | BaseModel], str]


def write_per_partition(
    context: dg.OutputContext,
    db: Database,
    spec: EntitySpec,
    records: Iterable[Mapping[str, Any] | BaseModel],
    *,
    batch_size: int,
    connection_id: str | None = None,
    on_sync_error: Callable[[SyncError], None] | None = None,
) -> UpsertCounts | None:
    """Upsert `records` and give each partition of the step its own figures; None (nothing
    written) unless the step covers several time partitions of a versioned entity.

    Dagster gives every partition of a multi-partition step the output's metadata, so without
    this each partition of a single-run backfill shows the whole run's row count. Partition-
    scoped asset metadata (what `context.add_asset_metadata(..., partition_key=...)` sets in an
    asset) overrides it per partition.
    """
    partition_of = _partition_of(context, spec)
    if partition_of is None:
        return None
    keys = list(context.asset_partition_keys)
    errors = SyncErrorLog(db, spec.name, connection_id=connection_id, on_error=on_sync_error)
    by_partition = upsert_by_partition(
        db, spec, records, partition_of, keys, batch_size=batch_size, errors=errors
    )
    for key, counts in by_partition.items():
        context.step_context.add_asset_metadata(
            partition_figures(counts), asset_key=context.asset_key, partition_key=key
        )
    log_partitions_done(context.log, spec, by_partition)
    return sum(by_partition.values(), UpsertCounts())


def log_partitions_done(
    log: Any, spec: EntitySpec, by_partition: Mapping[str, UpsertCounts]
) -> None:
    """One line per partition of a multi-partition step, in partition order, once its records
    are all written: "partition 2026-11-03 done: 812 issues (5 of 30 partitions)". A walk by id
    interleaves days, so a partition is known complete only when the walk has ended."""
    if log is None:
        return
    keys = sorted(by_partition)
    for number, key in enumerate(keys, 1):
        log.info(
            f"partition {key} done: {by_partition[key].total:,} {spec.name} "
            f"({number} of {len(keys)} partitions)"
        )


def partition_figures(counts: UpsertCounts) -> dict[str, Any]:
    return {
        "records_fetched": counts.total,
        "inserted": counts.inserted,
        "updated": counts.updated,
        "unchanged": counts.unchanged,
        "skipped_stale": counts.skipped_stale,
        "dagster/row_count": counts.total,
    }


def upsert_by_partition(
    db: Database,
    spec: EntitySpec,
    records: Iterable[Mapping[str, Any] | BaseModel],
    partition_of: PartitionOf,
    keys: list[str],
    *,
    batch_size: int,
    errors: SyncErrorLog | None = None,
) -> dict[str, UpsertCounts]:
    """Write `records` in batches of `batch_size`; counts by partition (every key listed).

    Records arrive in any order (a walk interleaves days): a batch holds whatever came, and
    what happened to each record (inserted, updated, ...) is counted for its partition. One
    batch is held at a time (HELD_BATCHES).
    """
    collection = db[spec.collection]
    if errors is None:
        errors = SyncErrorLog(db, spec.name)
    counts = {key: UpsertCounts() for key in keys}
    batch: list[Mapping[str, Any] | BaseModel] = []
    partitions: list[str] = []

    def write() -> None:
        outcomes: list[UpsertCounts] = []
        write_batch(collection, spec, batch, errors, per_record=outcomes)
        for key, outcome in zip(partitions, outcomes, strict=True):
            total = counts.get(key)
            if total is None:
                total = counts[key] = UpsertCounts()
            total.add(outcome)
        batch.clear()
        partitions.clear()

    for record in records:
        batch.append(record)
        partitions.append(partition_of(record))
        if len(batch) >= batch_size * HELD_BATCHES:
            write()
    if batch:
        write()
    return counts


def _partition_of(context: dg.OutputContext, spec: EntitySpec) -> PartitionOf | None:
    if spec.version_field is None or not context.has_asset_partitions:
        return None
    partitions_def = context.asset_partitions_def
    keys = list(context.asset_partition_keys)
    if len(keys) < 2 or not isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return None
    windows = sorted(
        (partitions_def.time_window_for_partition_key(key).start, key) for key in keys
    )
    starts = [start for start, _ in windows]
    field = spec.version_field

    def partition_of(record: Mapping[str, Any] | BaseModel) -> str:
        raw = record.get(field) if isinstance(record, Mapping) else getattr(record, field, None)
        moment: datetime | None = parse_jira_datetime(raw) if raw is not None else None
        if moment is None:
            return windows[-1][1]
        # A record of the lookback overlap (just before the first day) counts for the first.
        return windows[max(0, bisect_right(starts, moment) - 1)][1]

    return partition_of
