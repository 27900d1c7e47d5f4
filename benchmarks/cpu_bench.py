"""CPU seconds per 1,000 issues of each stage of an issue sync, each stage measured on its own.

Starts the fake Jira (N issues over D days, no latency, no spacing: CPU dominates) in its own
subprocess, so none of its CPU is counted, then runs each stage in this process over the same
issues and measures `time.process_time()` (every thread of this process) around it:

1. `client`: `JiraClient.search_window` walks every issue (HTTP, JSON parsing, pagination),
   as in `client_bench.py`; the pages are kept for the next stages;
2. `extraction`: `IssueRecord.from_raw` of every issue;
3. `normalize`: the documents the upsert builds (`fitted_record`: model dump, storage
   normalization, content hash, size check), without writing them;
4. `upsert_insert`: the records upserted into a fresh embedded store in batches grouped by daily
   partition, as a multi-partition run writes them (`upsert_by_partition`);
5. `upsert_unchanged`: the same records upserted again (every one unchanged: a re-run);
6. `upsert_newer`: every record again with a newer `updated` (every one replaced);
7. `store_reads`: the reads of the stored issues a full sync's checks make after writing
   (`no_duplicate_keys`' pass over the live issues, `matches_jira_count`'s window of
   `updated`, a `count_documents`), over the store the previous stage filled.

Prints one JSON line per stage: stage, issues, cpu_s, cpu_s_per_1000, wall_s (and, for the
client, api_calls and mb_received); then one line `split` with each stage's share of the sum of
the client, extraction and insert stages (what a full sync does per issue besides Dagster's own
work). `--repeat R` runs stages 2-6 R times and reports the minimum, since the machine is noisy.
`--profile STAGE` runs that stage under cProfile and prints its top functions (by own time) to
stderr: the stage's figures then include the profiler's cost.

    python benchmarks/cpu_bench.py [--issues 5000] [--days 30] [--repeat 3]
        [--profile upsert_insert]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from jira_pipeline.assets.checks import duplicate_values
from jira_pipeline.jira import BasicAuth, IssueWindow, JiraClient, RateLimiter, RetryPolicy
from jira_pipeline.jira.models import IssueRecord
from jira_pipeline.storage.client import get_mongo_client
from jira_pipeline.storage.entities import ISSUES
from jira_pipeline.storage.indexes import ensure_indexes
from jira_pipeline.storage.partitioned_writes import upsert_by_partition
from jira_pipeline.storage.upserts import DEFAULT_BATCH_SIZE, fitted_record
from jira_pipeline.timeutil import format_jira_datetime

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
EMAIL, TOKEN = "bench@example.com", "bench-token"
CONNECTION_ID = "cpu-bench"
# The fields and expansion the issues asset asks for (jira_pipeline/assets/issues.py).
FIELDS, EXPAND = ("*all",), ("changelog",)
STAGES = ("client", "extraction", "normalize", "upsert_insert", "upsert_unchanged",
          "upsert_newer", "store_reads")


def start_fake(args: argparse.Namespace) -> tuple[subprocess.Popen[str], str]:
    command = [
        sys.executable, "-m", "jira_pipeline.cli", "fake-jira", "--port", "0",
        "--issues", str(args.issues), "--days", str(args.days), "--seed", "1",
        "--latency-ms", "0", "--now", NOW.isoformat(), "--email", EMAIL, "--api-token", TOKEN,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stdout is not None
    for line in process.stdout:
        if "JIRA_BASE_URL=" in line:
            return process, line.split("JIRA_BASE_URL=", 1)[1].strip()
    process.kill()
    raise SystemExit("cpu_bench: the fake Jira did not start")


@contextmanager
def profiled(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    profile = cProfile.Profile(time.process_time)  # CPU, not wall: the machine is shared
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        stats = pstats.Stats(profile, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(30)


def measured(stage: str, issues: int, run: Callable[[], Any], *, profile: str | None,
             repeat: int = 1, prepare: Callable[[], Any] | None = None) -> dict[str, Any]:
    """The stage's line: the least CPU of `repeat` runs (`prepare` runs untimed before each)."""
    best_cpu = best_wall = float("inf")
    for _ in range(repeat):
        if prepare is not None:
            prepare()
        # The benchmark holds every issue (a sync holds a page and a batch): keep the collector
        # from walking them again and again, so a stage pays for its own garbage only.
        gc.collect()
        gc.freeze()
        with profiled(profile == stage):
            cpu, wall = time.process_time(), time.perf_counter()
            run()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        best_cpu, best_wall = min(best_cpu, cpu), min(best_wall, wall)
    return {"stage": stage, "issues": issues, "cpu_s": round(best_cpu, 3),
            "cpu_s_per_1000": round(1000 * best_cpu / max(issues, 1), 3),
            "wall_s": round(best_wall, 3)}


