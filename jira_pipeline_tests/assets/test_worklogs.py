"""`jira_worklogs` against the fake Jira over HTTP and the embedded store through pymongo: the
feeds' delta, deletions marked, the cursor, the last minute, failures, Data Center, the
project filter, the schedule and the sensor, and the `worklog_totals_match` check."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pytest

from jira_pipeline.storage.sync_cursors import read_cursor
from jira_pipeline_tests.assets.conftest import Pipeline, check_results, materializations

WORKLOGS = dg.AssetKey("jira_worklogs")
CHECK = ("jira_worklogs", "worklog_totals_match")
FEED_ENDPOINTS = ("/rest/api/3/worklog/updated", "/rest/api/3/worklog/list",
                  "/rest/api/3/worklog/deleted")


def fake_worklogs(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    """The fake's worklogs now, by id: {issue_id, seconds}."""
    admin = pipeline.fake.admin
    return {w["id"]: {"issue_id": w["issueId"], "seconds": w["timeSpentSeconds"]}
            for issue in admin.issues() for w in admin.worklogs(issue["key"])}


def stored_worklogs(pipeline: Pipeline, *, deleted: bool = False) -> dict[str, dict[str, Any]]:
    return {doc["worklog_id"]: {"issue_id": doc["issue_id"],
                                "seconds": doc["time_spent_seconds"]}
            for doc in pipeline.db["jira_worklogs"].find({"is_deleted": deleted})}


def feed_requests(pipeline: Pipeline) -> int:
    return sum(sum(by_status.values())
               for endpoint, by_status in pipeline.fake.admin.stats()["requests"].items()
               if endpoint.split(" ", 1)[1] in FEED_ENDPOINTS)


