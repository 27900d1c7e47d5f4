"""`jira_issues` through Dagster's own execution against the fake Jira over HTTP: what a partition
stores, exact UTC windows whatever the Jira user's time zone, idempotent reruns, deletions, and
single-run backfills."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest

from jira_pipeline.assets.factory import build_definitions
from jira_pipeline.assets.sites import site_connection_id
from jira_pipeline.fakejira import FakeJiraAdmin
from jira_pipeline.storage.daily_summary import day_of
from jira_pipeline.timeutil import parse_jira_datetime
from jira_pipeline_tests.assets.conftest import (
    Pipeline,
    check_results,
    day_start,
    materializations,
)
from jira_pipeline_tests.fakejira.jira_pages import basic_client, search_keys

# Key fields the fake's admin dump and a stored issue document share.
SHARED_FIELDS = ("key", "project_id", "project_key", "status_id", "assignee_account_id",
                 "reporter_account_id")  # fmt: skip
# Zones far from UTC on both sides: a bare JQL date read in them is off by 8 or 13 hours.
USER_TIME_ZONES = ("UTC", "Etc/GMT+8", "Etc/GMT-13")  # POSIX signs: Etc/GMT+8 is UTC-8


def every_stored_issue_but_sync_time(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    return {
        issue_id: {name: value for name, value in doc.items() if name != "synced_at"}
        for issue_id, doc in pipeline.stored_issues(deleted=None).items()
    }


def daily_run(pipeline: Pipeline) -> dg.ExecuteInProcessResult:
    """The run the daily schedule requests now (its partitions and tags, census included)."""
    schedule = pipeline.defs.resolve_schedule_def("jira_daily_schedule")
    context = dg.build_schedule_context(
        instance=pipeline.instance, scheduled_execution_time=datetime.now(UTC)
    )
    request = schedule.evaluate_tick(context).run_requests
    assert request is not None and len(request) == 1
    return pipeline.defs.resolve_job_def("jira_sync_job").execute_in_process(
        instance=pipeline.instance, tags=request[0].tags
    )


def ids_updated_in(issues: dict[str, dict], start: datetime, end: datetime) -> set[str]:
    return {issue_id for issue_id, issue in issues.items() if start <= issue["updated"] < end}


def assert_store_mirrors_fake(pipeline: Pipeline) -> None:
    in_jira = pipeline.fake_issues()
    stored = pipeline.stored_issues()
    assert set(stored) == set(in_jira)
    for issue_id, issue in in_jira.items():
        doc = stored[issue_id]
        assert {f: doc[f] for f in SHARED_FIELDS} == {f: issue[f] for f in SHARED_FIELDS}
        assert doc["updated"] == issue["updated"], issue["key"]
        assert doc["updated"].utcoffset() == timedelta(0)
        assert doc["created"] == parse_jira_datetime(issue["created"])


def test_each_issue_in_jira_is_stored_with_its_ids_keys_updated_and_key_fields(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=300, days=5)

    result = pipeline.sync_everything()

    assert result.success
    assert_store_mirrors_fake(pipeline)
    doc = next(iter(pipeline.stored_issues().values()))
    # The changelog is jira_issue_changelogs': Jira embeds only its first 100 histories.
    assert doc["raw"]["id"] == doc["issue_id"] and "changelog" not in doc["raw"]
    assert doc["raw"]["fields"]["summary"] == doc["summary"]
    assert pipeline.db["jira_issues"].distinct("connection_id") == [
        site_connection_id(pipeline.fake.base_url)
    ]
    partitions = materializations(result, "jira_issues")
    # Each partition reports its own records; together they are the whole site.
    assert sum(p["records_fetched"] for p in partitions) == len(pipeline.fake_issues())
    assert sum(p["inserted"] for p in partitions) == len(pipeline.fake_issues())
    today = partitions[-1]
    for name in ("updated", "unchanged", "skipped_stale", "marked_deleted", "api_calls",
                 "retries", "rate_limit_waits", "rate_limit_wait_s", "fetch_duration_s",
                 "records_per_s", "preview"):
        assert name in today, name
    assert today["api_calls"] >= 1 and today["retries"] == 0
    # Each issue is counted once on each UTC day it changed: its history entries' days (from
    # the first partition's on) and its last update's.
    changed_days = {(issue_id, day_of(issue["updated"]))
                    for issue_id, issue in pipeline.stored_issues().items()}
    origin = datetime.fromisoformat(pipeline.partition_keys()[0]).replace(tzinfo=UTC)
    changed_days |= {(entry["issue_id"], day_of(entry["created"]))
                     for entry in pipeline.db["jira_issue_changelogs"].find()
                     if day_of(entry["created"]) >= origin}
    assert len(changed_days) > len(pipeline.fake_issues())
    summary = materializations(result, "jira_issue_daily_summary")
    assert len(summary) == len(partitions)
    assert sum(p["issues_updated"] for p in summary) == len(changed_days)
    rows = pipeline.db["jira_issue_daily_summary"].find()
    assert sum(row["issues_updated"] for row in rows) == len(changed_days)


def place_issues_at(admin: FakeJiraAdmin, project_key: str, moments: list[datetime]) -> list[str]:
    """Create one issue per moment whose `updated` is exactly that moment (to the millisecond).

    The fake's clock keeps running between requests, so an issue cannot be created at an exact
    millisecond; but an edit moves `updated` to max(clock, updated + 1 ms). Create the issues
    shortly before, then hold the clock behind each and edit it until it sits on its moment.
    """
    keys = []
    for moment in moments:
        admin.set_clock(moment - timedelta(milliseconds=50))
        created = admin.create_issue(project_key)
        updated = parse_jira_datetime(created["updated"])
        assert updated is not None and updated <= moment, f"{created['key']} created late"
        admin.set_clock(moment - timedelta(seconds=30))
        while updated < moment:
            updated = parse_jira_datetime(admin.touch_issue(created["key"])["updated"])
        assert updated == moment
        keys.append(created["key"])
    admin.set_clock(datetime.now(UTC))
    return keys


@pytest.mark.parametrize("user_timezone", USER_TIME_ZONES)
def test_partition_holds_exactly_its_utc_day_whatever_the_jira_users_time_zone(
    pipeline_factory: Callable[..., Pipeline], user_timezone: str
) -> None:
    pipeline = pipeline_factory(issues=150, days=3, user_timezone=user_timezone)
    today = datetime.now(UTC).date()
    midnight = day_start(today - timedelta(days=1))
    before, after = day_start(today - timedelta(days=2)), day_start(today)
    last_ms, first_ms = place_issues_at(
        pipeline.fake.admin,
        pipeline.fake.admin.issues()[0]["project_key"],
        [midnight - timedelta(milliseconds=1), midnight],
    )
    in_jira = pipeline.fake_issues()
    day_before = ids_updated_in(in_jira, before, midnight)
    day_of = ids_updated_in(in_jira, midnight, after)
    by_key = {issue["key"]: issue_id for issue_id, issue in in_jira.items()}
    assert by_key[last_ms] in day_before and by_key[first_ms] in day_of

    first = pipeline.run("jira_issues_job", before.date().isoformat(), lookback_minutes=0)
    assert set(pipeline.stored_issues()) == day_before
    second = pipeline.run("jira_issues_job", midnight.date().isoformat(), lookback_minutes=0)
    assert set(pipeline.stored_issues()) == day_before | day_of

    # The count check reads the same exact windows back from Jira.
    assert check_results(first)[("jira_issues", "matches_jira_count")].metadata[
        "jira_count"].value == len(day_before)
    assert check_results(second)[("jira_issues", "matches_jira_count")].metadata[
        "jira_count"].value == len(day_of)
    if user_timezone != "UTC":
        # The trap is real here: bare dates would have shifted the window by hours.
        with basic_client(pipeline.fake) as client:
            bare = search_keys(
                client, f'updated >= "{midnight:%Y-%m-%d}" AND updated < "{after:%Y-%m-%d}"'
            )
        assert {by_key[key] for key in bare if key in by_key} != day_of


def test_lookback_makes_a_partition_reread_the_end_of_the_day_before(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=100, days=3)
    midnight = day_start(datetime.now(UTC).date() - timedelta(days=1))
    [late, earlier] = place_issues_at(
        pipeline.fake.admin,
        pipeline.fake.admin.issues()[0]["project_key"],
        [midnight - timedelta(minutes=9), midnight - timedelta(minutes=11)],
    )

    pipeline.run("jira_issues_job", midnight.date().isoformat())

    # The default lookback is 10 minutes: late updates to the day before are read again.
    stored_keys = {doc["key"] for doc in pipeline.stored_issues().values()}
    assert late in stored_keys and earlier not in stored_keys


def test_rerunning_partitions_changes_no_stored_document(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=200, days=3)
    pipeline.sync_everything()
    before = every_stored_issue_but_sync_time(pipeline)
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()

    again = pipeline.run("jira_issues_job", yesterday, pipeline.today)

    after = every_stored_issue_but_sync_time(pipeline)
    assert after == before
    [meta, *_] = materializations(again, "jira_issues")
    assert meta["records_fetched"] > 0
    assert (meta["inserted"], meta["updated"], meta["marked_deleted"]) == (0, 0, 0)
    assert meta["unchanged"] == meta["records_fetched"]


def test_touched_created_and_deleted_issues_are_reflected_after_todays_partition_runs(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=200, days=4)
    pipeline.sync_everything()
    admin = pipeline.fake.admin
    oldest_first = sorted(pipeline.fake_issues().values(), key=lambda issue: issue["updated"])
    old, recent = oldest_first[0], oldest_first[-1]
    project = old["project_key"]

    admin.touch_issue(old["key"], {"summary": "Renamed in Jira", "labels": ["moved"]})
    admin.touch_issue(oldest_first[1]["key"])
    created = [admin.create_issue(project)["id"] for _ in range(2)]
    deleted = [oldest_first[2], recent]  # one far outside today's window
    for issue in deleted:
        admin.delete_issue(issue["key"])
    started = datetime.now(UTC)

    result = daily_run(pipeline)

    assert_store_mirrors_fake(pipeline)
    touched = pipeline.stored_issues()[old["id"]]
    assert (touched["summary"], touched["labels"]) == ("Renamed in Jira", ["moved"])
    assert set(created) <= set(pipeline.stored_issues())
    gone = pipeline.stored_issues(deleted=True)
    assert set(gone) == {issue["id"] for issue in deleted}
    for doc in gone.values():
        assert doc["deleted_at"] is not None and doc["deleted_at"] >= started - timedelta(seconds=1)
        assert doc["deleted_at"].utcoffset() == timedelta(0)
    partitions = materializations(result, "jira_issues")  # yesterday's and today's
    assert len(partitions) == 2
    inserted, updated = (sum(p[name] for p in partitions) for name in ("inserted", "updated"))
    assert (inserted, updated) == (2, 2)
    meta = partitions[0]  # the run's census figures, on every partition
    assert (meta["reconciled"], meta["marked_deleted"]) == (True, 2)


def test_the_census_with_nothing_changed_costs_a_count_and_one_id_page(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=200, days=4)
    pipeline.sync_everything()
    before = pipeline.fake.admin.stats()["requests"]

    result = daily_run(pipeline)

    meta = materializations(result, "jira_issues")[0]
    assert (meta["reconciled"], meta["marked_deleted"], meta["census_fetched"]) == (True, 0, 0)
    assert meta["census_issue_ids"] == 200
    # One approximate count and one fields=id page of 5,000: nothing differed, nothing fetched.
    assert meta["census_api_calls"] == 2
    after = pipeline.fake.admin.stats()["requests"]
    bulk = "POST /rest/api/3/issue/bulkfetch"
    assert after.get(bulk) == before.get(bulk)


def test_deletions_are_reconciled_by_the_daily_run_or_on_demand_only(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=100, days=3)
    pipeline.sync_everything()
    victim = min(pipeline.fake_issues().values(), key=lambda issue: issue["updated"])
    pipeline.fake.admin.delete_issue(victim["key"])
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()

    # Today's partition alone, as the refresh sensor requests it, stays cheap: no census.
    for partition in (pipeline.today, yesterday):
        past = pipeline.run("jira_issues_job", partition)
        assert victim["id"] in pipeline.stored_issues()
        assert (materializations(past, "jira_issues")[0]["reconciled"]) is False

    asked = pipeline.run("jira_issues_job", yesterday, reconcile_deletions=True)
    assert set(pipeline.stored_issues(deleted=True)) == {victim["id"]}
    assert materializations(asked, "jira_issues")[0]["marked_deleted"] == 1


def test_thirty_partition_backfill_is_one_run_that_materializes_every_partition(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=300, days=28)
    keys = pipeline.partition_keys()
    assert len(keys) == 30
    issues_def = pipeline.defs.resolve_assets_def("jira_issues")
    assert issues_def.backfill_policy == dg.BackfillPolicy.single_run()

    result = pipeline.run("jira_issues_job", keys[0], keys[-1])

    assert result.success
    assert pipeline.instance.get_runs_count() == 1
    # The job's assets (the issues, their comments, changelogs and history) each materialize
    # every partition.
    for asset in ("jira_issues", "jira_issue_comments", "jira_issue_changelogs",
                  "jira_issue_field_history", "jira_issue_status_transitions",
                  "jira_time_in_status_daily"):
        assert sorted(str(e.partition) for e in result.get_asset_materialization_events()
                      if e.asset_key == dg.AssetKey(asset)) == keys
        assert pipeline.instance.get_materialized_partitions(dg.AssetKey(asset)) == set(keys)
    assert_store_mirrors_fake(pipeline)


def test_jira_projects_limits_what_every_asset_syncs(
    pipeline_factory: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = pipeline_factory(issues=150, days=3)
    chosen = pipeline.fake.admin.issues()[0]["project_key"]
    monkeypatch.setenv("JIRA_PROJECTS", chosen)
    pipeline.defs = build_definitions(mongo=pipeline.mongo)

    pipeline.sync_everything()

    in_project = {
        issue_id for issue_id, issue in pipeline.fake_issues().items()
        if issue["project_key"] == chosen
    }
    assert set(pipeline.stored_issues()) == in_project
    assert pipeline.db["jira_projects"].distinct("key") == [chosen]


def test_reconciliation_limited_to_jira_projects_leaves_other_projects_alone(
    pipeline_factory: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = pipeline_factory(issues=150, days=3)
    pipeline.sync_everything()
    by_project: dict[str, list[dict]] = {}
    for issue in pipeline.fake.admin.issues():
        by_project.setdefault(issue["project_key"], []).append(issue)
    chosen, other = sorted(by_project)[:2]
    for issue in (by_project[chosen][0], by_project[other][0]):
        pipeline.fake.admin.delete_issue(issue["key"])
    monkeypatch.setenv("JIRA_PROJECTS", chosen)
    pipeline.defs = build_definitions(mongo=pipeline.mongo)

    daily_run(pipeline)

    # The other project is out of scope: its deletion is not this site's to notice now.
    assert set(pipeline.stored_issues(deleted=True)) == {by_project[chosen][0]["id"]}
