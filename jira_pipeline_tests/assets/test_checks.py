"""Asset checks: they pass on a faithful copy of the fake Jira and fail, each for its own reason,
when the stored data is deliberately damaged."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from jira_pipeline.assets.schedules import partition_range_tags
from jira_pipeline.assets.streams import JiraRecordStream
from jira_pipeline.storage.entities import entity_spec
from jira_pipeline_tests.assets.conftest import DIMENSIONS, Pipeline, check_results

CHECKS_JOB = "jira_checks_job"
DEFINITIONS_FILE = Path(__file__).resolve().parents[2] / "jira_pipeline" / "definitions.py"


Evaluations = dict[tuple[str, str], dg.AssetCheckEvaluation]


def run_checks(pipeline: Pipeline, partition: str | None = None) -> Evaluations:
    """Run every asset check (and no materialization) in one run, for one issue partition."""
    defs = dg.Definitions.merge(
        pipeline.defs,
        dg.Definitions(
            jobs=[dg.define_asset_job(CHECKS_JOB, selection=dg.AssetSelection.all_asset_checks())]
        ),
    )
    result = defs.resolve_job_def(CHECKS_JOB).execute_in_process(
        instance=pipeline.instance,
        # The count check is partitioned, the others are not: name the partition by tag.
        tags=partition_range_tags(partition or pipeline.today, partition or pipeline.today),
        raise_on_error=False,
    )
    return check_results(result)


def failing(evaluations: Evaluations) -> set[tuple[str, str]]:
    return {check for check, evaluation in evaluations.items() if not evaluation.passed}


def metadata(evaluations: Evaluations, check: tuple[str, str]) -> dict:
    items = evaluations[check].metadata.items()
    return {key: getattr(value, "value", value) for key, value in items}


@pytest.fixture
def synced(pipeline_factory: Callable[..., Pipeline]) -> Pipeline:
    pipeline = pipeline_factory(issues=80, days=2)
    result = pipeline.sync_everything()
    assert result.success
    evaluations = check_results(result)
    # 9 issue and follower checks, 2 per dimension (12 dimensions), reference_data_present,
    # project_parts_present, referenced_sprints_stored and sprint_membership_matches_jira.
    assert len(evaluations) == 37 and all(e.passed for e in evaluations.values())
    return pipeline


def yesterday() -> str:
    return (datetime.now(UTC).date() - timedelta(days=1)).isoformat()


def test_every_check_passes_on_a_faithful_copy(synced: Pipeline) -> None:
    evaluations = run_checks(synced, yesterday())

    assert len(evaluations) == 37 and not failing(evaluations)


def test_an_issue_missing_from_the_store_fails_the_count_check_of_its_partition(
    synced: Pipeline,
) -> None:
    day = datetime.fromisoformat(yesterday()).replace(tzinfo=UTC)
    victim = synced.db["jira_issues"].find_one(
        {"updated": {"$gte": day, "$lt": day + timedelta(days=1)}}
    )
    assert victim is not None
    synced.db["jira_issues"].delete_one({"_id": victim["_id"]})

    evaluations = run_checks(synced, yesterday())

    assert failing(evaluations) == {("jira_issues", "matches_jira_count")}
    found = metadata(evaluations, ("jira_issues", "matches_jira_count"))
    assert (found["missing"], found["missing_sample"]) == (1, victim["issue_id"])
    assert found["jira_count"] == found["stored_count"] + 1
    # Other days are whole: their partitions still pass.
    assert not failing(run_checks(synced, synced.today))


def test_two_live_issues_with_one_key_fail_the_duplicate_check(synced: Pipeline) -> None:
    original = synced.db["jira_issues"].find_one({})
    assert original is not None
    # Written as every write of an issue is: stamped (the check reads again what was written
    # since its last evaluation, storage/check_memo.py).
    copy = {**original, "_id": uuid.uuid4(), "issue_id": "99999999",
            "synced_at": datetime.now(UTC)}
    synced.db["jira_issues"].insert_one(copy)

    evaluations = run_checks(synced)

    # The copy has no field history either: that check names it too.
    assert failing(evaluations) == {("jira_issues", "no_duplicate_keys"),
                                    ("jira_issue_field_history", "field_history_consistent")}
    found = metadata(evaluations, ("jira_issues", "no_duplicate_keys"))
    assert (found["duplicate_keys"], found["duplicate_issue_ids"]) == (1, 0)
    assert found["sample"] == original["key"]


@pytest.mark.parametrize(
    ("collection", "field", "referenced_by"),
    [
        ("jira_statuses", "status_id", "status_id"),
        ("jira_users", "account_id", "reporter_account_id"),
    ],
)
def test_a_referenced_status_or_user_missing_from_the_store_fails_the_reference_check(
    synced: Pipeline, collection: str, field: str, referenced_by: str
) -> None:
    referenced = synced.db["jira_issues"].find_one({})[referenced_by]
    synced.db[collection].delete_one({field: referenced})

    evaluations = run_checks(synced)

    assert failing(evaluations) == {("jira_issues", "references_present")}
    found = metadata(evaluations, ("jira_issues", "references_present"))
    entity = "statuses" if collection == "jira_statuses" else "users"
    assert (found[f"missing_{entity}"], found["sample"]) == (1, f"{entity}/{referenced}")


@pytest.mark.parametrize("asset", DIMENSIONS)
def test_an_empty_dimension_fails_its_not_empty_check(
    pipeline_factory: Callable[..., Pipeline], asset: str
) -> None:
    pipeline = pipeline_factory(issues=10, days=1)
    pipeline.run("jira_dimensions_job")
    assert (asset, "not_empty") not in failing(run_checks(pipeline))

    pipeline.db[entity_spec(asset).collection].delete_many({})

    evaluations = run_checks(pipeline)

    assert (asset, "not_empty") in failing(evaluations)
    assert metadata(evaluations, (asset, "not_empty"))["live_rows"] == 0


def test_jira_updates_newer_than_the_tolerance_fail_the_freshness_check(
    synced: Pipeline,
) -> None:
    admin = synced.fake.admin
    admin.advance_clock(3 * 3600)  # the tolerance is two hours
    admin.touch_issue(admin.issues()[0]["key"])

    evaluations = run_checks(synced)

    assert ("jira_issues", "fresh") in failing(evaluations)
    assert metadata(evaluations, ("jira_issues", "fresh"))["lag_minutes"] >= 120


def test_edit_between_walk_and_check_does_not_fail_the_run(
    pipeline_factory: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = pipeline_factory(issues=80, days=2)
    admin = pipeline.fake.admin
    # The fake's clock reads like the pipeline's, so "after the run started" means the same.
    admin.set_clock(datetime.now(UTC) + timedelta(seconds=1))
    day = datetime.fromisoformat(yesterday()).replace(tzinfo=UTC)
    victim = next(key for key, issue in (
        (issue["key"], issue) for issue in pipeline.fake_issues().values()
    ) if day <= issue["updated"] < day + timedelta(days=1))
    walked = JiraRecordStream._report

    def edit_after_the_walk(stream: JiraRecordStream) -> dict:
        if "status_name" in stream._preview_fields and not edited:  # the issues' stream
            edited.append(admin.touch_issue(victim, {"summary": "Edited after the walk"}))
        return walked(stream)

    edited: list[dict] = []
    monkeypatch.setattr(JiraRecordStream, "_report", edit_after_the_walk)

    result = pipeline.run("jira_sync_job", synced_today(), raise_on_error=False)

    assert edited, "the issues were never walked"
    assert result.success
    evaluation = check_results(result)[("jira_issues", "matches_jira_count")]
    assert evaluation.passed and evaluation.partition == synced_today()
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert dg.AssetKey("jira_issue_daily_summary") in materialized
    # The edit is Jira's newest state, and the next run's to fetch: this one did not see it.
    assert victim not in {doc["key"] for doc in synced_stored_today(pipeline)}


def synced_today() -> str:
    return datetime.now(UTC).date().isoformat()


def synced_stored_today(pipeline: Pipeline) -> list[dict]:
    today = datetime.fromisoformat(synced_today()).replace(tzinfo=UTC)
    return list(pipeline.db["jira_issues"].find({"updated": {"$gte": today}}))


CHECK_EXECUTIONS = """
query ($checkName: String!) {
  assetCheckExecutions(assetKey: {path: ["jira_issues"]}, checkName: $checkName, limit: 20) {
    runId
    status
    partition
    evaluation { success }
  }
}
"""


def test_multi_partition_check_results_show_executed_in_the_ui(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    pipeline = pipeline_factory(issues=80, days=2, persistent_instance=True)
    first, last = yesterday(), synced_today()
    result = pipeline.run("jira_issues_job", first, last)
    assert result.success

    with define_out_of_process_context(
        str(DEFINITIONS_FILE), "defs", pipeline.instance
    ) as context:
        answer = execute_dagster_graphql(
            context, CHECK_EXECUTIONS, {"checkName": "matches_jira_count"}
        )

    assert answer.errors is None
    executions = answer.data["assetCheckExecutions"]
    assert {(e["runId"], e["partition"], e["status"]) for e in executions} == {
        (result.run_id, first, "SUCCEEDED"), (result.run_id, last, "SUCCEEDED"),
    }  # fmt: skip
    assert all(e["evaluation"]["success"] for e in executions)
