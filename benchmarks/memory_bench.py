"""Peak resident memory of a run's process tree, stage by stage, against a fake Jira of N issues.

The fake Jira (`jira-pipeline fake-jira`, N issues over D days) runs in its own process and is
not measured. The run is a child process of its own, as a run worker is, with a fresh
DAGSTER_HOME and embedded store (or --mongodb-uri); it goes through these stages in order and
reports each one's memory:

1. `imports`: `import dagster` and the package's modules the code location needs;
2. `definitions`: the code location built from the environment (`build_definitions()`);
   `instance`: the Dagster instance of DAGSTER_HOME opened (its SQLite storages);
3. `full`: the sync job (dimensions, every `jira_issues` partition, the summary, with the
   checks the job includes) in one in-process run, as a user backfills;
4. `delta`: after M issues are touched through the fake's admin API (by this parent process),
   today's `jira_issues` partition through the issues job, as the refresh sensor launches it.

Prints one JSON line per stage: `stage`, `issues` (N), `peak_rss_mb` (the run process and its
descendants during that stage, sampled every 20 ms), `max_rss_mb` (the process's exact
high-water mark so far, `ru_maxrss`), `rss_after_mb`, `wall_s`, `success` for the runs, and the
inputs. With `--trace`, the run process turns tracemalloc on before the first run and prints
to stderr the top allocation sites live at the sampled peak of each run (the figures then
include the tracer's own overhead); `--timeline FILE` writes every sample (`t_s`, `stage`,
`rss_mb`) as CSV.

    python benchmarks/memory_bench.py [--issues 5000] [--days 30] [--touched 100]
        [--latency-ms 0] [--min-interval-ms 0] [--trace] [--timeline FILE] [--mongodb-uri URI]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_meter import started_fake_jira

REPO = Path(__file__).resolve().parent.parent
EMAIL, TOKEN = "bench@example.com", "bench-token"
# Settings of another site that would mix into the benchmark's if left in the environment.
FOREIGN_VARIABLES = ("JIRA_PAT", "JIRA_OAUTH_CLIENT_ID", "JIRA_OAUTH_CLIENT_SECRET",
                     "JIRA_CLOUD_ID", "JIRA_PROJECTS", "JIRA_LOOKBACK_MINUTES", "MONGODB_URI",
                     "MONGODB_DATABASE")
TRACE_TOP = 25


def mb(nbytes: float) -> float:
    return round(nbytes / 2**20, 1)


class StageMemory:
    """RSS of this process and its descendants sampled in a thread; peaks kept per stage.

    With tracing on, a tracemalloc snapshot is taken whenever the stage's peak grows by 8 MB
    (at most one every 2 s), so the allocation sites reported are those live near the peak.
    """

    def __init__(self, interval_s: float = 0.02, trace: bool = False) -> None:
        self._me = psutil.Process()
        self._interval = interval_s
        self._trace = trace
        self._stage = "start"
        self._peak = 0
        self._peak_children: list[tuple[str, int]] = []
        self._snapshot: tracemalloc.Snapshot | None = None
        self._snapshot_peak = 0
        self._snapshot_at = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = time.monotonic()
        self.samples: list[tuple[float, str, int]] = []
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _tree(self) -> list[tuple[str, int]]:
        """(name, RSS) of this process and each descendant."""
        tree = []
        for process in (self._me, *self._me.children(recursive=True)):
            try:
                tree.append((process.name(), process.memory_info().rss))
            except psutil.Error:
                pass  # a child that ended since it was listed
        return tree

    def _tree_rss(self) -> int:
        return sum(rss for _, rss in self._tree())

    def _sample(self) -> None:
        while not self._stop.is_set():
            tree = self._tree()
            rss = sum(size for _, size in tree)
            with self._lock:
                stage = self._stage
                if rss > self._peak:
                    self._peak, self._peak_children = rss, tree[1:]
                self.samples.append((time.monotonic() - self._started, stage, rss))
            if self._trace and self._wants_snapshot(rss):
                snapshot = tracemalloc.take_snapshot()
                with self._lock:
                    if stage == self._stage:
                        self._snapshot, self._snapshot_peak = snapshot, rss
                        self._snapshot_at = time.monotonic()
            self._stop.wait(self._interval)

    def _wants_snapshot(self, rss: int) -> bool:
        return (tracemalloc.is_tracing() and rss > self._snapshot_peak + 8 * 2**20
                and time.monotonic() - self._snapshot_at > 2)

    def begin(self, stage: str) -> None:
        with self._lock:
            self._stage, self._peak, self._peak_children = stage, self._tree_rss(), []
            self._snapshot, self._snapshot_peak = None, 0

    def end(self) -> tuple[int, list[tuple[str, int]], tracemalloc.Snapshot | None]:
        """The stage's peak, the descendants alive at that peak, the snapshot nearest it."""
        tree = self._tree()
        rss = sum(size for _, size in tree)
        with self._lock:
            if rss > self._peak:
                self._peak, self._peak_children = rss, tree[1:]
            return self._peak, self._peak_children, self._snapshot

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def max_rss() -> int:
    """This process's exact high-water mark (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def print_trace(stage: str, snapshot: tracemalloc.Snapshot | None) -> None:
    if snapshot is None:
        print(f"# {stage}: no snapshot (the stage's memory never grew by 8 MB)", file=sys.stderr)
        return
    snapshot = snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    stats = snapshot.statistics("lineno")
    total = sum(stat.size for stat in stats)
    print(f"# {stage}: {mb(total)} MB traced at the sampled peak; top sites:", file=sys.stderr)
    for stat in stats[:TRACE_TOP]:
        frame = stat.traceback[0]
        print(f"#   {mb(stat.size):8.1f} MB {stat.count:9d} blocks  "
              f"{frame.filename}:{frame.lineno}", file=sys.stderr)
    by_file: dict[str, int] = {}
    for stat in stats:
        name = stat.traceback[0].filename
        by_file[name] = by_file.get(name, 0) + stat.size
    print(f"# {stage}: top files:", file=sys.stderr)
    for name, size in sorted(by_file.items(), key=lambda item: -item[1])[:10]:
        print(f"#   {mb(size):8.1f} MB  {name}", file=sys.stderr)


# --- the run process ------------------------------------------------------------------------

def run_stages(args: argparse.Namespace) -> None:
    """The measured process: each stage's JSON line goes to stdout; before the delta it waits
    for the parent (which touches the issues) to write a line to stdin."""
    memory = StageMemory(trace=args.trace)
    if args.trim_every_s > 0:
        threading.Thread(target=trim_forever, args=(args.trim_every_s,), daemon=True).start()
    common = {"issues": args.issues, "days": args.days, "batch_size": args.batch_size,
              "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
              "trim_every_s": args.trim_every_s, "latency_ms": args.latency_ms,
              "min_request_interval_ms": args.min_interval_ms, "trace": args.trace,
              "pid": os.getpid()}
    results: dict[str, Any] = {}

    def report(stage: str, started: float, **extra: Any) -> None:
        peak, children, snapshot = memory.end()
        line = {"stage": stage, "peak_rss_mb": mb(peak), "max_rss_mb": mb(max_rss()),
                "rss_after_mb": mb(memory._tree_rss()),
                "children_at_peak": [f"{name} {mb(rss)} MB" for name, rss in children],
                "wall_s": round(time.perf_counter() - started, 2), **extra, **common}
        print(json.dumps(line), flush=True)
        if args.trace:
            print_trace(stage, snapshot)

    try:
        memory.begin("imports")
        started = time.perf_counter()
        import dagster as dg

        from jira_pipeline.assets.factory import build_definitions
        from jira_pipeline.assets.partitions import partition_key_for
        from jira_pipeline.assets.schedules import partition_range_tags

        report("imports", started, pandas_imported="pandas" in sys.modules)

        memory.begin("definitions")
        started = time.perf_counter()
        defs = build_definitions()
        sync_job = defs.resolve_job_def("jira_sync_job")
        issues_job = defs.resolve_job_def("jira_issues_job")
        partitions = defs.resolve_assets_def("jira_issues").partitions_def
        assert isinstance(partitions, dg.DailyPartitionsDefinition)
        keys = partitions.get_partition_keys()
        report("definitions", started, partitions=len(keys),
               pandas_imported="pandas" in sys.modules)

        memory.begin("instance")
        started = time.perf_counter()
        with dg.DagsterInstance.get() as instance:
            instance.get_runs(limit=1)  # opens the run storage, as a run worker does
            report("instance", started)

            if args.trace:  # from here on: what the runs allocate, not the imports
                tracemalloc.start(1)
            memory.begin("full")
            started = time.perf_counter()
            result = sync_job.execute_in_process(
                instance=instance, tags=partition_range_tags(keys[0], keys[-1]),
                run_config=run_config(args), raise_on_error=False,
            )
            results["full"] = result
            report("full", started, success=result.success, stored=stored_issues(result),
                   pandas_imported="pandas" in sys.modules)

            print(json.dumps({"ready_for_delta": True}), flush=True)
            sys.stdin.readline()  # the parent has touched the issues
            memory.begin("delta")
            started = time.perf_counter()
            today = partition_key_for(partitions, datetime.now(UTC))
            result = issues_job.execute_in_process(
                instance=instance, partition_key=today, run_config=run_config(args),
                raise_on_error=False,
            )
            report("delta", started, success=result.success, stored=stored_issues(result),
                   touched=args.touched)
    finally:
        memory.stop()
        if args.timeline:
            with open(args.timeline, "w") as out:
                out.write("t_s,stage,rss_mb\n")
                for t, stage, rss in memory.samples:
                    out.write(f"{t:.3f},{stage},{mb(rss)}\n")


def trim_forever(every_s: float) -> None:
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    while True:
        time.sleep(every_s)
        libc.malloc_trim(0)


def run_config(args: argparse.Namespace) -> dict[str, Any]:
    if args.batch_size is None:
        return {}
    return {"resources": {"mongo_io_manager": {"config": {"batch_size": args.batch_size}}}}


def stored_issues(result: Any) -> int:
    """Issues the run wrote, summed over its partitions' materializations."""
    events = result.asset_materializations_for_node("jira_issues")
    return sum(int(getattr(e.metadata.get("records_fetched"), "value", 0) or 0) for e in events)


