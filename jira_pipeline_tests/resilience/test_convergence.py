"""After each daily run MongoDB holds exactly Jira's issues, whatever Jira did in between:
projects hidden and restored, issues revealed with an old `updated`, id walks that break their
chain, counts that disagree, and deletions during a Data Center id walk."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from pymongo.database import Database

from jira_pipeline.fakejira import FakeJiraHandle
from jira_pipeline_tests.resilience.conftest import (
    SyncTarget,
    fake_issue_versions,
    run_metadata,
    stored_issues,
    stored_versions,
    this_hour,
)

# Small id pages, so that a census of a few hundred issues takes several pages; the window of a
# daily run (two days of a month) stays within one.
PAGE_CAP = 50


# Convergence is the issues step's (its walks, census and reconciliation): the runs here
# materialize it alone, without the dimensions' and followers' steps that only stretch them.
ISSUES_ONLY = ("jira_issues",)

def daily_run(target: SyncTarget) -> dg.ExecuteInProcessResult:
    """The run `jira_daily_schedule` requests now: its job, partitions and tags (its issues:
    what these tests converge; the followers' steps are tested on their own)."""
    defs = target.definitions()
    schedule = defs.resolve_schedule_def("jira_daily_schedule")
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime.now(UTC)
        )
        requests = schedule.evaluate_tick(context).run_requests
        assert requests is not None and len(requests) == 1
        return defs.resolve_job_def("jira_sync_job").execute_in_process(
            instance=instance, tags=requests[0].tags, raise_on_error=False,
            asset_selection=[dg.AssetKey(name) for name in ISSUES_ONLY],
        )


