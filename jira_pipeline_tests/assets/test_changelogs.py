"""`jira_issue_changelogs` through Dagster against the fake Jira: every history of every issue
stored once, reruns idempotent, deltas follow edits, and broken paging never passes as complete."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import dagster as dg
import pytest

from jira_pipeline.timeutil import parse_jira_datetime
from jira_pipeline_tests.assets.conftest import Pipeline, check_results, materializations

CHANGELOGS = "jira_issue_changelogs"
BULK = "POST /rest/api/3/changelog/bulkfetch"


def jira_histories(pipeline: Pipeline) -> dict[str, list[str]]:
    """The fake's history ids per live issue id (read in-process: no request is in flight)."""
    site = pipeline.fake.site
    renderer = site.renderer(pipeline.fake.base_url)
    return {str(issue.id): [history.id for history in renderer.histories(issue)]
            for issue in site.data.issues if not issue.deleted}


def stored_histories(pipeline: Pipeline) -> dict[str, list[str]]:
    stored: dict[str, list[str]] = {}
    for doc in pipeline.db[CHANGELOGS].find({"is_deleted": {"$ne": True}},
                                            {"issue_id": 1, "history_id": 1}):
        stored.setdefault(doc["issue_id"], []).append(doc["history_id"])
    return stored


def bulkfetch_requests(pipeline: Pipeline) -> int:
    return sum(pipeline.fake.admin.stats()["requests"].get(BULK, {}).values())


def sync_allowing_failure(pipeline: Pipeline) -> dg.ExecuteInProcessResult:
    keys = pipeline.partition_keys()
    return pipeline.run("jira_sync_job", keys[0], keys[-1], raise_on_error=False)


def failures(result: dg.ExecuteInProcessResult) -> str:
    """The errors of the run's failed step attempts (retried or not), causes included."""
    return "\n".join(
        str(event.event_specific_data)
        for event in result.all_events
        if event.event_type_value in ("STEP_FAILURE", "STEP_UP_FOR_RETRY")
    )


def test_a_sync_stores_every_history_of_every_issue_once_in_few_requests(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=80, days=3, histories=(10, 150))

    result = pipeline.sync_everything()

    assert result.success
    in_jira = jira_histories(pipeline)
    stored = stored_histories(pipeline)
    assert {i: sorted(h) for i, h in stored.items()} == {
        i: sorted(h) for i, h in in_jira.items() if h}
    assert max(len(h) for h in in_jira.values()) > 100  # beyond what Jira embeds in an issue
    histories = sum(len(h) for h in in_jira.values())
    # One bulkfetch call (80 issues), paged 1,000 histories at a time: the floor.
    assert bulkfetch_requests(pipeline) == math.ceil(histories / 1000)
    evaluation = check_results(result)[(CHANGELOGS, "changelog_complete")]
    assert evaluation.passed, evaluation.description
    figures = materializations(result, CHANGELOGS)
    # Each partition reports its own issues' histories; the write counts are the run's.
    assert sum(p["records_fetched"] for p in figures) == histories
    assert {p["inserted"] for p in figures} == {histories}

    doc = pipeline.db[CHANGELOGS].find_one({"items.field": "status"})
    assert doc is not None
    issue = pipeline.db["jira_issues"].find_one({"issue_id": doc["issue_id"]})
    assert issue is not None and doc["issue_key"] == issue["key"]
    assert doc["created"] == parse_jira_datetime(doc["raw"]["created"])
    assert doc["created"].utcoffset() == timedelta(0)
    assert doc["author_account_id"] == doc["raw"]["author"]["accountId"]
    assert set(doc["items"][0]) == {"field", "field_id", "field_type", "from", "from_string",
                                    "to", "to_string"}
    assert doc["connection_id"] == issue["connection_id"]


