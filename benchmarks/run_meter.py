"""Measure a launched Dagster run as its user sees it: a process tree's CPU and peak memory, the
import-dagster baseline, and the run's figures read back from the instance's event log.

Nothing here reaches into the pipeline's code: a run is whatever the CLI or the daemon started,
and its figures are what its events (materializations, run status changes) recorded.
"""

from __future__ import annotations

import math
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import IO, Any

import psutil


def drain(stream: IO[str]) -> None:
    for _line in stream:
        pass


@contextmanager
def started_fake_jira(
    options: list[str], now: datetime, *, email: str, api_token: str, who: str
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`jira-pipeline fake-jira` with `options`, in its own process (never measured): the
    process and its base URL; `who` names the benchmark in the message if it does not start."""
    command = [
        sys.executable, "-m", "jira_pipeline.cli", "fake-jira", "--port", "0", "--seed", "1",
        *options, "--now", now.isoformat(), "--email", email, "--api-token", api_token,
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
            raise SystemExit(f"{who}: the fake Jira did not start")
        # Keep draining its stdout (access log lines) so a full pipe never blocks the server.
        threading.Thread(target=drain, args=(process.stdout,), daemon=True).start()
        yield process, base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def point_pipeline_at(home: str, base_url: str, start: date, *, email: str,
                      api_token: str) -> None:
    """Set this process's environment as a benchmark's in-process runs read it: the fake Jira
    at `base_url` (no request spacing), DAGSTER_HOME and the embedded store in `home`, the
    partitions from `start`; any configured server, PAT or project filter unset."""
    os.environ.update({
        "DAGSTER_HOME": home, "JIRA_BASE_URL": base_url, "JIRA_EMAIL": email,
        "JIRA_API_TOKEN": api_token, "JIRA_MIN_REQUEST_INTERVAL_MS": "0",
        "JIRA_SYNC_START_DATE": start.isoformat(),
    })
    for name in ("MONGODB_URI", "MONGODB_DATABASE", "JIRA_PAT", "JIRA_PROJECTS"):
        os.environ.pop(name, None)


def import_dagster_seconds(repeat: int = 3) -> float:
    """Median wall time of `python -c "import dagster"`: the per-run overhead's baseline."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import dagster"], check=True)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 2)


def children_cpu_seconds() -> float:
    """User + system CPU of every reaped descendant of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class TreeMeter:
    """Peak resident memory and CPU seconds of a set of processes and their descendants,
    sampled in a background thread until `stop()`.

    `roots()` names the processes measured (it may change: a daemon's run worker appears after
    the run is queued); `exclude` and its descendants (the fake Jira) never count. CPU is each
    process's own user + system time, as last seen, summed over every process ever seen, so a
    child reaped by a parent in the tree is not counted twice. Listing descendants scans /proc,
    so the list is refreshed every `relist_s` and only the cheap per-process reads run at every
    sample.
    """

    def __init__(self, roots: Callable[[], list[psutil.Process]], exclude: set[int],
                 interval_s: float = 0.05, relist_s: float = 0.25) -> None:
        self._roots = roots
        self._exclude = exclude
        self._interval = interval_s
        self._relist = relist_s
        self._tree: list[psutil.Process] = []
        self._listed_at = -math.inf
        self._peak = 0
        self.peak_processes = 0  # most processes measured at once (run worker, step workers)
        self._cpu: dict[tuple[int, float], float] = {}  # (pid, create_time) -> own CPU seconds
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
            tree: dict[int, psutil.Process] = {}
            for root in self._roots():
                try:
                    for process in (root, *root.children(recursive=True)):
                        if process.pid not in excluded:
                            tree[process.pid] = process
                except psutil.Error:
                    pass  # ended since it was named
            self._tree = list(tree.values())
            self.peak_processes = max(self.peak_processes, len(self._tree))
            self._listed_at = time.monotonic()
        return self._tree

    def sample(self) -> None:
        rss = 0
        for process in self._measured():
            try:
                with process.oneshot():
                    rss += process.memory_info().rss
                    times = process.cpu_times()
                    key = (process.pid, process.create_time())
            except psutil.Error:
                continue  # ended since the last listing
            with self._lock:
                self._cpu[key] = max(self._cpu.get(key, 0.0), times.user + times.system)
        with self._lock:
            self._peak = max(self._peak, rss)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval)

    def relist(self) -> None:
        """Look for new processes at the next sample (a root just appeared)."""
        self._listed_at = -math.inf

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return round(self._peak / 2**20, 1)

    @property
    def cpu_s(self) -> float:
        with self._lock:
            return round(sum(self._cpu.values()), 2)


@dataclass
class RunRecord:
    """One run as the instance recorded it."""

    run_id: str
    status: str
    tags: dict[str, str]
    created: float
    # Run status events: RUN_ENQUEUED, RUN_STARTING, RUN_START, RUN_SUCCESS, RUN_FAILURE, ...
    status_times: dict[str, float] = field(default_factory=dict)
    # asset name (last key component) -> one metadata dict per materialization
    materializations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # step key -> seconds from its STEP_START to its STEP_SUCCESS or STEP_FAILURE
    step_seconds: dict[str, float] = field(default_factory=dict)

    def between(self, first: str, last: str) -> float | None:
        if first in self.status_times and last in self.status_times:
            return round(self.status_times[last] - self.status_times[first], 2)
        return None

    @property
    def finished(self) -> str | None:
        """The event that ended the run, if any."""
        for name in ("RUN_SUCCESS", "RUN_FAILURE", "RUN_CANCELED"):
            if name in self.status_times:
                return name
        return None

    def summed(self, asset: str, key: str) -> int:
        """A metadata figure summed over an asset's materializations (one per partition)."""
        return sum(int(m.get(key) or 0) for m in self.materializations.get(asset, []))


def read_run(instance: Any, run_id: str) -> RunRecord:
    """The run's status changes and materializations, from the instance's event log."""
    record = instance.get_run_record_by_id(run_id)
    run = record.dagster_run
    created = record.create_timestamp.timestamp()
    result = RunRecord(run_id, run.status.value, dict(run.tags), created)
    step_started: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        name = event.event_type_value
        if name.startswith("PIPELINE_") or name.startswith("RUN_"):
            result.status_times.setdefault(name.replace("PIPELINE_", "RUN_"), entry.timestamp)
        if event.step_key is not None:
            if name == "STEP_START":
                step_started[event.step_key] = entry.timestamp
            elif name in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in step_started:
                result.step_seconds[event.step_key] = round(
                    entry.timestamp - step_started[event.step_key], 2)
        materialization = entry.asset_materialization
        if materialization is not None:
            metadata = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
            asset = materialization.asset_key.path[-1]
            result.materializations.setdefault(asset, []).append(metadata)
    return result