# --- the parent: fake Jira, environment, relaying ---------------------------------------------


@contextmanager
def fake_jira(args: argparse.Namespace, now: datetime) -> Iterator[str]:
    with started_fake_jira(
        ["--issues", str(args.issues), "--days", str(args.days),
         "--latency-ms", str(args.latency_ms)],
        now, email=EMAIL, api_token=TOKEN, who="memory_bench",
    ) as (_process, base_url):
        yield base_url


def run_environment(args: argparse.Namespace, base_url: str, home: Path,
                    now: datetime) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_VARIABLES}
    home.mkdir(parents=True)
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    start = (now - timedelta(days=args.days + 1)).date()  # every seeded issue in a partition
    env.update({
        "DAGSTER_HOME": str(home),
        "JIRA_BASE_URL": base_url,
        "JIRA_EMAIL": EMAIL,
        "JIRA_API_TOKEN": TOKEN,
        "JIRA_SYNC_START_DATE": start.isoformat(),
        "JIRA_MIN_REQUEST_INTERVAL_MS": str(args.min_interval_ms),
        "PYTHONUNBUFFERED": "1",
    })
    if args.mongodb_uri:
        env["MONGODB_URI"] = args.mongodb_uri
        env["MONGODB_DATABASE"] = f"jira_memory_bench_{os.getpid()}"
    return env


