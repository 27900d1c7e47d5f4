"""Asset checks: they pass on a faithful copy of the fake Jira and fail, each for its own reason,
when the stored data is deliberately damaged."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from jira_pipeline.assets.schedules import partition_range_tags
from jira_pipeline.storage.entities import entity_spec
from jira_pipeline_tests.assets.conftest import DIMENSIONS, Pipeline, check_results

CHECKS_JOB = "jira_checks_job"


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
    assert len(evaluations) == 11 and all(e.passed for e in evaluations.values())
    return pipeline


def yesterday() -> str:
    return (datetime.now(UTC).date() - timedelta(days=1)).isoformat()


def test_every_check_passes_on_a_faithful_copy(synced: Pipeline) -> None:
    evaluations = run_checks(synced, yesterday())

    assert len(evaluations) == 11 and not failing(evaluations)


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
    copy = {**original, "_id": uuid.uuid4(), "issue_id": "99999999"}
    synced.db["jira_issues"].insert_one(copy)

    evaluations = run_checks(synced)

    assert failing(evaluations) == {("jira_issues", "no_duplicate_keys")}
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
    referenced = synced.db["jira_issues"].find_one({})[referenced_by]  # type: ignore[index]
    synced.db[collection].delete_one({field: referenced})

    evaluations = run_checks(synced)

    assert failing(evaluations) == {("jira_issues", "references_present")}
    found = metadata(evaluations, ("jira_issues", "references_present"))
    missing = found["missing_statuses"] if collection == "jira_statuses" else found["missing_users"]
    assert (missing, found["sample"]) == (1, referenced)


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