def test_a_rerun_changes_nothing(pipeline_factory: Callable[..., Pipeline]) -> None:
    pipeline = pipeline_factory(issues=40, days=3, histories=(5, 40))
    assert pipeline.sync_everything().success
    before = stored_histories(pipeline)

    again = pipeline.sync_everything()

    assert again.success
    assert stored_histories(pipeline) == before
    figures = materializations(again, CHANGELOGS)
    assert {p["inserted"] for p in figures} == {p["updated"] for p in figures} == {0}
    assert {p["unchanged"] for p in figures} == {sum(len(h) for h in before.values())}


def test_the_delta_run_stores_the_new_history_of_an_edited_issue(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=40, days=3, histories=(5, 40))
    assert pipeline.sync_everything().success
    oldest = min(pipeline.fake.admin.issues(), key=lambda row: row["updated"])
    pipeline.fake.admin.touch_issue(oldest["key"], {"summary": "renamed in the delta"})

    # What the refresh sensor requests: today's issues and their changelogs.
    result = pipeline.run("jira_issues_job", pipeline.today)

    assert result.success
    assert {i: sorted(h) for i, h in stored_histories(pipeline).items()} == {
        i: sorted(h) for i, h in jira_histories(pipeline).items() if h}
    newest = pipeline.db[CHANGELOGS].find_one({"issue_id": oldest["id"],
                                               "items.to_string": "renamed in the delta"})
    assert newest is not None and newest["issue_key"] == oldest["key"]
    # Only today's issues' changelogs were asked for, not the whole site's: one call.
    [figures] = materializations(result, CHANGELOGS)
    assert figures["issues"] < len(pipeline.fake_issues())
    assert figures["api_calls"] == math.ceil(figures["records_fetched"] / 1000)


@pytest.mark.parametrize("glitch", ["no_token", "short"])
def test_a_page_lost_by_jira_fails_the_check_never_passes_as_complete(
    pipeline_factory: Callable[..., Pipeline], glitch: str
) -> None:
    # Five issues, so the check's sample is all of them; 10-history pages, so a call pages.
    pipeline = pipeline_factory(issues=5, days=2, histories=(10, 30))
    pipeline.fake.admin.configure_changelog(page_cap=10, glitch_next_page=glitch)

    result = sync_allowing_failure(pipeline)

    evaluation = check_results(result)[(CHANGELOGS, "changelog_complete")]
    assert not evaluation.passed
    assert "incomplete stored changelog" in (evaluation.description or "")
    assert "of Jira's" in (evaluation.description or "")
    assert not result.success  # a blocking check: what reads the changelogs waits
    # The next run (Jira behaving again) completes them.
    assert pipeline.sync_everything().success
    assert {i: sorted(h) for i, h in stored_histories(pipeline).items()} == {
        i: sorted(h) for i, h in jira_histories(pipeline).items() if h}


def test_a_repeated_page_token_fails_the_step_naming_the_token(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=5, days=2, histories=(10, 30))
    pipeline.fake.admin.configure_changelog(page_cap=10, glitch_next_page="repeat_token")

    result = sync_allowing_failure(pipeline)

    # The attempt fails with the paging error as its headline; the step's retry policy tries
    # again (a server's paging bug may pass), and the retry, with Jira behaving, completes.
    message = failures(result)
    assert "JiraPaginationError" in message and "nextPageToken '" in message
    assert "served again" in message and "/changelog/bulkfetch" in message
    assert result.success
    assert {i: sorted(h) for i, h in stored_histories(pipeline).items()} == {
        i: sorted(h) for i, h in jira_histories(pipeline).items() if h}


