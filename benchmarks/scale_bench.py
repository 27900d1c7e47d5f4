"""Measure what many registered Jira sites cost the code location: load time, memory, one tick.

For each count of sites (default 1, 100 and 1,000) the benchmark registers that many API-token
connections in a fresh embedded store (all pointing at one fake Jira, started in its own
subprocess like sync_bench.py does; the tokens are encrypted under a Fernet key generated here),
then measures, each in a fresh process as the webserver and the daemon load code:

- `load_s`: `dagster definitions validate -m jira_pipeline.definitions`, the whole command
  (`load_cpu_s`: its CPU seconds, which a machine shared with other work inflates far less);
- `inprocess_load_s`: loading `jira_pipeline.definitions` as a code server does (its repository)
  and its asset graph, in one fresh child (`import_s` is its import of Dagster alone), with the
  child's `rss_mb` after loading and `inprocess_cpu_s` (load and snapshot);
- `snapshot_s`: the repository snapshot a code server serializes for the webserver and daemon;
- `tick_s`: one evaluation of every sensor of the code location (the refresh automation),
  against a real instance in the run's DAGSTER_HOME and the fake over HTTP, first tick (no
  cursor); `max_sensor_s` is the slowest single sensor (Dagster's limit is 60 s a sensor);
  `next_tick_s` the tick after, with the cursors the first left; further ticks follow until
  the registered sites' sensor has asked every site (at most 5): `sites_covered_by_tick` is
  how many sites it had asked after each, `tick_times_s` each tick's time and `tick_cpu_s` its
  CPU seconds;

It prints one JSON line per count (`sites`, `load_s`, `per_extra_site_ms` against the first
count, ...), and the top functions of a cProfile of the in-process build to stderr.

    python benchmarks/scale_bench.py [--sites 1,100,1000] [--latency-ms 50] [--profile-top 25]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_meter import started_fake_jira

REPO = Path(__file__).resolve().parent.parent
MAX_TICKS = 5
EMAIL, TOKEN = "bench@example.com", "bench-token"
# Settings of a site of the environment: the benchmark's sites are all registered connections.
FOREIGN_VARIABLES = ("JIRA_BASE_URL", "JIRA_EMAIL", "JIRA_API_TOKEN", "JIRA_PAT",
                     "JIRA_OAUTH_CLIENT_ID", "JIRA_OAUTH_CLIENT_SECRET", "JIRA_CLOUD_ID",
                     "JIRA_PROJECTS", "MONGODB_URI", "MONGODB_DATABASE")



@contextlib.contextmanager
def fake_jira(latency_ms: float, now: datetime) -> Iterator[str]:
    with started_fake_jira(
        ["--issues", "200", "--days", "3", "--latency-ms", str(latency_ms)],
        now, email=EMAIL, api_token=TOKEN, who="scale_bench",
    ) as (_process, base_url):
        yield base_url


def prepare_home(home: Path, sites: int, base_url: str, now: datetime) -> dict[str, str]:
    """A fresh DAGSTER_HOME with `sites` registered connections; the environment to load it."""
    from jira_pipeline.storage.client import get_mongo_client
    from jira_pipeline.storage.connections import ConnectionRepository
    from jira_pipeline.storage.crypto import TokenCipher

    home.mkdir(parents=True)
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_VARIABLES}
    env.update({
        "DAGSTER_HOME": str(home),
        "JIRA_PIPELINE_FERNET_KEYS": TokenCipher.generate_key(),
        "JIRA_SYNC_START_DATE": now.date().replace(day=1).isoformat(),
        "JIRA_MIN_REQUEST_INTERVAL_MS": "0",
        "PYTHONUNBUFFERED": "1",
    })
    client = get_mongo_client(None, folder=home / "mongo")
    try:
        repository = ConnectionRepository(
            client.get_database("jira"), TokenCipher.from_env(env)
        )
        for n in range(sites):
            repository.add(f"site{n:04d}", base_url, auth_type="api_token", email=EMAIL,
                           access_token=TOKEN)
    finally:
        client.close()
    return env


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_validate(env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of `dagster definitions validate` (its whole process tree)."""
    dagster = Path(sys.executable).with_name("dagster")
    cpu = children_cpu_s()
    started = time.perf_counter()
    done = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "jira_pipeline.definitions"],
        env=env, cwd=REPO, capture_output=True, text=True,
    )
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"scale_bench: validate failed:\n{done.stdout}\n{done.stderr}")
    return took, children_cpu_s() - cpu


