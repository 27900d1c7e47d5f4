"""Measure the daily run's issue census: requests, wall time and peak memory per N and differences.

For each N (default 20,000 and 100,000) a fake Jira of N issues is started in its own process
(`jira-pipeline fake-jira`, so its memory is not measured) and the embedded store (or
--mongodb-uri) is seeded with exactly its issues *directly*: a child process rebuilds the fake's
deterministic dataset (same seed, sizes and clock start), renders each issue as the fake serves
it (all fields and the changelog) and stores it through the project's own `IssueRecord` and
`upsert_records`. (Seeding by a backfill costs about 450 issues/s, minutes at N=100,000; what is
measured here is the census, not the backfill.) Then, for 0, 1 and 500 differences in turn:

- differences are made: half of them (rounded up) issues deleted in Jira through the fake's
  admin API (the store holds them live: they must be marked deleted), the rest stored documents
  removed (Jira has them: they must be fetched);
- the run the daily schedule requests is executed (`jira_issues` for yesterday and today with
  the schedule's tags, so the census runs; checks and dimensions are left out);
- the store is compared with the fake (live ids and `updated`) in a child process.

Prints one JSON line per (N, differences): `issues`, `differences`, `requests` (the census's
API calls: approximate count, id pages, bulk fetches), `wall_s` (the census, from its first
request to its last mark, writing the fetched issues included), `peak_rss_mb` (this process and
its children, the fake excluded, over the whole run), `converged` (store == Jira afterwards),
plus the target `requests_target` = ceil(N/5000) + ceil(differences/100) + 3 and the run's
`run_wall_s`.

    python benchmarks/reconcile_bench.py [--issues 20000 100000] [--days 90] [--latency-ms 100]
        [--differences 0 1 500] [--min-interval-ms 200] [--mongodb-uri URI]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sync_bench import (  # the sibling benchmark's helpers
    EMAIL,
    TOKEN,
    PeakMemory,
    fake_jira,
    point_environment,
)

ISSUES_KEY = "jira_issues"


def seed_store(issues: int, days: int, now: datetime, base_url: str) -> int:
    """Store the fake's issues (rebuilt from its seed) through the project's upserts."""
    from jira_pipeline.assets.sites import site_connection_id
    from jira_pipeline.fakejira.config import FakeJiraConfig
    from jira_pipeline.fakejira.dataset import FIELD_IDS
    from jira_pipeline.fakejira.site import FakeJiraSite
    from jira_pipeline.jira import IssueRecord
    from jira_pipeline.storage.resources import MongoResource
    from jira_pipeline.storage.upserts import upsert_records

    site = FakeJiraSite(FakeJiraConfig(seed=1, issues=issues, days=days, now=now))
    renderer = site.renderer(base_url, "3")
    connection_id = site_connection_id(base_url)
    expand = frozenset({"changelog"})
    records = (
        IssueRecord.from_raw(renderer.issue(issue, FIELD_IDS, expand), connection_id)
        for issue in site.data.issues
    )
    mongo = MongoResource()  # the store the code location uses (MONGODB_URI or DAGSTER_HOME)
    try:
        return upsert_records(mongo.get_database(), "issues", records).total
    finally:
        mongo.close()


def make_differences(base_url: str, differences: int, already: int) -> None:
    """Delete ceil(d/2) issues in Jira and remove the other stored documents from the store."""
    from jira_pipeline.assets.sites import site_connection_id
    from jira_pipeline.fakejira import FakeJiraAdmin
    from jira_pipeline.storage.resources import MongoResource

    in_jira = math.ceil(differences / 2)
    with FakeJiraAdmin(base_url, timeout=300) as admin:
        live = admin.issues()
        # Spread over the id range, skipping the ones earlier rounds picked.
        step = max(len(live) // max(differences + already + 1, 1), 1)
        chosen = live[step // 2 :: step][already : already + differences]
        for issue in chosen[:in_jira]:
            admin.delete_issue(issue["key"])
    removed = [issue["id"] for issue in chosen[in_jira:]]
    if removed:
        mongo = MongoResource()
        try:
            mongo.get_database()["jira_issues"].delete_many(
                {"connection_id": site_connection_id(base_url), "issue_id": {"$in": removed}}
            )
        finally:
            mongo.close()


def converged(base_url: str) -> bool:
    """Whether the store's live issues are exactly the fake's (ids and `updated`)."""
    from jira_pipeline.assets.sites import site_connection_id
    from jira_pipeline.fakejira import FakeJiraAdmin
    from jira_pipeline.storage.resources import MongoResource
    from jira_pipeline.timeutil import parse_jira_datetime

    with FakeJiraAdmin(base_url, timeout=300) as admin:
        jira = {issue["id"]: parse_jira_datetime(issue["updated"]) for issue in admin.issues()}
    mongo = MongoResource()
    try:
        stored = {
            doc["issue_id"]: doc["updated"]
            for doc in mongo.get_database()["jira_issues"].find(
                {"connection_id": site_connection_id(base_url), "is_deleted": {"$ne": True}},
                {"issue_id": 1, "updated": 1, "_id": 0},
            )
        }
    finally:
        mongo.close()
    return stored == jira


def in_child(target: Any, *args: Any) -> Any:
    """Run `target(*args)` in a fresh process (its memory never counts towards the run's); a
    child that dies raises BrokenProcessPool instead of hanging."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(target, *args).result(timeout=3600)


def daily_census(base_url: str, memory: PeakMemory) -> dict[str, Any]:
    import dagster as dg

    from jira_pipeline.assets.factory import build_definitions

    defs = build_definitions()
    bench = dg.Definitions.merge(defs, dg.Definitions(jobs=[
        dg.define_asset_job("bench_daily", dg.AssetSelection.assets(ISSUES_KEY).without_checks()),
    ]))
    schedule = bench.resolve_schedule_def("jira_daily_schedule")
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime.now(UTC)
        )
        [request] = schedule.evaluate_tick(context).run_requests or []
        memory.reset()
        started = time.perf_counter()
        result = bench.resolve_job_def("bench_daily").execute_in_process(
            instance=instance, tags=request.tags, raise_on_error=False
        )
        run_wall = time.perf_counter() - started
    events = result.asset_materializations_for_node(ISSUES_KEY)
    meta = {k: getattr(v, "value", v) for k, v in events[0].metadata.items()} if events else {}
    return {"success": result.success, "run_wall_s": round(run_wall, 2), **meta}


