"""Upsert throughput and peak memory of the embedded store for issue-sized records.

Prints one JSON object per size: {"n", "first_upserts_per_s", "reupserts_per_s", "peak_rss_mb"}.
Each size runs in a fresh process on a fresh store, so its peak memory is its own.

    python benchmarks/storage_bench.py                 # 5,000 and 50,000
    python benchmarks/storage_bench.py --sizes 50000 --profile /tmp/upserts.prof
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psutil

from jira_pipeline.storage.client import get_mongo_client
from jira_pipeline.storage.indexes import ensure_indexes
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
        raw = {
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
        if profiler:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5_000, 50_000])
    parser.add_argument("--profile", help="write a cProfile of the first load (largest size) here")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    for n in args.sizes:
        queue = context.Queue()
        profile = args.profile if args.profile and n == max(args.sizes) else None
        worker = context.Process(target=measure, args=(n, profile, queue))
        worker.start()
        result = queue.get()
        worker.join()
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