def test_data_center_stores_whole_changelogs_one_request_per_issue(
    pipeline_factory: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JIRA_PAT", "demo-pat")  # the fake's PAT: a Data Center site
    pipeline = pipeline_factory(issues=12, days=2, mode="datacenter", pat="demo-pat",
                                histories=(60, 200))

    result = pipeline.sync_everything()

    assert result.success
    in_jira = jira_histories(pipeline)
    assert {i: sorted(h) for i, h in stored_histories(pipeline).items()} == {
        i: sorted(h) for i, h in in_jira.items() if h}
    assert max(len(h) for h in in_jira.values()) > 100
    evaluation = check_results(result)[(CHANGELOGS, "changelog_complete")]
    assert evaluation.passed, evaluation.description
    requests = Counter({endpoint: sum(by_status.values()) for endpoint, by_status
                        in pipeline.fake.admin.stats()["requests"].items()})
    # One per issue for the changelogs, one per sampled issue for the check.
    assert requests["GET /rest/api/2/issue/{key}"] == len(in_jira) + min(5, len(in_jira))


def test_an_issue_the_census_brings_back_from_another_day_gets_its_changelog(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=40, days=3, histories=(5, 40))
    assert pipeline.sync_everything().success
    lost = min(pipeline.fake.admin.issues(), key=lambda row: row["updated"])  # not today's
    pipeline.db["jira_issues"].delete_one({"issue_id": lost["id"]})  # as if never stored
    pipeline.db[CHANGELOGS].delete_many({"issue_id": lost["id"]})

    # The daily run's census finds it missing and stores it, far outside today's window.
    result = pipeline.run("jira_sync_job", pipeline.today, reconcile_deletions=True)

    assert result.success
    assert sorted(stored_histories(pipeline)[lost["id"]]) == sorted(
        jira_histories(pipeline)[lost["id"]])


def test_the_histories_of_an_issue_the_census_proves_deleted_are_marked_deleted(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=40, days=3, histories=(5, 40))
    assert pipeline.sync_everything().success
    gone = min(pipeline.fake.admin.issues(), key=lambda row: row["updated"])
    kept = stored_histories(pipeline)
    pipeline.fake.admin.delete_issue(gone["key"])

    # A delta proves nothing: the issue is only missing from a search.
    assert pipeline.run("jira_issues_job", pipeline.today).success
    assert stored_histories(pipeline) == kept
    # The daily run's census proves it gone: its histories go with it, kept as deleted.
    result = pipeline.run("jira_sync_job", pipeline.today, reconcile_deletions=True)

    assert result.success
    assert gone["id"] not in stored_histories(pipeline)
    marked = list(pipeline.db[CHANGELOGS].find({"issue_id": gone["id"]}))
    assert len(marked) == len(kept[gone["id"]]) and all(d["is_deleted"] for d in marked)
    assert all(d["deleted_at"] is not None for d in marked)
    assert {i: h for i, h in stored_histories(pipeline).items()} == {
        i: h for i, h in kept.items() if i != gone["id"]}
    [figures] = materializations(result, CHANGELOGS)
    assert figures["marked_deleted"] == len(kept[gone["id"]])


def test_an_upgrades_first_daily_run_covers_every_stored_issue_then_only_its_window(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    """A deployment from before the history assets: its issues are stored, nothing else. The
    first daily run (today's partition only) fetches every stored issue's history once and
    derives every issue's history; the next daily run reads only its window again."""
    pipeline = pipeline_factory(issues=60, days=4, histories=(3, 20))
    keys = pipeline.partition_keys()
    assert pipeline.run("jira_sync_job", keys[0], keys[-1], assets=("jira_issues",)).success
    assert pipeline.db[CHANGELOGS].count_documents({}) == 0
    issues = pipeline.stored_issues()
    outside_today = [i for i, doc in issues.items()
                     if doc["updated"].date().isoformat() < keys[-2]]
    assert outside_today

    first = pipeline.run("jira_sync_job", pipeline.today)

    assert first.success
    assert stored_histories(pipeline) == jira_histories(pipeline)
    [figures] = materializations(first, CHANGELOGS)
    assert figures["issues"] == len(issues)
    for collection in ("jira_issue_field_history", "jira_issue_status_transitions"):
        assert set(pipeline.db[collection].distinct("issue_id")) == set(issues), collection
    commented = {i for i in outside_today if issues[i]["raw"]["fields"]["comment"]["total"]}
    assert commented and commented <= set(pipeline.db["jira_issue_comments"].distinct("issue_id"))

    second = pipeline.run("jira_sync_job", pipeline.today)

    assert second.success
    [figures] = materializations(second, CHANGELOGS)
    assert figures["issues"] < len(issues)
