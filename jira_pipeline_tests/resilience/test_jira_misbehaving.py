"""A Jira that rate-limits, fails, or sends broken JSON: the sync still ends with exactly Jira's
data, or fails naming the endpoint without claiming a partition."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dagster as dg
from pymongo.database import Database

from jira_pipeline.assets.jobs import DIMENSION_ASSETS
from jira_pipeline.fakejira import FakeJiraHandle
from jira_pipeline_tests.resilience.conftest import (
    SyncTarget,
    fake_issue_versions,
    run_metadata,
    stored_issues,
    stored_versions,
    this_hour,
)

DIMENSIONS = ("jira_projects", "jira_statuses", "jira_users")


def stored_everything(db: Database) -> dict[str, object]:
    """Every stored document but the sync timestamps, by collection and id."""
    state: dict[str, object] = {"jira_issues": stored_issues(db)}
    for collection in DIMENSIONS:
        state[collection] = {
            doc["_id"]: {k: v for k, v in doc.items() if k not in ("synced_at", "first_seen_at")}
            for doc in db[collection].find({})
        }
    return state


def test_rate_limit_of_two_requests_a_second_is_respected_and_the_sync_completes(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    open_store: Callable[[Path], Database],
) -> None:
    # Enough issues that the backfill's window splits into sub-windows walked concurrently.
    fake = fake_jira_factory(issues=800, days=3, now=this_hour(), rate_limit=2.0, burst=2)
    target = point_at(fake)  # the default four requests in flight, no spacing between starts

    # The issues and the dimensions: the followers' requests would only stretch the run.
    result = target.sync(assets=["jira_issues", *DIMENSION_ASSETS])

    assert result.success
    stats = fake.admin.stats()
    assert stats["rate_limited"] > 0  # the limit was really reached...
    assert stats["requests_in_retry_after_window"] == 0  # ...and every Retry-After was honoured
    assert run_metadata(result, "jira_issues")["rate_limit_waits"] > 0
    assert stored_versions(open_store(target.store_folder)) == fake_issue_versions(fake)


def test_twenty_percent_server_faults_end_in_the_same_data_as_a_clean_run(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    open_store: Callable[[Path], Database],
) -> None:
    fake = fake_jira_factory(issues=400, days=3, now=this_hour())
    clean = point_at(fake, "clean")
    assert clean.sync().success
    fake.admin.configure(fault_rate=0.2)
    faulty = point_at(fake, "faulty")

    result = faulty.sync()

    assert result.success
    assert fake.admin.stats()["faults"] > 0
    # The client retried: in a walk, or in a check's requests (the checks report theirs too).
    retried = sum(run_metadata(result, name)["retries"] for name in ("jira_issues", *DIMENSIONS))
    retried += sum(int(getattr(e.metadata.get("retries"), "value", 0) or 0)
                   for e in result.get_asset_check_evaluations())
    assert retried > 0
    faulty_state = stored_everything(open_store(faulty.store_folder))
    assert faulty_state == stored_everything(open_store(clean.store_folder))
    assert len(faulty_state["jira_issues"]) == len(fake_issue_versions(fake))  # type: ignore[arg-type]


def test_one_truncated_json_answer_is_retried_and_the_sync_completes(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    open_store: Callable[[Path], Database],
) -> None:
    fake = fake_jira_factory(issues=200, days=3, now=this_hour())
    target = point_at(fake)
    fake.admin.configure(malformed_json_next=1)

    result = target.sync("jira_issues_job")

    assert result.success
    assert run_metadata(result, "jira_issues")["retries"] >= 1
    assert stored_versions(open_store(target.store_folder)) == fake_issue_versions(fake)


def test_json_that_is_always_truncated_fails_the_run_naming_the_endpoint_and_claims_nothing(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
) -> None:
    fake = fake_jira_factory(issues=200, days=3, now=this_hour())
    target = point_at(fake)
    fake.admin.configure(malformed_json_next=1_000_000)

    with dg.DagsterInstance.ephemeral() as instance:
        result = target.sync("jira_issues_job", instance=instance)

        assert not result.success
        [failure] = [event for event in result.all_events if event.is_step_failure]
        message = str(failure.step_failure_data.error)
        assert "/rest/api/3/search" in message
        assert "JSON" in message
        assert result.asset_materializations_for_node("jira_issues") == []
        assert instance.get_materialized_partitions(dg.AssetKey("jira_issues")) == set()
