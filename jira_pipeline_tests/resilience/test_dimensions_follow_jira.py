"""Dimensions stay consistent with issues whatever Jira's admins do: a status renamed or
recategorised, an issue moved to another project, Data Center users deactivated, capped or left
out of user search. Each scenario runs the code location through Dagster against the fake."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from pymongo.database import Database

from jira_pipeline.assets.schedules import partition_range_tags
from jira_pipeline.assets.sensors import missing_dimension_rows
from jira_pipeline.fakejira import FakeJiraHandle
from jira_pipeline_tests.resilience.conftest import (
    SyncTarget,
    fake_issue_versions,
    run_metadata,
    stored_versions,
    this_hour,
)


def daily_run(target: SyncTarget, job: str = "jira_sync_job") -> dg.ExecuteInProcessResult:
    """What the daily schedule runs: yesterday's and today's partitions (and the dimensions)."""
    today = datetime.now(UTC).date()
    defs = target.definitions()
    with dg.DagsterInstance.ephemeral() as instance:
        return defs.resolve_job_def(job).execute_in_process(
            instance=instance,
            tags=partition_range_tags((today - timedelta(days=1)).isoformat(), today.isoformat()),
            raise_on_error=False,
        )


def dimensions_run(target: SyncTarget) -> dg.ExecuteInProcessResult:
    return target.sync("jira_dimensions_job")


def one(db: Database, collection: str, selector: dict[str, Any]) -> dict[str, Any]:
    found = db[collection].find_one(selector)
    assert found is not None, f"nothing in {collection} matches {selector}"
    return found


def live_issues(db: Database) -> list[dict[str, Any]]:
    return list(db["jira_issues"].find({"is_deleted": {"$ne": True}}, {"raw": 0}))


def busiest_status(db: Database) -> str:
    """The status most stored issues are in, with some of them older than yesterday (so the
    daily run does not re-fetch them)."""
    old = datetime.now(UTC) - timedelta(days=2)
    counts = Counter(doc["status_id"] for doc in live_issues(db) if doc["updated"] < old)
    status_id, count = counts.most_common(1)[0]
    assert count >= 5
    return status_id


def point_at_datacenter(point_at: Callable[..., SyncTarget], fake: FakeJiraHandle,
                        monkeypatch: pytest.MonkeyPatch) -> SyncTarget:
    target = point_at(fake, basic_auth=False)
    monkeypatch.setenv("JIRA_BASE_URL", fake.base_url)
    monkeypatch.setenv("JIRA_PAT", fake.config.pat)
    return target


def check_passed(result: dg.ExecuteInProcessResult, name: str) -> bool:
    evaluations = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    assert evaluations, f"{name} was not evaluated"
    return all(e.passed for e in evaluations)


# --- statuses -------------------------------------------------------------------------------


def test_renamed_status_renames_it_in_every_stored_issue(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    open_store: Callable[[Path], Database],
) -> None:
    fake = fake_jira_factory(issues=300, days=10, now=this_hour())
    target = point_at(fake)
    assert target.sync().success
    db = open_store(target.store_folder)
    status_id = busiest_status(db)
    old_name = one(db, "jira_statuses", {"status_id": status_id})["name"]
    before = fake_issue_versions(fake)

    fake.admin.change_status(status_id, name="Being Worked On")
    result = daily_run(target)

    assert result.success
    assert fake_issue_versions(fake) == before  # a rename moves no issue's `updated`
    in_status = [doc for doc in live_issues(db) if doc["status_id"] == status_id]
    assert in_status and {doc["status_name"] for doc in in_status} == {"Being Worked On"}
    assert not [doc["key"] for doc in live_issues(db) if doc["status_name"] == old_name]
    assert run_metadata(result, "jira_statuses")["issues_renamed"] > 0
    # The days the run summarised count the status under its new name only: at least every
    # issue last updated then in it (and those changed then that were in it at the day's end).
    since = datetime.combine(datetime.now(UTC).date() - timedelta(days=1), datetime.min.time(),
                             tzinfo=UTC)
    rows = list(db["jira_issue_daily_summary"].find({"day": {"$gte": since}}))
    assert rows and old_name not in {row["status_name"] for row in rows}
    assert sum(row["issues_updated"] for row in rows if row["status_name"] == "Being Worked On") \
        >= len([doc for doc in in_status if doc["updated"] >= since]) > 0


def test_recategorised_status_updates_issue_status_category(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    open_store: Callable[[Path], Database],
) -> None:
    fake = fake_jira_factory(issues=300, days=10, now=this_hour())
    target = point_at(fake)
    assert target.sync().success
    db = open_store(target.store_folder)
    in_review = [doc for doc in live_issues(db) if doc["status_id"] == "10001"]
    assert in_review and {doc["status_category"] for doc in in_review} == {"In Progress"}

    fake.admin.change_status("10001", category="DONE")
    assert dimensions_run(target).success

    assert one(db, "jira_statuses", {"status_id": "10001"})["status_category"] == "Done"
    after = [doc for doc in live_issues(db) if doc["status_id"] == "10001"]
    assert {doc["issue_id"] for doc in after} == {doc["issue_id"] for doc in in_review}
    assert {doc["status_category"] for doc in after} == {"Done"}
    # The next fetch of such an issue still stores Jira's whole answer.
    key = after[0]["key"]
    fake.admin.touch_issue(key)
    assert daily_run(target, "jira_issues_job").success
    touched = one(db, "jira_issues", {"key": key})
    assert touched["raw"]["fields"]["status"]["statusCategory"]["key"] == "done"
    assert touched["status_category"] == "Done"


# --- issues moving --------------------------------------------------------------------------


def test_moved_issue_keeps_one_document_with_its_new_key(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    open_store: Callable[[Path], Database],
) -> None:
    fake = fake_jira_factory(issues=300, days=10, now=this_hour())
    target = point_at(fake)
    assert target.sync().success
    db = open_store(target.store_folder)
    old = datetime.now(UTC) - timedelta(days=2)
    issues = live_issues(db)
    # An epic whose stories stay behind: their `updated` does not move, their parent's key does.
    children: dict[str, list[str]] = {}
    for doc in issues:
        if doc.get("parent_key") and doc["updated"] < old:
            children.setdefault(doc["parent_key"], []).append(doc["issue_id"])
    epic = next(doc for doc in issues if doc["issue_type"] == "Epic" and doc["key"] in children)
    other = next(doc["key"] for doc in db["jira_projects"].find({})
                 if doc["key"] != epic["project_key"])

    moved = fake.admin.move_issue(epic["key"], other)
    assert daily_run(target).success

    documents = list(db["jira_issues"].find({"issue_id": epic["issue_id"]}, {"raw": 0}))
    assert [(d["key"], d["project_key"], d["is_deleted"]) for d in documents] == [
        (moved["key"], other, False)
    ]
    assert db["jira_issues"].count_documents({"key": epic["key"]}) == 0
    assert stored_versions(db) == fake_issue_versions(fake)
    stories = db["jira_issues"].find({"issue_id": {"$in": children[epic["key"]]}})
    assert {doc["parent_key"] for doc in stories} == {moved["key"]}
    assert db["jira_issues"].count_documents({"parent_key": epic["key"]}) == 0


def test_changed_project_key_rekeys_every_stored_issue(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    open_store: Callable[[Path], Database],
) -> None:
    fake = fake_jira_factory(issues=300, days=10, now=this_hour())
    target = point_at(fake)
    assert target.sync().success
    db = open_store(target.store_folder)
    project = one(db, "jira_projects", {"key": "CORE"})
    before = fake_issue_versions(fake)

    fake.admin.change_project("CORE", new_key="PLAT")
    result = daily_run(target)

    assert result.success
    assert {k for k, _ in fake_issue_versions(fake).values()} != {k for k, _ in before.values()}
    assert stored_versions(db) == fake_issue_versions(fake)  # every key is Jira's new one
    in_project = [doc for doc in live_issues(db) if doc["project_id"] == project["project_id"]]
    assert in_project and {doc["project_key"] for doc in in_project} == {"PLAT"}
    parents = {doc["parent_key"] for doc in live_issues(db) if doc.get("parent_key")}
    assert parents and not [key for key in parents if key.startswith("CORE-")]
    assert check_passed(result, "no_duplicate_keys")


# --- Data Center users ----------------------------------------------------------------------


def test_dc_inactive_users_are_stored_inactive(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    open_store: Callable[[Path], Database],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = fake_jira_factory(mode="datacenter", issues=50, days=5, users=60, now=this_hour())
    target = point_at_datacenter(point_at, fake, monkeypatch)
    users = fake.site.data.users
    assert any(not u.active for u in users)

    assert dimensions_run(target).success
    db = open_store(target.store_folder)
    stored = {d["account_id"]: d for d in db["jira_users"].find({}, {"raw": 0})}
    assert {key: (d["active"], d["is_deleted"]) for key, d in stored.items()} == {
        u.key: (u.active, False) for u in users
    }

    leaver = next(u for u in users if u.active and u.account_type == "atlassian")
    fake.admin.set_user_active(leaver.key, False)
    assert dimensions_run(target).success
    after = one(db, "jira_users", {"account_id": leaver.key})
    assert (after["active"], after["is_deleted"]) == (False, False)
    assert db["jira_users"].count_documents({"is_deleted": True}) == 0


def test_dc_user_search_cap_does_not_end_the_walk(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    open_store: Callable[[Path], Database],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = fake_jira_factory(mode="datacenter", issues=20, days=5, users=250,
                             dc_user_search_cap=100, now=this_hour())
    target = point_at_datacenter(point_at, fake, monkeypatch)

    result = dimensions_run(target)  # no issue stored yet: the listing alone finds everybody

    assert result.success
    db = open_store(target.store_folder)
    assert sorted(db["jira_users"].distinct("account_id")) == sorted(
        u.key for u in fake.site.data.users)
    metadata = run_metadata(result, "jira_users")
    assert metadata["records_fetched"] == 250
    assert (metadata["referenced_not_listed"], metadata["fetched_one_by_one"]) == (0, 0)
    requests = fake.admin.stats()["requests"]["GET /rest/api/2/user/search"]
    assert requests == {"200": 4}  # 100 + 100 + 50, then the empty page that ends the walk


def test_referenced_users_beyond_the_cap_are_fetched_by_key(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    open_store: Callable[[Path], Database],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Jira DC 10 answers 100 users at a time, and this one lists no more than its first 100.
    fake = fake_jira_factory(mode="datacenter", issues=400, days=5, users=250,
                             dc_user_search_cap=100, dc_user_search_limit=100, now=this_hour())
    target = point_at_datacenter(point_at, fake, monkeypatch)
    listed = {u.key for u in fake.site.data.users[:100]}  # what user search ever lists

    first = target.sync()  # in-process, the issues step runs before the users step
    assert first.success
    result = daily_run(target)

    assert result.success
    db = open_store(target.store_folder)
    referenced = {doc.get(field) for doc in live_issues(db)
                  for field in ("assignee_account_id", "reporter_account_id")} - {None}
    stored_users = set(db["jira_users"].distinct("account_id"))
    unlisted = referenced - listed
    assert unlisted  # issues reference people user search never lists
    assert referenced <= stored_users
    assert missing_dimension_rows(db, target_connection(db), references=(), sprints=False) \
        == {"statuses": [], "users": []}
    assert check_passed(result, "references_present")
    fetched = run_metadata(first, "jira_users")
    assert fetched["fetched_one_by_one"] == fetched["referenced_not_listed"] == len(unlisted)
    assert db["jira_users"].count_documents({"is_deleted": True}) == 0


def test_unlisted_users_already_stored_are_refreshed_a_few_per_run(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    open_store: Callable[[Path], Database],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("jira_pipeline.assets.users.REFRESH_PER_RUN", 10)
    fake = fake_jira_factory(mode="datacenter", issues=400, days=5, users=250,
                             dc_user_search_cap=100, dc_user_search_limit=100, now=this_hour())
    target = point_at_datacenter(point_at, fake, monkeypatch)
    assert target.sync().success
    db = open_store(target.store_folder)
    unlisted = len(set(db["jira_users"].distinct("account_id"))
                   - {u.key for u in fake.site.data.users[:100]})
    assert unlisted > 20
    leaver = next(u for u in fake.site.data.users[100:]
                  if u.active and db["jira_users"].find_one({"account_id": u.key}))
    fake.admin.set_user_active(leaver.key, False)

    runs = [dimensions_run(target) for _ in range(-(-unlisted // 10))]

    assert all(run.success for run in runs)
    for run in runs:
        metadata = run_metadata(run, "jira_users")
        assert metadata["fetched_one_by_one"] == 10 or run is runs[-1]
        assert metadata["fetched_one_by_one"] + metadata["kept_without_fetch"] == unlisted
        assert metadata["marked_deleted"] == 0
    # Every unlisted user was re-read once across the runs: the one who left is inactive now.
    assert one(db, "jira_users", {"account_id": leaver.key})["active"] is False
    assert db["jira_users"].count_documents({"is_deleted": True}) == 0


def target_connection(db: Database) -> str:
    [connection_id] = db["jira_issues"].distinct("connection_id")
    return str(connection_id)
