"""Issue 13's `field_history` phase: field history, status transitions and time in status
derived from stored changelogs, as the assets derive them, with the rate and the memory.

Each size runs in a child process of its own (its peak RSS is then its own): an embedded store
in a temporary folder gets N issues with 10-300 seeded histories each (status walks, assignee,
priority, labels written whole, components one value per item, a custom field), written in
batches; then, measured, the assets' own code reads them in batches (`HistorySource`), derives
(`issue_field_intervals`, `status_transition_rows`, `time_in_status_rows`) and the IO manager's
writer replaces the rows (`write_derived_rows`). `items_per_s` is history items per CPU second
of derivation (field history, transitions and time in status; `items_per_wall_s` per wall
second, which other processes on a shared machine inflate); `end_to_end_items_per_s` counts the
store's reads and writes too. One JSON line (phase `field_history`) for the largest size.

    .venv/bin/python benchmarks/history_field_history.py --issues 60 --scale 4
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TARGET_ITEMS_PER_S = 20_000
CONNECTION = "bench-connection"
STATUSES = [("10000", "To Do", "To Do"), ("3", "In Progress", "In Progress"),
            ("10001", "In Review", "In Progress"), ("10002", "Done", "Done"),
            ("10003", "Won't Do", "Done")]
PRIORITIES = [("1", "Highest"), ("2", "High"), ("3", "Medium"), ("4", "Low")]
LABELS = ["backend", "frontend", "urgent", "customer", "tech-debt", "security"]
COMPONENTS = [("501", "API"), ("502", "UI"), ("503", "Docs"), ("504", "Billing")]
PROJECTS = [("100", "CORE"), ("200", "WEB"), ("300", "OPS")]
USERS = [f"acc-{n:03d}" for n in range(40)]
WRITE_BATCH = 1_000


def _item(field_id: str, frm: Any, frm_s: Any, to: Any, to_s: Any,
          field: str | None = None) -> dict[str, Any]:
    return {"field": field or field_id, "field_id": field_id, "field_type": "jira",
            "from": frm, "from_string": frm_s, "to": to, "to_string": to_s}


def seeded_issue(n: int, start: datetime, rng: random.Random) -> tuple[dict, list[dict]]:
    """One issue and its changelog, consistent: each change starts from the value before it."""
    project_id, project_key = PROJECTS[n % len(PROJECTS)]
    # A steady site: an issue every two hours, so the issues active on a day (and the
    # transitions a day of time in status reads) do not grow with N; the history does.
    created = start + timedelta(hours=2 * n)
    status, assignee, priority = 0, None, 2
    labels: set[str] = set()
    components: set[int] = set()
    points: str | None = None
    at = created
    histories = []
    for h in range(rng.randint(10, 300)):
        at += timedelta(minutes=rng.randint(1, 180))
        items = []
        for _ in range(rng.choice((1, 1, 1, 2))):
            kind = rng.random()
            if kind < 0.35:
                after = rng.randrange(len(STATUSES))
                items.append(_item("status", STATUSES[status][0], STATUSES[status][1],
                                   STATUSES[after][0], STATUSES[after][1]))
                status = after
            elif kind < 0.5:
                after_user = rng.choice(USERS)
                items.append(_item("assignee", assignee, assignee and assignee.upper(),
                                   after_user, after_user.upper()))
                assignee = after_user
            elif kind < 0.6:
                after = rng.randrange(len(PRIORITIES))
                items.append(_item("priority", *PRIORITIES[priority], *PRIORITIES[after]))
                priority = after
            elif kind < 0.75:
                before = " ".join(sorted(labels)) or None
                labels ^= {rng.choice(LABELS)}
                items.append(_item("labels", None, before, None, " ".join(sorted(labels)) or None))
            elif kind < 0.9:
                c = rng.randrange(len(COMPONENTS))
                cid, name = COMPONENTS[c]
                if c in components:
                    items.append(_item("components", cid, name, None, None, "Component"))
                else:
                    items.append(_item("components", None, None, cid, name, "Component"))
                components ^= {c}
            else:
                after_points = str(rng.randint(1, 13))
                items.append(_item("customfield_10016", None, points, None, after_points,
                                   "Story Points"))
                points = after_points
        histories.append({
            "connection_id": CONNECTION, "issue_id": str(10_000 + n),
            "issue_key": f"{project_key}-{n}", "history_id": str(n * 1_000 + h),
            "author_account_id": rng.choice(USERS), "created": at, "items": items,
        })  # fmt: skip
    sid, sname, scat = STATUSES[status]
    issue = {
        "connection_id": CONNECTION, "issue_id": str(10_000 + n), "key": f"{project_key}-{n}",
        "project_id": project_id, "project_key": project_key, "status_id": sid,
        "status_name": sname, "status_category": scat, "priority": PRIORITIES[priority][1],
        "assignee_account_id": assignee, "reporter_account_id": USERS[0],
        "labels": sorted(labels), "created": created, "updated": at, "is_deleted": False,
        "raw": {"fields": {
            "priority": {"id": PRIORITIES[priority][0], "name": PRIORITIES[priority][1]},
            "assignee": {"accountId": assignee, "displayName": assignee.upper()}
            if assignee else None,
            "creator": {"accountId": USERS[0]},
            "project": {"id": project_id, "key": project_key},
            "components": [{"id": COMPONENTS[c][0], "name": COMPONENTS[c][1]}
                           for c in sorted(components)],
            "customfield_10016": float(points) if points else None,
        }},
    }  # fmt: skip
    return issue, histories


def seed_store(db: Any, issues: int, start: datetime) -> tuple[int, int, int, datetime]:
    """Issues, changelogs, statuses and projects written in batches; (histories, items,
    per-issue requests at 100 histories a page, the last history's time)."""
    rng = random.Random(13)
    db.jira_statuses.insert_many([{"connection_id": CONNECTION, "status_id": sid, "name": name,
                                   "status_category": cat} for sid, name, cat in STATUSES])
    db.jira_projects.insert_many([{"connection_id": CONNECTION, "project_id": pid, "key": key}
                                  for pid, key in PROJECTS])
    histories = items = per_issue = 0
    last = start
    issue_batch: list[dict] = []
    history_batch: list[dict] = []
    for n in range(issues):
        issue, changelog = seeded_issue(n, start, rng)
        issue_batch.append(issue)
        history_batch.extend(changelog)
        histories += len(changelog)
        items += sum(len(entry["items"]) for entry in changelog)
        per_issue += math.ceil(len(changelog) / 100)
        last = max([last, *(entry["created"] for entry in changelog)])
        if len(history_batch) >= WRITE_BATCH:
            db.jira_issue_changelogs.insert_many(history_batch)
            history_batch = []
        if len(issue_batch) >= 200:
            db.jira_issues.insert_many(issue_batch)
            issue_batch = []
    if history_batch:
        db.jira_issue_changelogs.insert_many(history_batch)
    if issue_batch:
        db.jira_issues.insert_many(issue_batch)
    return histories, items, per_issue, last


def measure_size(issues: int) -> dict[str, Any]:
    """One size, in this process: seed, then derive and write as the assets do."""
    import pandas  # noqa: F401  # imported before the clock starts: a run imports it once

    from jira_pipeline.assets.history import (
        IssueHistories,
        TimeInStatusDays,
        field_history_deriver,
        status_transition_deriver,
    )
    from jira_pipeline.storage.client import get_mongo_client
    from jira_pipeline.storage.derived_rows import DerivedRows, write_derived_rows
    from jira_pipeline.storage.entities import (
        FIELD_HISTORY,
        STATUS_TRANSITIONS,
        TIME_IN_STATUS_DAILY,
    )
    from jira_pipeline.storage.history_reads import DEFAULT_BATCH_ISSUES, HistorySource
    from jira_pipeline.storage.indexes import ensure_indexes

    with tempfile.TemporaryDirectory(prefix="history_bench_") as folder:
        client = get_mongo_client(None, folder=Path(folder))
        db = client.get_database("bench")
        ensure_indexes(db)
        start = datetime(2026, 1, 1, tzinfo=UTC)
        seeding = time.perf_counter()
        histories, items, per_issue, last = seed_store(db, issues, start)
        seed_s = time.perf_counter() - seeding
        rss_seeded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        started = time.perf_counter()
        now = datetime.now(UTC)
        source = HistorySource(db, CONNECTION)
        ids = source.window_issue_ids(start - timedelta(days=1), now + timedelta(days=1))
        fields = IssueHistories(source, ids, field_history_deriver(source.catalog()))
        field_counts = write_derived_rows(db, DerivedRows(FIELD_HISTORY, CONNECTION,
                                                          fields.scopes()))
        rss_fields = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        transitions_source = HistorySource(db, CONNECTION)
        transitions = IssueHistories(
            transitions_source, ids,
            status_transition_deriver(source.catalog(), source.directory()),
            raw_fields=("status", "project"))
        transition_counts = write_derived_rows(db, DerivedRows(STATUS_TRANSITIONS, CONNECTION,
                                                               transitions.scopes()))
        rss_transitions = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        first_day = start.replace(hour=0, minute=0, second=0, microsecond=0)
        end_day = last.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        days = TimeInStatusDays(HistorySource(db, CONNECTION), first_day, end_day, now)
        day_counts = write_derived_rows(db, DerivedRows(TIME_IN_STATUS_DAILY, CONNECTION,
                                                        days.scopes()))
        wall_s = time.perf_counter() - started
        client.close()
    compute_s = fields.derive_s + transitions.derive_s + days.compute_s
    compute_cpu_s = fields.derive_cpu_s + transitions.derive_cpu_s + days.compute_cpu_s
    return {
        "issues": issues, "histories": histories, "items": items,
        "items_read": source.items_read, "per_issue_requests": per_issue,
        "page_size": DEFAULT_BATCH_ISSUES, "seed_s": round(seed_s, 2),
        "wall_s": round(wall_s, 2), "compute_s": round(compute_s, 2),
        "field_history_derive_s": round(fields.derive_s, 2),
        "transitions_derive_s": round(transitions.derive_s, 2),
        "time_in_status_s": round(days.compute_s, 2),
        "compute_cpu_s": round(compute_cpu_s, 2),
        "items_per_s": round(items / max(compute_cpu_s, 1e-9)),
        "items_per_wall_s": round(items / max(compute_s, 1e-9)),
        "end_to_end_items_per_s": round(items / max(wall_s, 1e-9)),
        "field_history_rows": field_counts.rows, "transition_rows": transition_counts.rows,
        "time_in_status_rows": day_counts.rows, "store_queries": source.reads
        + transitions_source.reads + days.source.reads,
        "rss_after_seed_mb": round(rss_seeded, 1),
        "rss_after_field_history_mb": round(rss_fields, 1),
        "rss_after_transitions_mb": round(rss_transitions, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=60, help="the smaller size")
    parser.add_argument("--scale", type=int, default=4, help="the larger size is this many times")
    parser.add_argument("--one-size", type=int, help=argparse.SUPPRESS)  # a child's own size
    args = parser.parse_args(argv)
    if args.one_size is not None:
        print(json.dumps(measure_size(args.one_size)))
        return
    sizes = [args.issues, args.issues * args.scale]
    measured = []
    for size in sizes:
        done = subprocess.run([sys.executable, __file__, "--one-size", str(size)],
                              capture_output=True, text=True, check=True)
        measured.append(json.loads(done.stdout.strip().splitlines()[-1]))
    small, large = measured
    line = {
        "phase": "field_history",
        **{key: large[key] for key in ("issues", "histories", "page_size", "per_issue_requests",
                                       "wall_s", "peak_rss_mb", "items", "items_per_s",
                                       "items_per_wall_s", "end_to_end_items_per_s",
                                       "compute_s", "compute_cpu_s", "seed_s",
                                       "field_history_rows", "transition_rows",
                                       "time_in_status_rows", "store_queries")},
        "requests": 0,  # derived from the stored changelogs: no Jira request
        "peak_rss_mb_by_issues": {str(m["issues"]): m["peak_rss_mb"] for m in measured},
        "rss_growth_mb": round(large["peak_rss_mb"] - small["peak_rss_mb"], 1),
        "sizes": measured,
        "target": f"items_per_s >= {TARGET_ITEMS_PER_S} (history items derived into field "
                  "history, transitions and time in status per CPU second of derivation; "
                  "items_per_wall_s is the same per wall second, which a shared machine's load "
                  "inflates); peak RSS bounded by a batch, not by N",
        "met": large["items_per_s"] >= TARGET_ITEMS_PER_S
        and small["items_per_s"] >= TARGET_ITEMS_PER_S,
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
