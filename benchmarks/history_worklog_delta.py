"""Issue 13's `worklog_delta` phase: what `jira_worklogs` costs after 100 worklog changes and
10 deletions, once the site's worklogs are stored.

A fake Jira of N issues runs in its own process (never measured). The worklogs asset is
materialized once from `since=0` (the first run), then the changes are made through the
fake's admin API (half new worklogs, half edits of stored ones, then the deletions), the
fake's clock is moved past the minute Jira's feeds leave out, and the delta run is measured:
its requests to Jira (counted by the fake), wall time and the peak RSS of this process (the
run executes in it; the fake excluded). Prints one JSON line:

    {"phase": "worklog_delta", "issues", "histories" (the delta's worklog changes and
     deletions), "page_size" (the feeds' 1,000), "requests", "per_issue_requests" (what
     reading each touched issue's worklogs would cost: one search page per 100 issues plus one
     `/issue/{id}/worklog` per issue), "wall_s", "peak_rss_mb", "worklogs" (the site's),
     "changes", "deletions", "inserted", "updated", "marked_deleted", "converged" (store ==
     Jira afterwards), "target": 3, "met"}

    python benchmarks/history_worklog_delta.py [--issues 2000] [--days 30] [--changes 100]
        [--deletions 10] [--latency-ms 0]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_meter import TreeMeter, point_pipeline_at, started_fake_jira  # sibling helpers

EMAIL, TOKEN = "bench@example.com", "bench-token"
PAGE_SIZE = 1000
TARGET_REQUESTS = 3
WORKLOG_ENDPOINTS = ("/rest/api/3/worklog/updated", "/rest/api/3/worklog/list",
                     "/rest/api/3/worklog/deleted")


def requests_made(stats: dict[str, Any]) -> int:
    return sum(sum(by_status.values()) for by_status in stats["requests"].values())


def live_worklogs(admin: Any) -> dict[str, tuple[str, int]]:
    """The fake's worklogs now: id -> (issue id, seconds)."""
    return {w["id"]: (w["issueId"], w["timeSpentSeconds"]) for issue in admin.issues()
            for w in admin.worklogs(issue["key"])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=2000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--deletions", type=int, default=10)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)

    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    options = ["--issues", str(args.issues), "--days", str(args.days),
               "--latency-ms", str(args.latency_ms)]
    with tempfile.TemporaryDirectory(prefix="worklog_bench_") as home, started_fake_jira(
        options, now, email=EMAIL, api_token=TOKEN, who="history_worklog_delta"
    ) as (fake, base_url):
        point_pipeline_at(home, base_url, (now - timedelta(days=args.days + 1)).date(),
                          email=EMAIL, api_token=TOKEN)
        print(json.dumps(measure(args, base_url, fake.pid)))


def measure(args: argparse.Namespace, base_url: str, fake_pid: int) -> dict[str, Any]:
    import dagster as dg

    from jira_pipeline.assets.factory import build_definitions
    from jira_pipeline.fakejira import FakeJiraAdmin
    from jira_pipeline.storage.client import get_database

    defs = build_definitions()
    job = defs.resolve_job_def("jira_sync_job")
    key = dg.AssetKey("jira_worklogs")
    admin = FakeJiraAdmin(base_url)
    with dg.DagsterInstance.ephemeral() as instance:
        assert job.execute_in_process(instance=instance, asset_selection=[key]).success
        stored = live_worklogs(admin)
        issues = admin.issues()
        touched: set[str] = set()
        existing = list(stored)
        adds = args.changes // 2
        for n in range(adds):
            added = admin.add_worklog(issues[n * 7 % len(issues)]["key"], seconds=600 + n)
            touched.add(added["issueId"])
        for worklog_id in existing[:args.changes - adds]:
            touched.add(admin.edit_worklog(worklog_id, timeSpentSeconds=5400)["issueId"])
        for worklog_id in existing[args.changes - adds:args.changes - adds + args.deletions]:
            touched.add(stored[worklog_id][0])
            admin.delete_worklog(worklog_id)
        admin.advance_clock(61)  # past the minute the feeds leave out
        before = requests_made(admin.stats())
        meter = TreeMeter(lambda: [psutil.Process()], exclude={fake_pid})
        started = time.perf_counter()
        result = job.execute_in_process(instance=instance, asset_selection=[key])
        wall = time.perf_counter() - started
        meter.stop()
        requests = requests_made(admin.stats()) - before
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    metadata = {k: getattr(v, "value", v) for k, v in
                event.step_materialization_data.materialization.metadata.items()}
    db = get_database()
    stored_now = {d["worklog_id"]: (d["issue_id"], d["time_spent_seconds"])
                  for d in db["jira_worklogs"].find({"is_deleted": False})}
    return {
        "phase": "worklog_delta",
        "issues": args.issues,
        "histories": args.changes + args.deletions,
        "page_size": PAGE_SIZE,
        "requests": requests,
        "per_issue_requests": math.ceil(len(touched) / 100) + len(touched),
        "wall_s": round(wall, 2),
        "peak_rss_mb": meter.peak_mb,
        "worklogs": len(stored),
        "changes": args.changes,
        "deletions": args.deletions,
        "inserted": metadata.get("inserted"),
        "updated": metadata.get("updated"),
        "marked_deleted": metadata.get("marked_deleted"),
        "converged": stored_now == live_worklogs(admin),
        "target": TARGET_REQUESTS,
        "met": requests <= TARGET_REQUESTS,
    }


if __name__ == "__main__":
    main()
