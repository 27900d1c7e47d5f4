"""Time a full Dagster backfill of a fake Jira into a fresh store, then a delta of touched issues.

Starts the fake Jira (N issues over D days, latency L ms, optional rate limit) in its own
subprocess through `jira-pipeline fake-jira`, so the fake's memory is not part of the measured
process tree. Builds the code location from the environment (as `dagster dev` would) with a
fresh DAGSTER_HOME, and runs through Dagster's own execution:

1. backfill: `jira_projects`, `jira_statuses`, `jira_users` and every `jira_issues` partition in
   one run (a single-run backfill over the partition range);
2. delta: touches M issues through the fake's admin API, then runs today's `jira_issues`
   partition, as the refresh sensor requests it (no census: only the daily schedule's run takes
   it, see reconcile_bench.py);
3. checks (with --checks): the asset checks over the backfilled range, timed on their own so
   their Jira id walks never count towards the sync figures.

Prints one JSON object per line, one per phase: phase, issues, wall_s, issues_per_s, api_calls,
search_calls, calls_per_100_issues, retries, rate_limit_waits, peak_rss_mb (this process and its
children, the fake excluded, sampled every 50 ms), store; plus a few inputs and targets. The API
figures come from the materializations' metadata, as the assets report them.

    python benchmarks/sync_bench.py [--issues 20000] [--days 90] [--latency-ms 100]
        [--touched 100] [--rate-limit 0] [--min-interval-ms 200] [--mongodb-uri URI] [--checks]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import multiprocessing
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import psutil

REPO = Path(__file__).resolve().parent.parent
EMAIL, TOKEN = "bench@example.com", "bench-token"
ISSUES_KEY = "jira_issues"
DIMENSIONS = ("jira_projects", "jira_statuses", "jira_users")
# Client figures summed over the run's assets (each reports its own share of the shared client).
COUNTERS = ("api_calls", "search_calls", "retries", "rate_limit_waits")
# Settings of another site that would mix into the benchmark's if left in the environment.
FOREIGN_VARIABLES = ("JIRA_PAT", "JIRA_OAUTH_CLIENT_ID", "JIRA_OAUTH_CLIENT_SECRET",
                     "JIRA_CLOUD_ID", "JIRA_PROJECTS", "JIRA_LOOKBACK_MINUTES")


class PeakMemory:
    """Peak resident memory of this process and its descendants, minus the excluded processes
    (the fake Jira) and theirs, sampled in a background thread.

    Listing descendants scans all of /proc, so the list is refreshed once a second and only the
    cheap per-process RSS reads run at every sample (a profile showed the scan itself eating a
    fifth of a core at 50 samples/s).
    """

    def __init__(self, exclude: set[int], interval_s: float = 0.05, relist_s: float = 1.0) -> None:
        self._me = psutil.Process()
        self._exclude = exclude
        self._interval = interval_s
        self._relist = relist_s
        self._tree: list[psutil.Process] = []
        self._listed_at = -math.inf
        self._peak = 0
        self._generation = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _measured(self) -> list[psutil.Process]:
        if time.monotonic() - self._listed_at >= self._relist:
            excluded = set(self._exclude)
            for pid in self._exclude:
                try:
                    excluded |= {c.pid for c in psutil.Process(pid).children(recursive=True)}
                except psutil.Error:
                    pass
            children = self._me.children(recursive=True)
            self._tree = [self._me, *(c for c in children if c.pid not in excluded)]
            self._listed_at = time.monotonic()
        return self._tree

    def _tree_rss(self) -> int:
        total = 0
        for process in self._measured():
            try:
                total += process.memory_info().rss
            except psutil.Error:
                pass  # a child that ended since the last listing
        return total

    def _sample(self) -> None:
        while not self._stop.is_set():
            # A sample begun before a reset (a child of the previous phase still alive) must not
            # land after it: it is kept only if no reset happened while it was taken.
            generation = self._generation
            rss = self._tree_rss()
            with self._lock:
                if generation == self._generation:
                    self._peak = max(self._peak, rss)
            self._stop.wait(self._interval)

    def reset(self) -> None:
        with self._lock:
            self._generation += 1
            self._listed_at = -math.inf
            self._peak = 0

    @property
    def peak_mb(self) -> float:
        self._peak = max(self._peak, self._tree_rss())
        return round(self._peak / 2**20, 1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def drain(stream: IO[str]) -> None:
    for _line in stream:
        pass


@contextmanager
def fake_jira(args: argparse.Namespace, now: datetime) -> Iterator[tuple[subprocess.Popen, str]]:
    command = [
        sys.executable, "-m", "jira_pipeline.cli", "fake-jira", "--port", "0",
        "--issues", str(args.issues), "--days", str(args.days), "--seed", "1",
        "--latency-ms", str(args.latency_ms), "--rate-limit", str(args.rate_limit),
        "--now", now.isoformat(), "--email", EMAIL, "--api-token", TOKEN,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "JIRA_BASE_URL=" in line:
                base_url = line.split("JIRA_BASE_URL=", 1)[1].strip()
                break
        else:
            raise SystemExit("sync_bench: the fake Jira did not start")
        # Keep draining its stdout (access log lines) so a full pipe never blocks the server.
        threading.Thread(target=drain, args=(process.stdout,), daemon=True).start()
        yield process, base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def point_environment(args: argparse.Namespace, base_url: str, home: Path, now: datetime) -> str:
    """Environment for the code location; returns how the store is named in the output."""
    for name in FOREIGN_VARIABLES:
        os.environ.pop(name, None)
    home.mkdir(parents=True)
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    # A day before the oldest seeded issue, so every issue lies in some partition.
    start = (now - timedelta(days=args.days + 1)).date()
    os.environ.update({
        "DAGSTER_HOME": str(home),
        "JIRA_BASE_URL": base_url,
        "JIRA_EMAIL": EMAIL,
        "JIRA_API_TOKEN": TOKEN,
        "JIRA_SYNC_START_DATE": start.isoformat(),
        "JIRA_MIN_REQUEST_INTERVAL_MS": str(args.min_interval_ms),
    })
    if args.mongodb_uri:
        from jira_pipeline.storage.client import mask_uri

        os.environ["MONGODB_URI"] = args.mongodb_uri
        # A database of its own, dropped afterwards: the benchmark never touches real data.
        os.environ["MONGODB_DATABASE"] = f"jira_sync_bench_{os.getpid()}"
        return f"mongodb {mask_uri(args.mongodb_uri)}"
    os.environ.pop("MONGODB_URI", None)
    os.environ.pop("MONGODB_DATABASE", None)
    return "embedded"


@contextmanager
def profiled(enabled: bool) -> Iterator[None]:
    """cProfile the block (main thread only) and print its top functions to stderr."""
    if not enabled:
        yield
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(40)


def run_metadata(result: Any, asset_names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Each asset's materialization metadata. A single-run backfill attaches the run's API
    counters to every partition's event, and each partition's own record counts: the counters
    come from one event, the records fetched are summed over the partitions."""
    figures: dict[str, dict[str, Any]] = {}
    for name in asset_names:
        events = result.asset_materializations_for_node(name)
        if events:
            figures[name] = {k: getattr(v, "value", v) for k, v in events[0].metadata.items()}
            figures[name]["records_fetched"] = sum(
                int(getattr(event.metadata.get("records_fetched"), "value", 0) or 0)
                for event in events
            )
    return figures


