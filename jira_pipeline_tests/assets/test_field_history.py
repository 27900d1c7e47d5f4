"""The history assets through Dagster: field history, status transitions and time in status from
the fake Jira's issues and changelogs (changelog documents written here in the shape
`jira_issue_changelogs` holds, read from the fake's `/issue/{id}/changelog` over HTTP)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import dagster as dg
import httpx
import pytest

from jira_pipeline.assets.factory import build_definitions
from jira_pipeline.assets.schedules import partition_range_tags
from jira_pipeline.timeutil import parse_jira_datetime
from jira_pipeline_tests.assets.conftest import Pipeline, check_results, materializations

FIELD_HISTORY = "jira_issue_field_history"
TRANSITIONS = "jira_issue_status_transitions"
TIME_IN_STATUS = "jira_time_in_status_daily"


def fake_changelog(pipeline: Pipeline, issue_id: str) -> list[dict[str, Any]]:
    """Every history of an issue, paged from the fake as a client would."""
    histories: list[dict[str, Any]] = []
    auth = (pipeline.fake.config.email, pipeline.fake.config.api_token)
    with httpx.Client(base_url=pipeline.fake.base_url, auth=auth, timeout=30) as http:
        while True:
            page = http.get(f"/rest/api/3/issue/{issue_id}/changelog",
                            params={"startAt": len(histories), "maxResults": 100}).json()
            histories.extend(page["values"])
            if page["isLast"]:
                return histories


def store_changelogs(pipeline: Pipeline, issue_ids: Iterable[str] | None = None) -> int:
    """Write the fake's changelogs of these issues (default: every stored one) as
    `jira_issue_changelogs` documents, replacing the issues' stored entries."""
    issues = pipeline.stored_issues()
    ids = list(issue_ids) if issue_ids is not None else list(issues)
    written = 0
    for issue_id in ids:
        issue = issues[issue_id]
        pipeline.db.jira_issue_changelogs.delete_many({"issue_id": issue_id})
        docs = [{
            "connection_id": issue["connection_id"], "issue_id": issue_id,
            "issue_key": issue["key"], "history_id": history["id"],
            "author_account_id": (history.get("author") or {}).get("accountId"),
            "created": parse_jira_datetime(history["created"]),
            "items": [{"field": item.get("field"), "field_id": item.get("fieldId"),
                       "field_type": item.get("fieldtype"), "from": item.get("from"),
                       "from_string": item.get("fromString"), "to": item.get("to"),
                       "to_string": item.get("toString")} for item in history["items"]],
            "synced_at": datetime.now(UTC),
        } for history in fake_changelog(pipeline, issue_id)]
        if docs:
            pipeline.db.jira_issue_changelogs.insert_many(docs)
            written += len(docs)
    return written


def transitions_of(pipeline: Pipeline, issue_id: str) -> list[dict[str, Any]]:
    return sorted(pipeline.db[TRANSITIONS].find({"issue_id": issue_id}),
                  key=lambda row: row["entered_at"])


def status_walk(changelog: list[dict[str, Any]]) -> list[str]:
    """The statuses an issue went through by the fake's changelog (one per distinct instant)."""
    walk: list[tuple[datetime, str]] = []
    for history in sorted(changelog, key=lambda h: (parse_jira_datetime(h["created"]),
                                                       int(h["id"]))):
        for item in history["items"]:
            if item["field"] == "status":
                at = parse_jira_datetime(history["created"])
                if not walk:
                    walk.append((datetime.min.replace(tzinfo=UTC), item["from"]))
                while walk and walk[-1][0] >= at:
                    walk.pop()
                walk.append((at, item["to"]))
    return [status for _, status in walk]


@pytest.fixture
def synced(pipeline_factory: Callable[..., Pipeline]) -> Pipeline:
    pipeline = pipeline_factory(issues=120, days=4)
    # The issues and their changelogs (jira_issue_changelogs, in the sync job): what the
    # history is derived from.
    assert pipeline.sync_everything().success
    assert pipeline.db.jira_issue_changelogs.count_documents({}) > 0
    return pipeline