def touch_issues(base_url: str, touched: int) -> None:
    """Touch `touched` issues spread evenly over the fake's issues (they move to today)."""
    from jira_pipeline.fakejira import FakeJiraAdmin

    with FakeJiraAdmin(base_url) as admin:
        stored = admin.issues()
        step = max(len(stored) // max(touched, 1), 1)
        for issue in stored[::step][:touched]:
            admin.touch_issue(issue["key"])


def drop_database(env: dict[str, str]) -> None:
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(env["MONGODB_URI"])
    with client:
        client.drop_database(env["MONGODB_DATABASE"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=5_000, help="N, issues in the fake")
    parser.add_argument("--days", type=int, default=30, help="D, days the issues spread over")
    parser.add_argument("--touched", type=int, default=100, help="M, issues touched for the delta")
    parser.add_argument("--latency-ms", type=float, default=0, help="the fake's latency")
    parser.add_argument("--min-interval-ms", type=int, default=0,
                        help="JIRA_MIN_REQUEST_INTERVAL_MS, the client's request spacing")
    parser.add_argument("--mongodb-uri", default=None, help="a real server (default: embedded)")
    parser.add_argument("--trace", action="store_true",
                        help="tracemalloc in the run process; top sites at each peak to stderr")
    parser.add_argument("--timeline", help="write every RSS sample of the run process as CSV")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="the IO manager's records per bulk write (default: its own)")
    parser.add_argument("--trim-every-s", type=float, default=0,
                        help="an experiment: call glibc's malloc_trim(0) this often in the run "
                        "process, to see how much of its RSS is memory freed but kept by malloc")
    parser.add_argument("--run-stages", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_stages:
        run_stages(args)
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    now = datetime.now(UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory(prefix="memory_bench_") as scratch, \
            fake_jira(args, now) as base_url:
        env = run_environment(args, base_url, Path(scratch) / "dagster_home", now)
        command = [sys.executable, __file__, "--run-stages", *sys.argv[1:]]
        run = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, env=env, cwd=scratch)
        assert run.stdin is not None and run.stdout is not None
        try:
            for line in run.stdout:
                if line.startswith("{") and "ready_for_delta" in line:
                    touch_issues(base_url, args.touched)
                    run.stdin.write("go\n")
                    run.stdin.flush()
                elif line.startswith("{"):
                    print(line.rstrip(), flush=True)
        finally:
            if run.poll() is None and sys.exc_info()[0] is not None:
                run.kill()  # this process is being stopped: so is the run
            if run.wait() != 0:
                print(f"memory_bench: the run process exited with {run.returncode}",
                      file=sys.stderr)
            if args.mongodb_uri:
                drop_database(env)
        if run.returncode != 0:
            raise SystemExit(run.returncode)


if __name__ == "__main__":
    main()
