"""What one event costs Dagster's SQLite event log, as Dagster ships it and as dagster.yaml
configures it (jira_pipeline/instance_storage.py: the engines kept open).

Each storage writes, into a fresh directory, the two kinds of event a sync run is made of:
`ASSET_MATERIALIZATION_PLANNED` (one per asset and partition before the first step; it is also
mirrored into the index file) and plain log lines (one run file only). Prints one JSON line per
storage and kind with wall and CPU milliseconds per event, then the ratio, both measured in this
run, alternating the storages so that the shared machine's noise falls on both.

    python benchmarks/event_log_bench.py [--events 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable

import dagster as dg
from dagster._core.events import AssetMaterializationPlannedData, DagsterEvent
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from jira_pipeline.instance_storage import KeptConnectionsSqliteEventLogStorage

RUN_ID = "0123456789abcdef0123456789abcdef"
STORAGES: dict[str, type[SqliteEventLogStorage]] = {
    "dagster": SqliteEventLogStorage,
    "kept_connections": KeptConnectionsSqliteEventLogStorage,
}


def planned(n: int) -> EventLogEntry:
    event = DagsterEvent.build_asset_materialization_planned_event(
        "jira_sync_job", "jira_issues",
        AssetMaterializationPlannedData(dg.AssetKey("jira_issues"),
                                        partition=f"2026-11-{n % 28 + 1:02d}"),
    )
    return EventLogEntry(error_info=None, level=10, user_message="", run_id=RUN_ID,
                         timestamp=time.time(), step_key="jira_issues",
                         job_name="jira_sync_job", dagster_event=event)


def log_line(n: int) -> EventLogEntry:
    return EventLogEntry(error_info=None, level=20, user_message=f"partition {n} done: 150 issues",
                         run_id=RUN_ID, timestamp=time.time(), step_key="jira_issues",
                         job_name="jira_sync_job", dagster_event=None)


def per_event_ms(storage_type: type[SqliteEventLogStorage], make: Callable[[int], EventLogEntry],
                 events: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="event_log_bench_") as directory:
        storage = storage_type(directory)
        storage.store_event(make(0))  # the run's file exists before the clock starts
        started, cpu = time.perf_counter(), time.process_time()
        for n in range(events):
            storage.store_event(make(n))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        stored = len(storage.get_logs_for_run(RUN_ID))
        storage.dispose()
    if stored != events + 1:
        raise SystemExit(f"event_log_bench: {storage_type.__name__} stored {stored} events")
    return wall / events * 1000, cpu / events * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300, help="events written per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (best kept)")
    args = parser.parse_args()
    for kind, make in (("planned", planned), ("log", log_line)):
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.rounds):
            for name, storage_type in STORAGES.items():
                wall, cpu = per_event_ms(storage_type, make, args.events)
                if name not in best or wall < best[name][0]:
                    best[name] = (wall, cpu)
        for name, (wall, cpu) in best.items():
            print(json.dumps({"event": kind, "storage": name, "events": args.events,
                              "wall_ms_per_event": round(wall, 2),
                              "cpu_ms_per_event": round(cpu, 2)}), flush=True)
        print(json.dumps({"event": kind, "dagster_over_kept_connections":
                          round(best["dagster"][0] / best["kept_connections"][0], 1)}), flush=True)


if __name__ == "__main__":
    main()
