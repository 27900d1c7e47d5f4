"""`jira_issue_daily_summary` through Dagster against the fake Jira: one MongoDB row per day,
project and status, partitioned like `jira_issues`, each partition reading only its day's issues
and history and replacing its day's rows; an issue counts on each day it changed, in the status
it had at the end of that day."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from jira_pipeline.assets.schedules import partition_range_tags
from jira_pipeline.storage.daily_summary import aware, summary_row_id
from jira_pipeline_tests.assets.conftest import Pipeline, materializations

SUMMARY = "jira_issue_daily_summary"
Row = tuple[datetime, str, str]


def summarise(pipeline: Pipeline, first: str, last: str | None = None) -> dg.ExecuteInProcessResult:
    """A run of the summary alone over the partitions `first`..`last`."""
    job = pipeline.defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=pipeline.instance, tags=partition_range_tags(first, last or first),
        asset_selection=[dg.AssetKey(SUMMARY)],
    )
    assert result.success
    return result


def stored_rows(pipeline: Pipeline, day: datetime | None = None) -> dict[Row, tuple[int, ...]]:
    selector = {} if day is None else {"day": day}
    rows: dict[Row, tuple[int, ...]] = {}
    for doc in pipeline.db[SUMMARY].find(selector):
        key = (aware(doc["day"]), doc["project_key"], doc["status_name"])
        assert key not in rows, key
        rows[key] = (doc["issues_updated"], doc["created"], doc["resolved"])
    return rows


def midnight(moment: datetime) -> datetime:
    moment = aware(moment)
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)


def status_at_end_of_days(pipeline: Pipeline, issue: dict[str, Any]) -> dict[datetime, str]:
    """The issue's status name at the end of each day it changed, replayed from its stored
    changelog entries (the last update's day: its current status); history is read from the
    first partition's day on."""
    origin = day_of_key(pipeline.partition_keys()[0])
    names = {doc["status_id"]: doc["name"] for doc in pipeline.db["jira_statuses"].find()}
    moves = sorted(
        (aware(entry["created"]), item)
        for entry in pipeline.db["jira_issue_changelogs"].find(
            {"issue_id": issue["issue_id"], "is_deleted": {"$ne": True}})
        for item in entry["items"] if item.get("field_id") == "status"
    )  # fmt: skip
    days = {midnight(entry["created"]) for entry in pipeline.db["jira_issue_changelogs"].find(
        {"issue_id": issue["issue_id"], "is_deleted": {"$ne": True}})
        if aware(entry["created"]) >= origin}
    statuses = {}
    for day in days:
        before = [item for at, item in moves if at < day + timedelta(days=1)]
        status_id = before[-1]["to"] if before else moves[0][1]["from"] if moves else None
        statuses[day] = names.get(status_id, issue["status_name"]) if status_id else \
            issue["status_name"]
    statuses[midnight(issue["updated"])] = issue["status_name"]
    return statuses


def expected_rows(pipeline: Pipeline, day: datetime | None = None) -> dict[Row, tuple[int, ...]]:
    """The summary as specified, counted from every stored live issue and its changelog
    (optionally one day's)."""
    updated: Counter[Row] = Counter()
    created: Counter[tuple[datetime, str]] = Counter()
    resolved: Counter[tuple[datetime, str]] = Counter()
    for issue in pipeline.stored_issues().values():
        project = issue["project_key"]
        for changed, status in status_at_end_of_days(pipeline, issue).items():
            updated[(changed, project, status)] += 1
        created[(midnight(issue["created"]), project)] += 1
        if issue.get("resolution_date") is not None:
            resolved[(midnight(issue["resolution_date"]), project)] += 1
    rows: dict[Row, tuple[int, ...]] = {}
    for (d, project, status), count in updated.items():
        rows[(d, project, status)] = (count, created[(d, project)], resolved[(d, project)])
    with_updates = {(d, project) for d, project, _ in updated}
    for d, project in (set(created) | set(resolved)) - with_updates:
        rows[(d, project, "(none updated)")] = (0, created[(d, project)], resolved[(d, project)])
    return {row: counts for row, counts in rows.items() if day is None or row[0] == day}


def day_of_key(key: str) -> datetime:
    return datetime.fromisoformat(key).replace(tzinfo=UTC)


def test_the_summary_is_one_row_per_day_project_and_status_of_the_stored_issues(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=300, days=5)

    result = pipeline.sync_everything()

    assert result.success
    rows = stored_rows(pipeline)
    assert rows == expected_rows(pipeline)
    # Each issue counts once on each day it changed: at least once (its last update), more
    # often for the issues with history on other days.
    assert sum(counts[0] for counts in rows.values()) > len(pipeline.fake_issues())
    doc = pipeline.db[SUMMARY].find_one()
    assert doc is not None and doc["_id"] == summary_row_id(doc["connection_id"], doc)
    assert aware(doc["day"]) == midnight(doc["day"])
    figures = materializations(result, SUMMARY)
    assert len(figures) == len(pipeline.partition_keys())
    assert sum(f["dagster/row_count"] for f in figures) == len(rows)
    assert all("preview" in f for f in figures)
    # Again: the same rows, none rewritten.
    again = summarise(pipeline, pipeline.partition_keys()[0], pipeline.partition_keys()[-1])
    [written] = {(f["inserted"], f["updated"], f["removed"]) for f in materializations(again,
                                                                                       SUMMARY)}
    assert written == (0, 0, 0)
    assert stored_rows(pipeline) == rows


def test_partitions_run_separately_leave_the_same_collection_as_one_run_over_them(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=200, days=3)
    assert pipeline.sync_everything().success
    keys = pipeline.partition_keys()
    whole = stored_rows(pipeline)

    pipeline.db[SUMMARY].delete_many({})
    for key in keys:
        summarise(pipeline, key)
    assert stored_rows(pipeline) == whole

    pipeline.db[SUMMARY].delete_many({})
    summarise(pipeline, keys[1])
    summarise(pipeline, keys[2])
    separately = stored_rows(pipeline)
    pipeline.db[SUMMARY].delete_many({})
    summarise(pipeline, keys[1], keys[2])
    together = stored_rows(pipeline)
    assert separately == together
    assert together == {**expected_rows(pipeline, day_of_key(keys[1])),
                        **expected_rows(pipeline, day_of_key(keys[2]))}  # fmt: skip


def test_a_partition_reads_only_the_issues_of_its_day_in_one_query(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=300, days=5)
    assert pipeline.sync_everything().success
    key = pipeline.partition_keys()[2]
    day = day_of_key(key)
    stored = list(pipeline.stored_issues().values())
    touching = [
        issue for issue in stored
        if any(issue.get(name) is not None and midnight(issue[name]) == day
               for name in ("updated", "created", "resolution_date"))
    ]  # fmt: skip
    assert 0 < len(touching) < len(stored)

    result = summarise(pipeline, key)

    [figures] = materializations(result, SUMMARY)
    assert figures["issue_queries"] == 1
    assert figures["issues_read"] == len(touching)
    assert stored_rows(pipeline, day) == expected_rows(pipeline, day)


def test_a_moved_issue_leaves_no_row_in_its_old_project(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=20, days=4)
    assert pipeline.sync_everything().success
    keys = pipeline.partition_keys()
    projects = sorted({issue["project_key"] for issue in pipeline.stored_issues().values()})
    assert len(projects) >= 2
    # A day of the middle partitions on which some project has no row at all.
    day, old = next(
        (day_of_key(key), project) for key in keys[1:-1] for project in projects
        if not any(row[1] == project for row in stored_rows(pipeline, day_of_key(key)))
    )  # fmt: skip
    new = next(project for project in projects if project != old)
    key = day.date().isoformat()
    admin = pipeline.fake.admin
    admin.set_clock(day + timedelta(hours=12))
    created = admin.create_issue(old)
    admin.set_clock(datetime.now(UTC))
    assert pipeline.run("jira_sync_job", key).success
    assert [row for row in stored_rows(pipeline, day) if row[1] == old]

    admin.set_clock(day + timedelta(hours=13))
    admin.move_issue(created["key"], new)
    admin.set_clock(datetime.now(UTC))
    assert pipeline.run("jira_sync_job", key).success

    rows = stored_rows(pipeline, day)
    assert not [row for row in rows if row[1] == old]
    assert rows == expected_rows(pipeline, day)


def test_a_renamed_status_leaves_no_row_under_its_old_name_on_a_summarised_day(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=300, days=5)
    assert pipeline.sync_everything().success
    key = pipeline.partition_keys()[2]
    day = day_of_key(key)
    on_day = Counter(
        (issue["status_id"], issue["status_name"]) for issue in pipeline.stored_issues().values()
        if midnight(issue["updated"]) == day
    )  # fmt: skip
    (status_id, old_name), count = on_day.most_common(1)[0]
    assert any(row[2] == old_name for row in stored_rows(pipeline, day))

    pipeline.fake.admin.change_status(status_id, name="Being Worked On")
    assert pipeline.run("jira_sync_job", key).success

    rows = stored_rows(pipeline, day)
    assert not [row for row in rows if row[2] == old_name]
    # At least the issues last updated that day in the status; also any changed that day (a
    # history entry) that were in it at the day's end, which the oracle below counts exactly.
    assert sum(n for (_, _, status), (n, _, _) in rows.items() if status == "Being Worked On") \
        >= count
    assert rows == expected_rows(pipeline, day)



def test_an_issue_edited_again_still_counts_on_the_earlier_day_in_the_status_it_had_then(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=60, days=4)
    assert pipeline.sync_everything().success
    keys = pipeline.partition_keys()
    admin = pipeline.fake.admin
    issue = min((issue for issue in pipeline.stored_issues().values()
                 if issue["status_name"] not in ("In Progress", "Done")),
                key=lambda issue: aware(issue["updated"]))
    # A day after the issue's last update and before today.
    day = midnight(issue["updated"]) + timedelta(days=1)
    key = day.date().isoformat()
    assert key in keys[:-1], (key, keys)
    # On the earlier day the issue moves to In Progress; today it is done.
    admin.set_clock(day + timedelta(hours=12))
    admin.touch_issue(issue["key"], {"status": {"name": "In Progress"}})
    admin.set_clock(datetime.now(UTC))
    assert pipeline.run("jira_sync_job", key).success
    assert stored_rows(pipeline, day).get((day, issue["project_key"], "In Progress"))
    before = stored_rows(pipeline, day)

    admin.touch_issue(issue["key"], {"status": {"name": "Done"}})
    assert pipeline.run("jira_sync_job", key, keys[-1]).success

    # The earlier day's rows are what they were: the issue is still counted there, in progress.
    assert stored_rows(pipeline, day) == before
    today = midnight(datetime.now(UTC))
    assert stored_rows(pipeline, today)[(today, issue["project_key"], "Done")][0] >= 1
    assert stored_rows(pipeline) == expected_rows(pipeline)
