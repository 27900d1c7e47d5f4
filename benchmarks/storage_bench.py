"""Upsert throughput and peak memory of the embedded store for issue-sized records.

Prints one JSON object per size: {"n", "first_upserts_per_s", "reupserts_per_s", "peak_rss_mb"}.
Then, for the Mongo IO manager run through Dagster (a lazy stream of issue records written
batch by batch), one object per size: {"benchmark": "io_manager", "records", "batch",
"data_mb", "rss_before_mb", "peak_rss_mb", "peak_growth_mb", "rss_after_last_write_mb"}.
`data_mb` is what the records would occupy if anything held on to them all; a bounded writer's
growth stays a small fraction of it, and flat as the record count grows. RSS (not tracemalloc)
because SQLite's own allocations are memory too. Each size runs in a fresh process on a fresh
store, so its peak memory is its own.

    python benchmarks/storage_bench.py                 # 5,000 and 50,000 of each
    python benchmarks/storage_bench.py --sizes 50000 --profile /tmp/upserts.prof
    python benchmarks/storage_bench.py --sizes --io-manager-sizes 10000 50000
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import itertools
import json
import multiprocessing
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from queue import Empty
from typing import Any

import bson
import dagster as dg
import psutil

from jira_pipeline.storage.client import get_mongo_client
from jira_pipeline.storage.indexes import ensure_indexes
from jira_pipeline.storage.io_manager import MongoUpsertIOManager, RecordStream
from jira_pipeline.storage.resources import MongoResource
from jira_pipeline.storage.upserts import upsert_records
from jira_pipeline.timeutil import format_jira_datetime

RAW_TARGET_BYTES = 5_000
START = datetime(2025, 1, 1, tzinfo=UTC)


def issue_records(n: int, *, revision: int = 0) -> Iterator[dict]:
    """`n` issue records with about 5 KB of raw JSON each, produced lazily."""
    filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. "
    for i in range(n):
        updated = START + timedelta(minutes=i, seconds=revision)
        key = f"BENCH-{i + 1}"
        raw: dict[str, Any] = {
            "id": str(10_000 + i),
            "key": key,
            "fields": {
                "summary": f"Issue {i} {filler[:40]}",
                "description": {"type": "doc", "content": [{"type": "text", "text": filler * 60}]},
                "updated": format_jira_datetime(updated),
                "created": format_jira_datetime(START),
                "labels": ["bench", f"l{i % 7}"],
                "comment": {"comments": [{"body": filler * 20, "id": str(j)} for j in range(3)]},
            },
        }
        yield {
            "connection_id": "bench",
            "issue_id": str(10_000 + i),
            "key": key,
            "project_id": str(i % 5),
            "project_key": f"P{i % 5}",
            "summary": raw["fields"]["summary"],
            "issue_type": "Task",
            "status_id": str(i % 4),
            "status_name": "To Do",
            "status_category": "new",
            "priority": "Medium",
            "assignee_account_id": f"user-{i % 50}",
            "reporter_account_id": f"user-{(i + 1) % 50}",
            "labels": raw["fields"]["labels"],
            "created": START,
            "updated": updated,
            "resolution_date": None,
            "parent_key": None,
            "raw": raw,
        }


class PeakRss:
    """Samples this process's resident memory in the background and keeps the maximum."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self._process = psutil.Process()
        self._interval = interval_s
        self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def measure(n: int, profile_path: str | None, queue: multiprocessing.Queue) -> None:
    with tempfile.TemporaryDirectory() as folder, PeakRss() as rss:
        db = get_mongo_client(None, folder=folder).get_database("bench")
        ensure_indexes(db)
        profiler = cProfile.Profile() if profile_path else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        first = upsert_records(db, "issues", issue_records(n))
        if profiler and profile_path:
            profiler.disable()
            profiler.dump_stats(profile_path)
        first_s = time.perf_counter() - started
        started = time.perf_counter()
        again = upsert_records(db, "issues", issue_records(n))
        again_s = time.perf_counter() - started
    assert first.inserted == n and again.unchanged == n, (first, again)
    queue.put(
        {
            "n": n,
            "first_upserts_per_s": round(n / first_s, 1),
            "reupserts_per_s": round(n / again_s, 1),
            "peak_rss_mb": round(rss.peak / 2**20, 1),
        }
    )


def measure_io_manager(n: int, batch: int, queue: multiprocessing.Queue) -> None:
    """The IO manager writing `n` records through `dg.materialize`, with RSS sampled throughout."""
    sample = list(itertools.islice(issue_records(batch), batch))
    data_bytes = sum(len(bson.encode(record)) for record in sample) / batch * n
    del sample
    rss_after_last_write: list[int] = []

    def after_last_write() -> dict:
        # The hook the IO manager calls after its last write, before the resource closes:
        # whatever the store keeps per document is still held here.
        rss_after_last_write.append(psutil.Process().memory_info().rss)
        return {}

    @dg.asset
    def jira_issues() -> RecordStream:
        return RecordStream(issue_records(n), final_metadata=after_last_write)

    with tempfile.TemporaryDirectory() as folder:
        io_manager = MongoUpsertIOManager(mongo=MongoResource(folder=folder), batch_size=batch)
        gc.collect()
        before = psutil.Process().memory_info().rss
        with PeakRss() as rss:
            result = dg.materialize([jira_issues], resources={"io_manager": io_manager})
        [event] = result.asset_materializations_for_node("jira_issues")
        inserted = event.metadata["inserted"].value
    assert inserted == n, (inserted, n)  # a benchmark of a broken run would mean nothing
    mb = 2**20
    queue.put(
        {
            "benchmark": "io_manager",
            "records": n,
            "batch": batch,
            "data_mb": round(data_bytes / mb, 1),
            "rss_before_mb": round(before / mb, 1),
            "peak_rss_mb": round(rss.peak / mb, 1),
            "peak_growth_mb": round((rss.peak - before) / mb, 1),
            "rss_after_last_write_mb": round(rss_after_last_write[0] / mb, 1),
        }
    )


def _in_fresh_process(target: Callable[..., None], *args: Any) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    worker = context.Process(target=target, args=(*args, queue))
    worker.start()
    while True:
        try:
            result = queue.get(timeout=1)
            break
        except Empty:
            if not worker.is_alive():
                failed = f"{target.__name__}{args} failed (exit code {worker.exitcode})"
                raise SystemExit(failed) from None
    worker.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[5_000, 50_000])
    parser.add_argument("--profile", help="write a cProfile of the first load (largest size) here")
    parser.add_argument("--io-manager-sizes", type=int, nargs="*", default=[5_000, 50_000])
    parser.add_argument("--batch", type=int, default=1_000, help="the IO manager's batch size")
    args = parser.parse_args()
    for n in args.sizes:
        profile = args.profile if args.profile and n == max(args.sizes) else None
        print(json.dumps(_in_fresh_process(measure, n, profile)), flush=True)
    for n in args.io_manager_sizes:
        print(json.dumps(_in_fresh_process(measure_io_manager, n, args.batch)), flush=True)


if __name__ == "__main__":
    main()
