"""Issue 13's `changelogs` phase: every history of N issues (10-300 each) through bulkfetch.

Prints one JSON line: `phase`, `issues`, `histories`, `page_size`, `requests` (bulkfetch pages
made), `floor` (ceil(N / 1000) + ceil(histories / page_size)), `per_issue_requests` (what one
`GET /issue/{id}/changelog` walk per issue would cost: the sum of max(1, ceil(h / 100))),
`wall_s`, `peak_rss_mb` (this process, where the walk runs; the fake is excluded), `target`
(requests at most 1.05 x floor) and `met`. What it measures is the first run after an upgrade:
every issue's whole history fetched once (a later daily run fetches only its window's issues).

By default the walk is the asset's own (`ChangelogStream`: issue ids read from a store's
`jira_issues`, documents built for the IO manager) with the documents counted, not written;
`--store` writes them through the IO manager's upserts into a temporary embedded store and adds
`store_s` (at large N the embedded store's writes take most of the time). The fake Jira runs in
its own process (`jira-pipeline fake-jira --histories 10-300`), never measured.

    python benchmarks/history_changelogs.py [--issues 20000] [--histories 10-300] [--store]
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

from run_meter import TreeMeter, started_fake_jira

from jira_pipeline.assets.changelogs import ChangelogStream
from jira_pipeline.assets.issue_window import StoredWindow
from jira_pipeline.assets.resources import JiraResource
from jira_pipeline.fakejira.admin import FakeJiraAdmin
from jira_pipeline.jira.changelogs import BULK_CHANGELOG_ISSUES, BULK_CHANGELOG_PAGE
from jira_pipeline.storage.client import get_mongo_client
from jira_pipeline.storage.indexes import ensure_indexes
from jira_pipeline.storage.io_manager import Upsert
from jira_pipeline.storage.upserts import upsert_records
from jira_pipeline.timeutil import parse_jira_datetime

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
EMAIL, TOKEN = "bench@example.com", "bench-token"
CONNECTION = "history-bench"
TARGET_RATIO = 1.05
PER_ISSUE_PAGE = 100  # GET /issue/{id}/changelog's cap


class QuietLog:
    def info(self, message: str) -> None:
        print(message, file=sys.stderr)

    warning = info


def seed_issues(db: Any, admin: FakeJiraAdmin) -> int:
    """What the issues step would have stored, as far as the changelog step reads it (id, key,
    updated): the benchmark measures the changelog step alone."""
    rows = [{"connection_id": CONNECTION, "issue_id": row["id"], "key": row["key"],
             "updated": parse_jira_datetime(row["updated"]), "is_deleted": False}
            for row in admin.issues()]
    for start in range(0, len(rows), 5000):
        db["jira_issues"].insert_many(rows[start:start + 5000])
    return len(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=20_000)
    parser.add_argument("--histories", default="10-300", help="histories per issue, LOW-HIGH")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--store", action="store_true",
                        help="write the documents into a temporary embedded store")
    args = parser.parse_args(argv)

    options = ["--issues", str(args.issues), "--days", str(args.days),
               "--histories", args.histories]
    with started_fake_jira(options, NOW, email=EMAIL, api_token=TOKEN,
                           who="history_changelogs") as (fake, base_url), \
            tempfile.TemporaryDirectory(prefix="history-bench-") as folder, \
            FakeJiraAdmin(base_url) as admin:
        client = get_mongo_client(None, folder=Path(folder))
        db = client.get_database("jira")
        ensure_indexes(db)
        issues = seed_issues(db, admin)
        jira = JiraResource(base_url=base_url, email=EMAIL, api_token=TOKEN,
                            min_request_interval_ms=0)
        window = StoredWindow(NOW - timedelta(days=args.days + 1), NOW + timedelta(days=1))
        meter = TreeMeter(lambda: [psutil.Process()], exclude={fake.pid})
        started = time.perf_counter()
        stream = ChangelogStream(jira, db, CONNECTION, window, QuietLog())
        per_issue: dict[str, int] = {}
        fetching = [0.0]  # seconds spent producing documents (fetching, building them)

        def documents() -> Any:
            items = iter(stream)
            while True:
                began = time.perf_counter()
                item = next(items, None)
                fetching[0] += time.perf_counter() - began
                if item is None:
                    return
                assert isinstance(item, Upsert) and isinstance(item.record, dict)
                issue_id = item.record["issue_id"]
                per_issue[issue_id] = per_issue.get(issue_id, 0) + 1
                yield item.record

        if args.store:
            counts = upsert_records(db, "issue_changelogs", documents(),
                                    connection_id=CONNECTION)
            assert counts.inserted == stream.histories, counts
        else:
            for _ in documents():
                pass
        wall = time.perf_counter() - started
        store_s = round(wall - fetching[0], 2) if args.store else None
        figures = stream.metadata()
        meter.stop()
        stats = admin.stats()["requests"]
        requests = sum(stats.get("POST /rest/api/3/changelog/bulkfetch", {}).values())
        jira.teardown_after_execution(None)  # type: ignore[arg-type]
        client.close()

    histories = stream.histories
    floor = math.ceil(issues / BULK_CHANGELOG_ISSUES) + math.ceil(histories / BULK_CHANGELOG_PAGE)
    line = {
        "phase": "changelogs",
        "issues": issues,
        "histories": histories,
        "page_size": BULK_CHANGELOG_PAGE,
        "requests": requests,
        "floor": floor,
        "per_issue_requests": sum(max(1, math.ceil(n / PER_ISSUE_PAGE))
                                  for n in per_issue.values())
        + (issues - len(per_issue)),
        "wall_s": round(wall, 2),
        "histories_per_s": round(histories / max(wall, 1e-9), 1),
        "peak_rss_mb": meter.peak_mb,
        "stored": bool(args.store),
        "store_s": store_s,
        "target": f"requests <= {TARGET_RATIO} x floor ({math.floor(TARGET_RATIO * floor)})",
        "met": requests <= TARGET_RATIO * floor,
        "first_run_after_upgrade": "this run: every issue's whole history fetched once",
        "api_calls": figures["api_calls"],
    }
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