async def walk(base_url: str, days: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    window = IssueWindow(NOW - timedelta(days=days + 1), NOW + timedelta(days=1))
    async with JiraClient(BasicAuth(EMAIL, TOKEN), base_url, limiter=RateLimiter(0.0, 4),
                          retry=RetryPolicy()) as client:
        issues = [issue async for issue in client.search_window(window, fields=FIELDS,
                                                                expand=EXPAND)]
        counters = client.counters
    return issues, {"api_calls": counters.api_calls,
                    "mb_received": round(counters.bytes_received / 1e6, 1)}


def daily_partition(record: Any) -> str:
    return record.updated.date().isoformat()


def newer(raw: dict[str, Any], by: timedelta) -> dict[str, Any]:
    """`raw` with its `updated` moved `by` later (a copy; the fields are shallow-copied)."""
    fields = dict(raw["fields"])
    moved = datetime.fromisoformat(fields["updated"]) + by
    fields["updated"] = format_jira_datetime(moved)
    return {**raw, "fields": fields}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=5000, help="N, issues in the fake")
    parser.add_argument("--days", type=int, default=30, help="D, days the issues spread over")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each stage after the client's (the least CPU is printed)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--profile", choices=STAGES, help="cProfile this stage (to stderr)")
    args = parser.parse_args()

    process, base_url = start_fake(args)
    try:
        raws: list[dict[str, Any]] = []
        client_figures: dict[str, Any] = {}

        def fetch() -> None:
            found, figures = asyncio.run(walk(base_url, args.days))
            raws[:] = found
            client_figures.update(figures)

        line = measured("client", args.issues, fetch, profile=args.profile)
        line["issues"] = len(raws)
        line["cpu_s_per_1000"] = round(1000 * line["cpu_s"] / max(len(raws), 1), 3)
        print(json.dumps({**line, **client_figures}), flush=True)
    finally:
        process.terminate()
        process.wait(timeout=30)
    n = len(raws)
    lines = {"client": line}

    records: list[IssueRecord] = []

    def extract() -> None:
        records[:] = [IssueRecord.from_raw(raw, CONNECTION_ID) for raw in raws]

    lines["extraction"] = measured("extraction", n, extract, profile=args.profile,
                                   repeat=args.repeat)
    print(json.dumps(lines["extraction"]), flush=True)

    def normalize() -> None:
        for record in records:
            fitted_record(ISSUES, record)

    lines["normalize"] = measured("normalize", n, normalize, profile=args.profile,
                                  repeat=args.repeat)
    print(json.dumps(lines["normalize"]), flush=True)

    later = [IssueRecord.from_raw(newer(raw, timedelta(minutes=1)), CONNECTION_ID)
             for raw in raws]
    with tempfile.TemporaryDirectory(prefix="cpu_bench_") as scratch:
        stores = iter(range(10**6))
        db: Any = None

        def fresh_store() -> None:
            nonlocal db
            db = get_mongo_client(folder=f"{scratch}/store{next(stores)}").get_database("jira")
            ensure_indexes(db)

        def upsert(batch: list[IssueRecord]) -> Callable[[], None]:
            keys = sorted({daily_partition(record) for record in batch})

            def run() -> None:
                counts = upsert_by_partition(db, ISSUES, batch, daily_partition, keys,
                                             batch_size=args.batch_size)
                assert sum(c.total for c in counts.values()) == n, counts

            return run

        def fresh_store_filled() -> None:
            fresh_store()
            upsert(records)()

        for stage, batch, prepare in (
            ("upsert_insert", records, fresh_store),
            ("upsert_unchanged", records, fresh_store_filled),
            ("upsert_newer", later, fresh_store_filled),
        ):
            lines[stage] = measured(stage, n, upsert(batch), profile=args.profile,
                                    repeat=args.repeat, prepare=prepare)
            print(json.dumps(lines[stage]), flush=True)

        def reads() -> None:
            live = {"connection_id": CONNECTION_ID, "is_deleted": {"$ne": True}}
            duplicate_values(db, ISSUES.collection, CONNECTION_ID, ("issue_id", "key"))
            window = {**live, "updated": {"$gte": NOW - timedelta(days=args.days + 2),
                                          "$lt": NOW + timedelta(days=2)}}
            found = sum(1 for _ in db[ISSUES.collection].find(
                window, {"issue_id": 1, "updated": 1, "_id": 0}))
            assert found == n, found
            assert db[ISSUES.collection].count_documents(live) == n

        lines["store_reads"] = measured("store_reads", n, reads, profile=args.profile,
                                        repeat=args.repeat)
        print(json.dumps(lines["store_reads"]), flush=True)

    parts = ("client", "extraction", "upsert_insert")
    total = sum(lines[stage]["cpu_s"] for stage in parts)
    print(json.dumps({"stage": "split", "issues": n, "cpu_s": round(total, 3),
                      **{f"{stage}_pct": round(100 * lines[stage]["cpu_s"] / total, 1)
                         for stage in parts},
                      "ours_over_client": round(
                          (total - lines["client"]["cpu_s"]) / lines["client"]["cpu_s"], 2)}),
          flush=True)


if __name__ == "__main__":
    main()
