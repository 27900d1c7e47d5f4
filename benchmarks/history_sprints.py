"""Issue 14's `sprints` phase: what sprint membership costs in requests for N issues.

A fake Jira of N issues (its own process, never measured) with boards and two-week sprints over
`--days` days. One in-process run syncs what the membership reads (the field catalog, statuses,
projects, boards, sprints, every partition's issues and their changelogs); a second run
materializes `jira_sprint_issues` and `jira_sprint_report`, with the membership check
evaluated, as the daily job does. The requests of each are counted by the fake. Prints one JSON
line:

    {"phase": "sprints", "issues", "days", "sprints" (distinct), "boards", "memberships"
     (sprint-issue pairs derived), "issue_sync_requests" (search, changelogs, fields,
     statuses, projects), "sprint_list_requests" (boards and their sprint lists),
     "membership_requests" (the derivation's: the target is 0), "check_requests" (the
     membership check's sample of closed sprints, apart), "per_sprint_requests" (what asking
     `/board/{id}/sprint` and then `/sprint/{id}/issue` per board and sprint costs, 50 issues a
     page: Airbyte's way, which sees only current members, not their history), "converged"
     (stored membership == the fake's ground truth), "derive_s", "wall_s", "target": 0, "met"}

    python benchmarks/history_sprints.py [--issues 20000] [--days 120]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_meter import point_pipeline_at, started_fake_jira

EMAIL, TOKEN = "bench@example.com", "bench-token"
SPRINT_ISSUE_PAGE = 50  # /sprint/{id}/issue's default page
SYNC_ASSETS = ("jira_fields", "jira_statuses", "jira_projects", "jira_boards", "jira_sprints",
               "jira_issues", "jira_issue_changelogs")
DERIVED_ASSETS = ("jira_sprint_issues", "jira_sprint_report")


def requests_by_endpoint(admin: Any) -> Counter[str]:
    return Counter({endpoint: sum(by_status.values())
                    for endpoint, by_status in admin.stats()["requests"].items()})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=20000)
    parser.add_argument("--days", type=int, default=120)
    args = parser.parse_args(argv)

    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    options = ["--issues", str(args.issues), "--days", str(args.days), "--latency-ms", "0"]
    with tempfile.TemporaryDirectory(prefix="sprint_bench_") as home, started_fake_jira(
        options, now, email=EMAIL, api_token=TOKEN, who="history_sprints"
    ) as (_fake, base_url):
        point_pipeline_at(home, base_url, (now - timedelta(days=args.days + 1)).date(),
                          email=EMAIL, api_token=TOKEN)
        print(json.dumps(measure(args, base_url, now)))


def truth(args: argparse.Namespace, now: datetime) -> tuple[dict, dict[int, int], int]:
    """The fake's ground truth, rebuilt in this process from the same seed: membership, the
    boards listing each sprint (how often a per-board walk meets it) and the board count."""
    from jira_pipeline.fakejira import agile
    from jira_pipeline.fakejira.config import FakeJiraConfig
    from jira_pipeline.fakejira.site import FakeJiraSite

    site = FakeJiraSite(FakeJiraConfig(issues=args.issues, days=args.days, seed=1, now=now))
    boards = agile.boards(site.data)
    shown: Counter[int] = Counter()
    for sprint in agile.sprints(site.data):
        shown[sprint.id] = sum(1 for board in boards
                               if board.supports_sprints and sprint.board_id in board.shows)
    return agile.sprint_membership(site.data), dict(shown), len(boards)


def measure(args: argparse.Namespace, base_url: str, now: datetime) -> dict[str, Any]:
    import dagster as dg

    from jira_pipeline.assets.factory import build_definitions
    from jira_pipeline.fakejira import FakeJiraAdmin
    from jira_pipeline.storage.client import get_database
    from jira_pipeline.timeutil import parse_jira_datetime, to_epoch_ms

    defs = build_definitions()
    job = defs.resolve_job_def("jira_sync_job")
    partitions = defs.resolve_assets_def("jira_issues").partitions_def
    assert partitions is not None
    keys = partitions.get_partition_keys()
    tags = {"dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1]}
    admin = FakeJiraAdmin(base_url)
    started = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance:
        assert job.execute_in_process(
            instance=instance, tags=tags,
            asset_selection=[dg.AssetKey(name) for name in SYNC_ASSETS]).success
        synced = requests_by_endpoint(admin)
        result = job.execute_in_process(
            instance=instance, tags=tags,
            asset_selection=[dg.AssetKey(name) for name in DERIVED_ASSETS])
        assert result.success
        derived = requests_by_endpoint(admin) - synced
    wall = time.perf_counter() - started
    check = [e for e in result.get_asset_check_evaluations()
             if e.check_name == "sprint_membership_matches_jira"]
    metadata = next(
        {k: getattr(v, "value", v) for k, v in
         event.step_materialization_data.materialization.metadata.items()}
        for event in result.get_asset_materialization_events()
        if event.asset_key == dg.AssetKey("jira_sprint_issues"))
    check_requests = sum(n for endpoint, n in derived.items()
                         if endpoint.endswith("/sprint/{sprintId}/issue"))
    sprint_list = sum(n for endpoint, n in synced.items() if "/rest/agile/" in endpoint)

    membership, shown, board_count = truth(args, now)
    stored: dict[int, dict[str, list[tuple[int, int | None]]]] = {}
    for row in get_database()["jira_sprint_issues"].find({}):
        stored.setdefault(int(row["sprint_id"]), {})[row["issue_id"]] = [
            (to_epoch_ms(parse_jira_datetime(s["added_at"])),
             None if s["removed_at"] is None else to_epoch_ms(parse_jira_datetime(s["removed_at"])))
            for s in row["intervals"]]
    current = {sprint_id: sum(1 for spans in issues.values() if spans[-1][1] is None)
               for sprint_id, issues in membership.items()}
    per_sprint = sprint_list + sum(
        times * max(1, math.ceil(current.get(sprint_id, 0) / SPRINT_ISSUE_PAGE))
        for sprint_id, times in shown.items())
    membership_requests = sum(derived.values()) - check_requests
    return {
        "phase": "sprints",
        "issues": args.issues,
        "days": args.days,
        "sprints": len(shown),
        "boards": board_count,
        "memberships": sum(len(issues) for issues in membership.values()),
        "issue_sync_requests": sum(synced.values()) - sprint_list,
        "sprint_list_requests": sprint_list,
        "membership_requests": membership_requests,
        "check_requests": check_requests,
        "check_passed": bool(check and check[0].passed),
        "per_sprint_requests": per_sprint,
        "converged": stored == membership,
        "derive_s": metadata.get("derive_s"),
        "wall_s": round(wall, 2),
        "target": 0,
        "met": membership_requests == 0 and stored == membership,
    }


if __name__ == "__main__":
    main()