def child(profile_top: int, sites: int) -> None:
    """In a fresh process: load the code location (profiled), then tick every sensor once."""
    started, cpu_started = time.perf_counter(), time.process_time()
    import dagster as dg

    import_s = time.perf_counter() - started
    from dagster._core.code_pointer import CodePointer
    from dagster._core.definitions.reconstruct import initialize_repository_def_from_pointer
    from dagster._core.workspace.autodiscovery import loadable_targets_from_python_module

    profile = cProfile.Profile()
    if profile_top:
        profile.enable()
    # How a code server loads the location: `@dg.definitions` loaders and plain `defs` alike.
    [target] = loadable_targets_from_python_module("jira_pipeline.definitions", str(REPO))
    repository = initialize_repository_def_from_pointer(
        CodePointer.from_module("jira_pipeline.definitions", target.attribute, str(REPO))
    )
    graph = repository.asset_graph
    load_s = time.perf_counter() - started
    # What the code server then serializes for the webserver and the daemon.
    from dagster._core.remote_representation.external_data import RepositorySnap

    began = time.perf_counter()
    RepositorySnap.from_def(repository)
    snapshot_s = time.perf_counter() - began
    load_cpu_s = time.process_time() - cpu_started
    profile.disable()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    counts = {
        "assets": len(list(graph.get_all_asset_keys())),
        "jobs": len(repository.get_all_jobs()),
        "schedules": len(repository.schedule_defs),
        "sensors": len(repository.sensor_defs),
    }
    from jira_pipeline.assets.sensors import SITES_REFRESH_SENSOR, parse_site_cursors

    tick_s, max_sensor_s, requests, failures, next_tick_s = 0.0, 0.0, 0, 0, 0.0
    cursors: dict[str, str | None] = {}
    covered: list[int] = []  # sites with a cursor of their own after each tick
    tick_times: list[float] = []
    tick_cpu: list[float] = []  # CPU seconds of each tick (the client's event-loop thread too)
    with dg.DagsterInstance.get() as instance:
        # The first tick (no cursor), then the next ones, carrying the cursor as the daemon
        # does, until every site has been asked (at most MAX_TICKS).
        for round_ in range(1, MAX_TICKS + 1):
            if round_ > 2 and covered and covered[-1] >= sites:
                break
            took_round, cpu_began = 0.0, time.process_time()
            for sensor in repository.sensor_defs:
                began = time.perf_counter()
                with dg.build_sensor_context(
                    instance=instance, resources=repository.get_top_level_resources(),
                    repository_def=repository, cursor=cursors.get(sensor.name),
                ) as context:
                    try:
                        data = sensor.evaluate_tick(context)
                        cursors[sensor.name] = data.cursor
                        requests += len(data.run_requests or []) if round_ == 1 else 0
                    except Exception as error:  # a failing sensor is a figure, not a crash
                        failures += 1
                        print(f"scale_bench: sensor {sensor.name} failed: {error}",
                              file=sys.stderr)
                took = time.perf_counter() - began
                took_round += took
                if sensor.name == SITES_REFRESH_SENSOR:
                    covered.append(len(parse_site_cursors(cursors.get(sensor.name))))
                if round_ == 1:
                    tick_s += took
                    max_sensor_s = max(max_sensor_s, took)
                elif round_ == 2:
                    next_tick_s += took
            tick_times.append(round(took_round, 2))
            tick_cpu.append(round(time.process_time() - cpu_began, 2))
    text = io.StringIO()
    stats = pstats.Stats(profile, stream=text) if profile_top else None
    if stats is None:
        text.write("(not profiled: --profile-top 0)")
    else:
        # Our own code and Dagster's definition machinery, past the imports.
        stats.sort_stats("cumulative").print_stats(r"jira_pipeline|dagster/_core/(definitions|"
                                                   r"remote_representation)", profile_top)
        stats.sort_stats("tottime").print_stats(profile_top)
    print(text.getvalue(), file=sys.stderr)
    print(json.dumps({
        "import_s": round(import_s, 2),
        "inprocess_load_s": round(load_s, 2),
        "snapshot_s": round(snapshot_s, 2),
        "inprocess_cpu_s": round(load_cpu_s, 2),
        "rss_mb": round(rss_mb, 1),
        "tick_s": round(tick_s, 2),
        "max_sensor_s": round(max_sensor_s, 2),
        "next_tick_s": round(next_tick_s, 2),
        # The registered sites' sensor: how many sites had been asked after each tick.
        "sites_covered_by_tick": covered,
        "tick_times_s": tick_times,
        "tick_cpu_s": tick_cpu,
        "run_requests": requests,
        "failed_sensors": failures,
        **counts,
    }))


def measure(sites: int, base_url: str, now: datetime, scratch: Path, args: argparse.Namespace
            ) -> dict[str, Any]:
    env = prepare_home(scratch / f"home_{sites}", sites, base_url, now)
    load_s, load_cpu_s = timed_validate(env) if not args.no_validate else (None, None)
    done = subprocess.run(
        [sys.executable, __file__, "--child", "--profile-top", str(args.profile_top),
         "--child-sites", str(sites)],
        env=env, cwd=REPO, capture_output=True, text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"scale_bench: the measuring child failed:\n{done.stderr[-4000:]}")
    print(f"--- profile of the build, {sites} sites ---", file=sys.stderr)
    print(done.stderr, file=sys.stderr)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return {"sites": sites, "load_s": round(load_s, 2) if load_s is not None else None,
            "load_cpu_s": round(load_cpu_s, 2) if load_cpu_s is not None else None, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", default="1,100,1000", help="comma-separated site counts")
    parser.add_argument("--latency-ms", type=float, default=50, help="the fake's latency")
    parser.add_argument("--profile-top", type=int, default=25,
                        help="profile lines printed (0: no profile; the in-process figures "
                        "then carry no profiler cost)")
    parser.add_argument("--no-validate", action="store_true",
                        help="skip `dagster definitions validate` (load_s is then null)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-sites", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.profile_top, args.child_sites)
        return
    counts = [int(n) for n in args.sites.split(",")]
    now = datetime.now(UTC).replace(microsecond=0)
    first: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="scale_bench_") as scratch, \
            fake_jira(args.latency_ms, now) as base_url:
        for sites in counts:
            line = measure(sites, base_url, now, Path(scratch), args)
            if first is None:
                first = line
            extra = sites - first["sites"]
            for name, out in (("load_s", "per_extra_site_ms"),
                              ("load_cpu_s", "per_extra_site_cpu_ms"),
                              ("inprocess_load_s", "inprocess_per_extra_site_ms"),
                              ("inprocess_cpu_s", "inprocess_per_extra_site_cpu_ms")):
                if extra > 0 and line[name] is not None and first[name] is not None:
                    line[out] = round(1000 * (line[name] - first[name]) / extra, 2)
                else:
                    line[out] = None
            line["latency_ms"] = args.latency_ms
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