def failure_messages(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(
        event.step_failure_data.error.to_string()
        for event in result.all_events
        if event.is_step_failure and event.step_failure_data.error is not None
    )


def deleted_ids(db: Database) -> set[str]:
    return {issue_id for issue_id, doc in stored_issues(db).items() if doc.get("is_deleted")}


def issues_of(fake: FakeJiraHandle, project: str) -> set[str]:
    return {issue["id"] for issue in fake.admin.issues() if issue["project_key"] == project}


def requests_to(fake: FakeJiraHandle, endpoint: str) -> int:
    return sum(fake.admin.stats()["requests"].get(endpoint, {}).values())


def synced(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    **config: object,
) -> tuple[FakeJiraHandle, SyncTarget]:
    fake = fake_jira_factory(**{"issues": 300, "days": 30, "now": this_hour(), **config})
    target = point_at(fake)
    assert target.sync(assets=ISSUES_ONLY).success
    return fake, target


def test_issues_of_a_restored_project_come_back(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    open_store: Callable[[Path], Database],
) -> None:
    fake, target = synced(fake_jira_factory, point_at)
    db = open_store(target.store_folder)
    project = fake.admin.issues()[0]["project_key"]
    hidden = issues_of(fake, project)

    fake.admin.configure(forbidden_projects=[project])  # archived, or Browse permission lost
    assert daily_run(target).success
    assert deleted_ids(db) == hidden

    fake.admin.configure(forbidden_projects=[])
    result = daily_run(target)

    assert result.success
    assert deleted_ids(db) == set()
    assert stored_versions(db) == fake_issue_versions(fake)
    # Those the window did not bring back (most: their `updated` is old), the census did.
    assert 0 < run_metadata(result, "jira_issues")["census_fetched"] <= len(hidden)


def test_issues_revealed_with_old_updated_are_fetched(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    open_store: Callable[[Path], Database],
) -> None:
    fake = fake_jira_factory(issues=300, days=30, now=this_hour())
    project = fake.admin.issues()[0]["project_key"]
    revealed = issues_of(fake, project)
    fake.admin.configure(forbidden_projects=[project])  # Browse permission granted later
    target = point_at(fake)
    assert target.sync(assets=ISSUES_ONLY).success
    db = open_store(target.store_folder)
    assert not revealed & set(stored_issues(db))

    fake.admin.configure(forbidden_projects=[])
    result = daily_run(target)

    assert result.success
    # The project's whole history, not only what changed in the daily run's window.
    assert stored_versions(db) == fake_issue_versions(fake)
    assert revealed <= set(stored_versions(db))


def test_a_page_without_a_token_fails_the_walk_and_deletes_nothing(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    open_store: Callable[[Path], Database],
) -> None:
    fake, target = synced(fake_jira_factory, point_at)
    db = open_store(target.store_folder)
    fake.admin.configure(search_page_cap=PAGE_CAP, glitch_next_page="no_token")

    result = daily_run(target)

    assert not result.success
    message = failure_messages(result)
    assert "POST /rest/api/3/search/jql" in message and "nextPageToken" in message
    assert fake.admin.configure()["glitch_next_page"] is None  # the census page got it
    assert deleted_ids(db) == set()
    # The glitch was one page: the next daily run converges.
    assert daily_run(target).success
    assert stored_versions(db) == fake_issue_versions(fake)


def test_a_short_page_fails_the_walk_and_deletes_nothing(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    open_store: Callable[[Path], Database],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = fake_jira_factory(issues=300, days=30, now=this_hour(), mode="datacenter")
    target = point_at(fake, basic_auth=False)
    monkeypatch.setenv("JIRA_BASE_URL", fake.base_url)
    monkeypatch.setenv("JIRA_PAT", fake.config.pat)
    assert target.sync(assets=ISSUES_ONLY).success
    db = open_store(target.store_folder)
    fake.admin.configure(search_page_cap=PAGE_CAP, glitch_next_page="short")

    result = daily_run(target)

    assert not result.success
    message = failure_messages(result)
    assert "POST /rest/api/2/search" in message and "end early" in message
    assert deleted_ids(db) == set()
    assert daily_run(target).success
    assert stored_versions(db) == fake_issue_versions(fake)


def test_a_short_cloud_page_is_caught_by_the_count_and_walked_again(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    open_store: Callable[[Path], Database],
) -> None:
    fake, target = synced(fake_jira_factory, point_at)
    db = open_store(target.store_folder)
    fake.admin.configure(search_page_cap=PAGE_CAP, glitch_next_page="short")

    result = daily_run(target)

    # Cloud may serve fewer issues than asked, so the short page itself proves nothing; the
    # walk fell short of Jira's count, and the second walk (the glitch was one-shot) matched.
    assert result.success
    meta = run_metadata(result, "jira_issues")
    assert (meta["census_walks"], meta["marked_deleted"]) == (2, 0)
    assert deleted_ids(db) == set()
    assert stored_versions(db) == fake_issue_versions(fake)


def test_deleting_during_a_dc_id_walk_marks_only_the_deleted_issue(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    open_store: Callable[[Path], Database],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = fake_jira_factory(issues=300, days=30, now=this_hour(), mode="datacenter")
    target = point_at(fake, basic_auth=False)
    monkeypatch.setenv("JIRA_BASE_URL", fake.base_url)
    monkeypatch.setenv("JIRA_PAT", fake.config.pat)
    assert target.sync(assets=ISSUES_ONLY).success
    db = open_store(target.store_folder)
    by_key = sorted(
        fake.admin.issues(), key=lambda i: (i["project_key"], int(i["key"].split("-")[1]))
    )
    by_id = sorted(fake.admin.issues(), key=lambda issue: int(issue["id"]))
    gone_before = by_id[-1]  # deleted before the run: the census has something to find
    fake.admin.delete_issue(gone_before["key"])
    # Deleted as soon as the first id page holding it is served, whatever the walk's order.
    during = by_key[0] if by_key[0]["id"] != gone_before["id"] else by_key[1]
    fake.admin.configure(
        search_page_cap=PAGE_CAP, change_after_served={"key": during["key"], "action": "delete"}
    )

    result = daily_run(target)

    assert result.success
    assert fake.admin.configure()["change_after_served"] is None  # it happened mid-walk
    # No live issue looks deleted; the one deleted mid-walk was seen live, so it may wait for
    # the next census.
    assert gone_before["id"] in deleted_ids(db)
    assert deleted_ids(db) <= {gone_before["id"], during["id"]}
    assert set(fake_issue_versions(fake)) <= set(stored_versions(db))
    assert daily_run(target).success
    assert deleted_ids(db) == {gone_before["id"], during["id"]}
    assert stored_versions(db) == fake_issue_versions(fake)


def test_count_mismatch_rewalks_once_then_fails_marking_nothing(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    open_store: Callable[[Path], Database],
) -> None:
    fake, target = synced(fake_jira_factory, point_at)
    db = open_store(target.store_folder)
    fake.admin.delete_issue(fake.admin.issues()[0]["key"])
    fake.admin.configure(approximate_count_skew=1)  # Jira's count stays one above any walk
    counts_before = requests_to(fake, "POST /rest/api/3/search/approximate-count")

    result = daily_run(target)

    assert not result.success
    message = failure_messages(result)
    assert "POST /rest/api/3/search/jql" in message and "twice" in message
    # One count before each of the two walks (the window search fits its first page: no count).
    assert requests_to(fake, "POST /rest/api/3/search/approximate-count") - counts_before == 2
    assert deleted_ids(db) == set()