def test_history_follows_the_fakes_changelogs_and_its_check_passes(synced: Pipeline) -> None:
    result = synced.sync_everything()

    assert result.success
    issues = synced.stored_issues()
    moved = 0
    for issue_id, issue in issues.items():
        changelog = fake_changelog(synced, issue_id)
        rows = transitions_of(synced, issue_id)
        expected = status_walk(changelog) or [issue["status_id"]]
        assert [row["status_id"] for row in rows] == expected, issue["key"]
        assert rows[-1]["is_current"] and rows[-1]["left_at"] is None
        assert rows[-1]["status_id"] == issue["status_id"]
        assert rows[0]["previous_status_id"] is None
        assert all(row["left_at"] == after["entered_at"] and
                   row["status_id"] == after["previous_status_id"]
                   for row, after in pairwise(rows))
        assert {row["status_name"] for row in rows} <= {
            doc["name"] for doc in synced.db.jira_statuses.find()}
        moved += len(rows) > 1
    assert moved > 10  # the fake's walks move most issues
    current = list(synced.db[FIELD_HISTORY].find({"is_current": True, "field_id": "status"}))
    assert len(current) == len(issues)
    check = check_results(result)[(FIELD_HISTORY, "field_history_consistent")]
    assert check.passed
    assert sum(m["issues"] for m in materializations(result, FIELD_HISTORY)) >= len(issues)


def test_a_rerun_writes_nothing_new(synced: Pipeline) -> None:
    counts = {name: synced.db[name].count_documents({})
              for name in (FIELD_HISTORY, TRANSITIONS, TIME_IN_STATUS)}

    result = synced.sync_everything()

    for name in (FIELD_HISTORY, TRANSITIONS, TIME_IN_STATUS):
        metadata = materializations(result, name)[0]  # one per partition, the step's figures
        assert (metadata["inserted"], metadata["updated"], metadata["removed"]) == (0, 0, 0)
        assert synced.db[name].count_documents({}) == counts[name]


def test_an_edited_issue_gains_its_new_intervals_in_the_issue_delta(synced: Pipeline) -> None:
    issue = next(doc for doc in synced.stored_issues().values()
                 if doc["status_name"] == "To Do" and doc["project_key"] == "CORE")
    before = transitions_of(synced, issue["issue_id"])
    someone = next(doc["account_id"] for doc in synced.db.jira_users.find()
                   if doc["account_id"] != issue["assignee_account_id"]
                   and doc.get("account_type") == "atlassian")
    synced.fake.admin.advance_clock(120)
    synced.fake.admin.touch_issue(issue["key"], {"status": {"name": "In Progress"},
                                                 "assignee": {"accountId": someone},
                                                 "labels": ["zz-new", "backend"]})
    store_changelogs(synced, [issue["issue_id"]])

    result = synced.run("jira_issues_job", synced.today)

    assert result.success
    after = transitions_of(synced, issue["issue_id"])
    assert len(after) == len(before) + 1
    assert after[-2]["status_id"] == before[-1]["status_id"] and after[-2]["left_at"]
    assert after[-1]["status_name"] == "In Progress"
    assert after[-1]["transition_direction"] == "forward"
    assignee = synced.db[FIELD_HISTORY].find_one(
        {"issue_id": issue["issue_id"], "field_id": "assignee", "is_current": True})
    assert assignee is not None and assignee["value"] == someone
    labels = synced.db[FIELD_HISTORY].find_one(
        {"issue_id": issue["issue_id"], "field_id": "labels", "is_current": True})
    assert labels is not None and labels["value"] == ["backend", "zz-new"]
    assert check_results(result)[(FIELD_HISTORY, "field_history_consistent")].passed


def test_an_incomplete_changelog_fails_the_consistency_check(synced: Pipeline) -> None:
    issue = next(doc for doc in synced.stored_issues().values()
                 if len(status_walk(fake_changelog(synced, doc["issue_id"]))) > 2)
    newest = max(synced.db.jira_issue_changelogs.find({"issue_id": issue["issue_id"]}),
                 key=lambda doc: (doc["created"], int(doc["history_id"])))
    synced.db.jira_issue_changelogs.delete_one({"_id": newest["_id"]})

    # The history alone, from the stored changelogs (a whole sync would fetch the lost history
    # back from Jira first: the changelog asset converges).
    keys = synced.partition_keys()
    result = synced.defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=synced.instance, tags=partition_range_tags(keys[0], keys[-1]),
        asset_selection=[dg.AssetKey(FIELD_HISTORY)],
    )

    check = check_results(result)[(FIELD_HISTORY, "field_history_consistent")]
    assert not check.passed
    assert f"{issue['key']} status" in check.metadata["sample"].value