def bench_size(args: argparse.Namespace, issues: int) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    fake_args = argparse.Namespace(issues=issues, days=args.days, latency_ms=args.latency_ms,
                                   rate_limit=0.0)
    with tempfile.TemporaryDirectory(prefix="reconcile_bench_") as scratch, \
            fake_jira(fake_args, now) as (fake_process, base_url):
        point_args = argparse.Namespace(days=args.days, min_interval_ms=args.min_interval_ms,
                                        mongodb_uri=args.mongodb_uri)
        store = point_environment(point_args, base_url, Path(scratch) / "dagster_home", now)
        started = time.perf_counter()
        seeded = in_child(seed_store, issues, args.days, now, base_url)
        print(json.dumps({"phase": "seed", "issues": seeded,
                          "wall_s": round(time.perf_counter() - started, 1)}),
              file=sys.stderr, flush=True)
        memory = PeakMemory(exclude={fake_process.pid})
        made = 0
        try:
            for differences in args.differences:
                in_child(make_differences, base_url, differences, made)
                made += differences
                figures = daily_census(base_url, memory)
                peak = memory.peak_mb
                print(json.dumps({
                    "issues": issues,
                    "differences": differences,
                    "requests": figures.get("census_api_calls"),
                    "wall_s": figures.get("census_duration_s"),
                    "peak_rss_mb": peak,
                    "converged": bool(figures.get("success")) and in_child(converged, base_url),
                    "requests_target": math.ceil(issues / 5000) + math.ceil(differences / 100)
                    + 3,
                    "fetched": figures.get("census_fetched"),
                    "marked_deleted": figures.get("marked_deleted"),
                    "run_wall_s": figures.get("run_wall_s"),
                    "latency_ms": args.latency_ms,
                    "store": store,
                }), flush=True)
        finally:
            memory.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--differences", type=int, nargs="+", default=[0, 1, 500])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--latency-ms", type=float, default=100)
    parser.add_argument("--min-interval-ms", type=int, default=200)
    parser.add_argument("--mongodb-uri", default=os.environ.get("MONGODB_URI"))
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.pop("JIRA_PAT", None)
    os.environ["JIRA_EMAIL"], os.environ["JIRA_API_TOKEN"] = EMAIL, TOKEN
    for issues in args.issues:
        bench_size(args, issues)


if __name__ == "__main__":
    main()