def run_worklogs(pipeline: Pipeline, *, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    """The worklogs asset and its check alone, as the UI materializes them."""
    return pipeline.defs.resolve_job_def("jira_sync_job").execute_in_process(
        instance=pipeline.instance, asset_selection=[WORKLOGS], raise_on_error=raise_on_error)


def run_check_alone(pipeline: Pipeline) -> Any:
    """`worklog_totals_match` without a materialization (as the UI runs it): every issue."""
    defs = dg.Definitions.merge(pipeline.defs, dg.Definitions(jobs=[dg.define_asset_job(
        "worklog_check_job", selection=dg.AssetSelection.checks_for_assets(WORKLOGS))]))
    result = defs.resolve_job_def("worklog_check_job").execute_in_process(
        instance=pipeline.instance)
    assert not materializations(result, "jira_worklogs")
    return check_results(result)[CHECK]


def worklog_of_an_issue(pipeline: Pipeline, skip: int = 0) -> dict[str, Any]:
    admin = pipeline.fake.admin
    logged = [w for issue in admin.issues() for w in admin.worklogs(issue["key"])]
    return logged[skip]


def minute_passes(pipeline: Pipeline) -> None:
    """Jira's feeds leave out the last minute's changes: let it pass."""
    pipeline.fake.admin.advance_clock(61)


@pytest.fixture
def synced(pipeline_factory: Callable[..., Pipeline]) -> Pipeline:
    pipeline = pipeline_factory(issues=150, days=4)
    assert pipeline.sync_everything().success
    return pipeline


def test_the_first_sync_stores_every_worklog_and_their_totals_match_jira(
    synced: Pipeline,
) -> None:
    assert stored_worklogs(synced) == fake_worklogs(synced)
    doc = synced.db["jira_worklogs"].find_one({})
    assert doc is not None
    assert isinstance(doc["started"], datetime) and doc["started"].tzinfo is not None
    assert doc["author_account_id"] and doc["comment"] and doc["raw"]["id"] == doc["worklog_id"]
    cursor = read_cursor(synced.db, doc["connection_id"], "worklogs")
    assert cursor["updated_since"] > 0, "the first run (since=0) stored Jira's position"
    evaluation = run_check_alone(synced)
    assert evaluation.passed
    assert evaluation.metadata["scope"].value == "every stored issue"
    assert evaluation.metadata["issues_compared"].value == len(synced.stored_issues())
    assert evaluation.metadata["mismatched_stored"].value == 0


def test_a_rerun_with_nothing_changed_costs_two_requests_and_changes_nothing(
    synced: Pipeline,
) -> None:
    before = feed_requests(synced)
    result = run_worklogs(synced)
    [figures] = materializations(result, "jira_worklogs")
    assert feed_requests(synced) - before == 2, "updated and deleted; the boundary is known"
    assert (figures["inserted"], figures["updated"]) == (0, 0)
    assert stored_worklogs(synced) == fake_worklogs(synced)


def test_a_delta_of_changes_and_deletions_costs_three_requests(synced: Pipeline) -> None:
    admin = synced.fake.admin
    edited = [worklog_of_an_issue(synced, n)["id"] for n in range(3)]
    deleted = [worklog_of_an_issue(synced, n)["id"] for n in range(3, 5)]
    for issue in admin.issues()[:5]:
        admin.add_worklog(issue["key"], seconds=1200)
    for worklog_id in edited:
        admin.edit_worklog(worklog_id, timeSpentSeconds=4500)
    for worklog_id in deleted:
        admin.delete_worklog(worklog_id)
    minute_passes(synced)
    before = feed_requests(synced)

    result = run_worklogs(synced)

    assert feed_requests(synced) - before == 3
    assert stored_worklogs(synced) == fake_worklogs(synced)
    assert set(stored_worklogs(synced, deleted=True)) == set(deleted)
    assert all(stored_worklogs(synced)[w]["seconds"] == 4500 for w in edited)
    [figures] = materializations(result, "jira_worklogs")
    assert (figures["inserted"], figures["updated"], figures["marked_deleted"]) == (5, 3, 2)
    # The stored issues are older copies: the check asks Jira, which agrees with the worklogs.
    evaluation = check_results(result)[CHECK]
    assert evaluation.passed
    assert evaluation.metadata["scope"].value == "issues this run changed"
    touched = {v["issue_id"] for v in stored_worklogs(synced).values()} & {
        synced.fake.admin.issues()[n]["id"] for n in range(5)}
    assert evaluation.metadata["issues_compared"].value >= len(touched) > 0
    assert evaluation.metadata["stale_issue_copies"].value > 0


def test_changes_of_the_last_minute_wait_for_the_next_run(synced: Pipeline) -> None:
    issue = synced.fake.admin.issues()[0]
    added = synced.fake.admin.add_worklog(issue["key"], seconds=600)
    run_worklogs(synced)
    assert added["id"] not in stored_worklogs(synced), "Jira did not list it yet"
    minute_passes(synced)
    run_worklogs(synced)
    assert stored_worklogs(synced)[added["id"]]["seconds"] == 600


def test_a_failed_run_keeps_the_cursor_and_the_next_run_catches_up(synced: Pipeline) -> None:
    connection_id = synced.stored_issues()[next(iter(synced.stored_issues()))]["connection_id"]
    before = read_cursor(synced.db, connection_id, "worklogs")
    admin = synced.fake.admin
    gone = worklog_of_an_issue(synced)["id"]
    added = admin.add_worklog(admin.issues()[1]["key"], seconds=700)
    admin.delete_worklog(gone)
    minute_passes(synced)
    admin.fail_next_worklog_request("deleted", 400)

    failed = run_worklogs(synced, raise_on_error=False)

    assert not failed.success
    [failure] = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.error.message  # type: ignore[union-attr]
    assert "JiraBadRequest" in message and "/worklog/deleted" in message
    assert read_cursor(synced.db, connection_id, "worklogs") == before
    assert gone in stored_worklogs(synced), "no deletion without the deleted feed's evidence"

    assert run_worklogs(synced).success
    assert stored_worklogs(synced)[added["id"]]["seconds"] == 700
    assert gone in stored_worklogs(synced, deleted=True)
    assert read_cursor(synced.db, connection_id, "worklogs")["updated_since"] > \
        before["updated_since"]


def test_an_edit_during_the_walk_is_stored_at_its_newest(synced: Pipeline) -> None:
    admin = synced.fake.admin
    worklog = worklog_of_an_issue(synced)
    admin.edit_worklog(worklog["id"], timeSpentSeconds=1000)
    minute_passes(synced)
    admin.change_worklog_after_feed_page(worklog["id"], "edit")  # +900 s, after the feed page

    result = run_worklogs(synced)

    assert stored_worklogs(synced)[worklog["id"]]["seconds"] == 1900
    assert check_results(result)[CHECK].passed
    minute_passes(synced)
    run_worklogs(synced)
    assert stored_worklogs(synced) == fake_worklogs(synced)


def test_a_worklog_deleted_between_the_feed_and_the_list_is_no_error(synced: Pipeline) -> None:
    admin = synced.fake.admin
    worklog = worklog_of_an_issue(synced)
    admin.edit_worklog(worklog["id"], timeSpentSeconds=1000)
    minute_passes(synced)
    admin.change_worklog_after_feed_page(worklog["id"], "delete")

    result = run_worklogs(synced)

    assert result.success
    assert check_results(result)[CHECK].passed
    assert worklog["id"] not in stored_worklogs(synced, deleted=True), "not listed deleted yet"
    minute_passes(synced)
    result = run_worklogs(synced)
    assert worklog["id"] in stored_worklogs(synced, deleted=True)
    assert stored_worklogs(synced) == fake_worklogs(synced)
    assert check_results(result)[CHECK].passed


def test_a_worklog_moved_to_another_issue_follows_it(synced: Pipeline) -> None:
    admin = synced.fake.admin
    worklog = worklog_of_an_issue(synced)
    target = next(i for i in admin.issues() if i["id"] != worklog["issueId"])
    admin.edit_worklog(worklog["id"], issue_key=target["key"])
    minute_passes(synced)

    result = run_worklogs(synced)

    assert stored_worklogs(synced)[worklog["id"]]["issue_id"] == target["id"]
    assert check_results(result)[CHECK].passed
    # Once the issues are synced again their totals match without asking Jira.
    assert synced.sync_everything().success
    evaluation = run_check_alone(synced)
    assert evaluation.passed
    assert evaluation.metadata["mismatched_stored"].value == 0


def test_the_check_fails_when_stored_worklogs_do_not_add_up(synced: Pipeline) -> None:
    doc = synced.db["jira_worklogs"].find_one({"is_deleted": False})
    assert doc is not None
    synced.db["jira_worklogs"].update_one({"_id": doc["_id"]},
                                          {"$inc": {"time_spent_seconds": 60}})
    evaluation = run_check_alone(synced)
    assert not evaluation.passed
    assert evaluation.metadata["failures"].value == 1
    assert doc["issue_id"] in evaluation.metadata["sample"].value


def test_only_worklogs_of_jira_projects_are_stored(
    pipeline_factory: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JIRA_PROJECTS", "CORE")
    pipeline = pipeline_factory(issues=150, days=4)
    assert pipeline.sync_everything().success
    core = {i["id"] for i in pipeline.fake.admin.issues() if i["project_key"] == "CORE"}
    expected = {w: v for w, v in fake_worklogs(pipeline).items() if v["issue_id"] in core}
    assert expected and stored_worklogs(pipeline) == expected
    assert check_results(run_worklogs(pipeline))[CHECK].passed


def test_data_center_reads_the_worklogs_of_the_issues_updated_since_the_cursor(
    pipeline_factory: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JIRA_PAT", "demo-pat")
    pipeline = pipeline_factory(issues=120, days=3, mode="datacenter", pat="demo-pat")
    assert pipeline.sync_everything().success
    assert stored_worklogs(pipeline) == fake_worklogs(pipeline)
    admin = pipeline.fake.admin
    worklog = worklog_of_an_issue(pipeline)
    admin.delete_worklog(worklog["id"])
    added = admin.add_worklog(admin.issues()[2]["key"], seconds=300)
    before = admin.stats()["requests"]

    result = run_worklogs(pipeline)

    assert stored_worklogs(pipeline) == fake_worklogs(pipeline)
    assert worklog["id"] in stored_worklogs(pipeline, deleted=True)
    assert stored_worklogs(pipeline)[added["id"]]["seconds"] == 300
    after = admin.stats()["requests"]
    per_issue = sum(sum(n.values()) for e, n in after.items() if e.endswith("/worklog")) - sum(
        sum(n.values()) for e, n in before.items() if e.endswith("/worklog"))
    assert per_issue == 2, "one request per issue updated since the cursor (two touched)"
    assert check_results(result)[CHECK].passed


def test_the_daily_schedule_and_the_refresh_sensor_materialize_it(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=100, days=3, persistent_instance=True)
    schedule = pipeline.defs.resolve_schedule_def("jira_daily_schedule")
    tick = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    [request] = schedule.evaluate_tick(dg.build_schedule_context(
        instance=pipeline.instance, scheduled_execution_time=tick)).run_requests or []
    result = pipeline.defs.resolve_job_def(schedule.job_name).execute_in_process(
        instance=pipeline.instance, tags=request.tags)
    assert materializations(result, "jira_worklogs")
    assert check_results(result)[CHECK].passed
    pipeline.sync_everything()

    sensor = pipeline.defs.resolve_sensor_def("jira_refresh_sensor")
    cursor = None
    for _ in range(2):  # the first tick starts from what is stored
        with dg.build_sensor_context(instance=pipeline.instance, cursor=cursor,
                                     resources=pipeline.defs.resources,
                                     definitions=pipeline.defs) as context:
            data = sensor.evaluate_tick(context)
        cursor = data.cursor
        if data.run_requests:
            break
        issue = pipeline.fake.admin.issues()[0]
        added = pipeline.fake.admin.add_worklog(issue["key"], seconds=420)
        minute_passes(pipeline)
    [request] = [r for r in data.run_requests or [] if r.job_name == "jira_issues_job"]
    result = pipeline.defs.resolve_job_def("jira_issues_job").execute_in_process(
        instance=pipeline.instance, tags=request.tags)
    assert materializations(result, "jira_worklogs")
    assert stored_worklogs(pipeline)[added["id"]]["seconds"] == 420


def test_the_worklogs_of_an_issue_the_census_proves_deleted_are_marked_deleted(
    synced: Pipeline,
) -> None:
    """Jira deletes an issue's worklogs with it and its deleted feed need not list them: the
    census's proof that the issue is gone is the evidence."""
    kept = stored_worklogs(synced)
    issue_id = next(iter({doc["issue_id"] for doc in kept.values()}))
    theirs = {wid for wid, doc in kept.items() if doc["issue_id"] == issue_id}
    key = synced.stored_issues()[issue_id]["key"]
    synced.fake.admin.delete_issue(key)
    minute_passes(synced)

    # A delta proves nothing: the issue is only missing from a search.
    assert synced.run("jira_issues_job", synced.today).success
    assert set(stored_worklogs(synced)) == set(kept)
    result = synced.run("jira_sync_job", synced.today, reconcile_deletions=True)

    assert result.success
    assert set(stored_worklogs(synced)) == set(kept) - theirs
    assert set(stored_worklogs(synced, deleted=True)) >= theirs
    [figures] = materializations(result, "jira_worklogs")
    assert figures["deleted_with_their_issue"] == len(theirs)
    assert check_results(result)[CHECK].passed


def test_an_issue_the_census_brings_back_from_another_day_gets_its_earlier_worklogs(
    synced: Pipeline,
) -> None:
    """The feeds list only changes since the stored position: the worklogs of an issue the
    store lacked (a permission granted, a project restored), older than it, come from the
    issue's own list."""
    fake = fake_worklogs(synced)
    issue_id = min({w["issue_id"] for w in fake.values()},
                   key=lambda i: synced.stored_issues()[i]["updated"])
    theirs = {wid: w for wid, w in fake.items() if w["issue_id"] == issue_id}
    synced.db["jira_issues"].delete_one({"issue_id": issue_id})  # as if never stored
    synced.db["jira_worklogs"].delete_many({"issue_id": issue_id})
    minute_passes(synced)

    result = synced.run("jira_sync_job", synced.today, reconcile_deletions=True)

    assert result.success
    assert {wid: w for wid, w in stored_worklogs(synced).items()
            if w["issue_id"] == issue_id} == theirs
    assert stored_worklogs(synced) == fake_worklogs(synced)
    [figures] = materializations(result, "jira_worklogs")
    assert figures["revealed_issues_walked"] == 1


def test_stored_totals_sum_each_issues_live_worklogs_as_a_group_by_would(tmp_path: Any) -> None:
    from jira_pipeline.assets.worklogs import stored_totals
    from jira_pipeline.storage.client import get_mongo_client
    from jira_pipeline.storage.entities import WORKLOGS

    client = get_mongo_client(None, folder=tmp_path / "mongo")
    worklogs = client.get_database("totals")[WORKLOGS.collection]
    rows = [("c1", "10", 60, False), ("c1", "10", 120, False), ("c1", "10", 999, True),
            ("c1", "11", 30, False), ("c1", "11", None, False), ("c1", "12", "7", False),
            ("c2", "10", 5_000, False), ("c1", None, 40, False)]
    worklogs.insert_many([
        {"_id": f"w{n}", "connection_id": connection, "issue_id": issue,
         "time_spent_seconds": seconds, "is_deleted": deleted, "raw": {"comment": "x" * 50}}
        for n, (connection, issue, seconds, deleted) in enumerate(rows)])
    grouped = {
        row["_id"]: row["seconds"] for row in worklogs.aggregate([
            {"$match": {"connection_id": "c1", "is_deleted": {"$ne": True}}},
            {"$group": {"_id": "$issue_id", "seconds": {"$sum": "$time_spent_seconds"}}}])
        if row["_id"] is not None}

    # Deleted worklogs, other connections and non-numbers add nothing; every issue is listed.
    assert stored_totals(worklogs.database, "c1") == {"10": 180, "11": 30, "12": 0} == grouped
    assert stored_totals(worklogs.database, "c1", {"11", "13"}) == {"11": 30}
    client.close()