def test_an_issue_deleted_in_jira_loses_its_history(synced: Pipeline) -> None:
    issue = next(iter(synced.stored_issues().values()))
    assert synced.db[TRANSITIONS].count_documents({"issue_id": issue["issue_id"]})
    synced.fake.admin.delete_issue(issue["key"])

    result = synced.run("jira_sync_job", synced.today, reconcile_deletions=True)

    assert result.success
    assert synced.stored_issues(deleted=True).keys() == {issue["issue_id"]}
    for name in (FIELD_HISTORY, TRANSITIONS):
        assert synced.db[name].count_documents({"issue_id": issue["issue_id"]}) == 0


def test_time_in_status_counts_the_issues_in_each_status_per_day(synced: Pipeline) -> None:
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    transitions = list(synced.db[TRANSITIONS].find())
    expected: dict[tuple[str, str], set[str]] = {}
    for row in transitions:
        entered = row["entered_at"].replace(tzinfo=UTC)
        left = row["left_at"].replace(tzinfo=UTC) if row["left_at"] else None
        if entered < day + timedelta(days=1) and (left is None or left > day):
            expected.setdefault((row["project_key"], row["status_id"]), set()).add(
                row["issue_id"])
    stored = {(doc["project_key"], doc["status_id"]): doc["issues_in_status"]
              for doc in synced.db[TIME_IN_STATUS].find({"day": day})}
    assert stored == {key: len(ids) for key, ids in expected.items()}
    assert stored


def test_the_readmes_time_in_status_per_project_is_one_aggregation(synced: Pipeline) -> None:
    finished = [row for row in synced.db[TRANSITIONS].find() if row["left_at"] is not None]
    expected: dict[tuple[str, str], list[float]] = {}
    for row in finished:
        expected.setdefault((row["project_key"], row["status_name"]), []).append(
            row["minutes_in_status"])

    rows = list(synced.db[TRANSITIONS].aggregate([
        {"$match": {"left_at": {"$ne": None}}},
        {"$group": {"_id": {"project": "$project_key", "status": "$status_name"},
                    "intervals": {"$sum": 1}, "mean_minutes": {"$avg": "$minutes_in_status"},
                    "max_minutes": {"$max": "$minutes_in_status"}}},
        {"$sort": {"_id.project": 1, "mean_minutes": -1}},
    ]))

    assert finished and len(rows) == len(expected)
    for row in rows:
        minutes = expected[(row["_id"]["project"], row["_id"]["status"])]
        assert row["intervals"] == len(minutes)
        assert row["mean_minutes"] == pytest.approx(sum(minutes) / len(minutes))
        assert row["max_minutes"] == max(minutes)


def test_a_data_center_site_derives_the_same_history(
    pipeline_factory: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = pipeline_factory(issues=60, days=3, mode="datacenter")
    for name in ("JIRA_EMAIL", "JIRA_API_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("JIRA_PAT", pipeline.fake.config.pat)
    pipeline.defs = build_definitions(mongo=pipeline.mongo)
    # The changelog asset reads Data Center's changelogs with each issue (expand=changelog);
    # the history is derived from them in the same run.
    result = pipeline.sync_everything()
    headers = {"Authorization": f"Bearer {pipeline.fake.config.pat}"}
    changelogs: dict[str, list[dict[str, Any]]] = {}
    with httpx.Client(base_url=pipeline.fake.base_url, headers=headers, timeout=30) as http:
        for issue_id in pipeline.stored_issues():
            body = http.get(f"/rest/api/2/issue/{issue_id}",
                            params={"expand": "changelog", "fields": "status"}).json()
            changelogs[issue_id] = body["changelog"]["histories"]

    assert result.success
    assert check_results(result)[(FIELD_HISTORY, "field_history_consistent")].passed
    moved = 0
    for issue_id, issue in pipeline.stored_issues().items():
        rows = transitions_of(pipeline, issue_id)
        assert [row["status_id"] for row in rows] == (
            status_walk(changelogs[issue_id]) or [issue["status_id"]]), issue["key"]
        moved += len(rows) > 1
    assert moved > 5