def phase_line(phase: str, result: Any, asset_names: tuple[str, ...], wall_s: float,
               memory: PeakMemory, store: str, **extra: Any) -> dict[str, Any]:
    figures = run_metadata(result, asset_names)
    totals = {name: sum(int(f.get(name, 0)) for f in figures.values()) for name in COUNTERS}
    issues = int(figures.get(ISSUES_KEY, {}).get("records_fetched", 0))
    return {
        "phase": phase,
        "issues": issues,
        "wall_s": round(wall_s, 2),
        "issues_per_s": round(issues / wall_s, 1),
        **totals,
        "calls_per_100_issues": round(100 * totals["api_calls"] / max(issues, 1), 2),
        "peak_rss_mb": memory.peak_mb,
        "store": store,
        "success": result.success,
        **extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=20_000, help="N, issues in the fake")
    parser.add_argument("--days", type=int, default=90, help="D, days the issues spread over")
    parser.add_argument("--latency-ms", type=float, default=100, help="L, the fake's latency")
    parser.add_argument("--touched", type=int, default=100, help="M, issues touched for the delta")
    parser.add_argument("--rate-limit", type=float, default=0.0,
                        help="the fake's requests/s per credential (0 = unlimited)")
    parser.add_argument("--min-interval-ms", type=int, default=200,
                        help="JIRA_MIN_REQUEST_INTERVAL_MS, the client's request spacing")
    parser.add_argument("--mongodb-uri", default=os.environ.get("MONGODB_URI"),
                        help="a real server (default: MONGODB_URI; unset = embedded store)")
    parser.add_argument("--checks", action="store_true",
                        help="also time the asset checks over the backfilled range (own line)")
    parser.add_argument("--profile", choices=("backfill", "backfill_checks", "delta"),
                        help="run that phase under cProfile; the main thread's top functions "
                        "go to stderr (the figures of that phase include the profiler's cost)")
    args = parser.parse_args()
    # A terminated benchmark still stops its fake Jira (the `finally` below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    now = datetime.now(UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory(prefix="sync_bench_") as scratch, \
            fake_jira(args, now) as (fake_process, base_url):
        store = point_environment(args, base_url, Path(scratch) / "dagster_home", now)
        memory = PeakMemory(exclude={fake_process.pid})
        try:
            for line in run_phases(args, base_url, memory, store):
                print(json.dumps(line), flush=True)
        finally:
            memory.stop()


def touch_issues(base_url: str, touched: int) -> None:
    """Touch `touched` issues spread evenly over the fake's issues (they move to today)."""
    from jira_pipeline.fakejira import FakeJiraAdmin

    with FakeJiraAdmin(base_url) as admin:
        stored = admin.issues()
        step = max(len(stored) // max(touched, 1), 1)
        for issue in stored[::step][:touched]:
            admin.touch_issue(issue["key"])


def run_phases(args: argparse.Namespace, base_url: str, memory: PeakMemory,
               store: str) -> Iterator[dict[str, Any]]:
    import dagster as dg

    from jira_pipeline.assets.factory import build_definitions
    from jira_pipeline.assets.partitions import partition_key_for
    from jira_pipeline.assets.schedules import partition_range_tags
    from jira_pipeline.storage.resources import MongoResource

    defs = build_definitions()
    partitions = defs.resolve_assets_def(ISSUES_KEY).partitions_def
    assert isinstance(partitions, dg.DailyPartitionsDefinition)
    keys = partitions.get_partition_keys()
    today = partition_key_for(partitions, datetime.now(UTC))
    assets = dg.AssetSelection.assets(*DIMENSIONS, ISSUES_KEY)
    # The sync jobs include the assets' checks; the figures here are the materializations'.
    bench = dg.Definitions.merge(defs, dg.Definitions(jobs=[
        # Partitioning is inferred from the selected assets and checks.
        dg.define_asset_job("bench_backfill", assets.without_checks()),
        dg.define_asset_job("bench_delta", dg.AssetSelection.assets(ISSUES_KEY).without_checks()),
        dg.define_asset_job("bench_checks", dg.AssetSelection.checks_for_assets(
            *DIMENSIONS, ISSUES_KEY)),
    ]))
    search_target = math.floor(1.02 * math.ceil(args.issues / 100)) + len(keys)
    common = {"partitions": len(keys), "latency_ms": args.latency_ms,
              "min_request_interval_ms": args.min_interval_ms, "rate_limit": args.rate_limit,
              "fake_jira_memory": "not measured (own process)"}

    with dg.DagsterInstance.get() as instance:
        memory.reset()
        started = time.perf_counter()
        with profiled(args.profile == "backfill"):
            result = bench.resolve_job_def("bench_backfill").execute_in_process(
                instance=instance, tags=partition_range_tags(keys[0], keys[-1]),
                raise_on_error=False,
            )
        wall = time.perf_counter() - started
        yield phase_line("backfill", result, (*DIMENSIONS, ISSUES_KEY), wall, memory, store,
                         search_calls_target=search_target, **common)

        if args.checks:
            memory.reset()
            started = time.perf_counter()
            with profiled(args.profile == "backfill_checks"):
                result = bench.resolve_job_def("bench_checks").execute_in_process(
                    instance=instance, tags=partition_range_tags(keys[0], keys[-1]),
                    raise_on_error=False,
                )
            evaluations = result.get_asset_check_evaluations()
            yield {"phase": "backfill_checks", "wall_s": round(time.perf_counter() - started, 2),
                   "evaluations": len(evaluations),
                   "failed": sum(not e.passed for e in evaluations),
                   "peak_rss_mb": memory.peak_mb, "store": store, "success": result.success}

        # In a child process that has ended before the delta starts: the fake's issue list
        # (about 1 KB per issue) would otherwise sit in this process during the delta.
        toucher = multiprocessing.get_context("spawn").Process(
            target=touch_issues, args=(base_url, args.touched)
        )
        toucher.start()
        toucher.join()
        if toucher.exitcode != 0:
            raise SystemExit("sync_bench: touching issues in the fake Jira failed")
        memory.reset()
        started = time.perf_counter()
        with profiled(args.profile == "delta"):
            result = bench.resolve_job_def("bench_delta").execute_in_process(
                instance=instance, partition_key=today, raise_on_error=False
            )
        wall = time.perf_counter() - started
        yield phase_line("delta", result, (ISSUES_KEY,), wall, memory, store,
                         touched=args.touched, **common)

    if args.mongodb_uri:
        mongo = MongoResource()
        mongo.get_database().client.drop_database(mongo.database_name())


if __name__ == "__main__":
    main()
