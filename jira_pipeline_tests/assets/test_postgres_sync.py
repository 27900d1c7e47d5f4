"""A full sync launched as a deployment launches it, on a Postgres-backed instance.

The instance is dagster.postgres.yaml, unchanged, on a fresh database of the PostgreSQL server
DAGSTER_PG_URL names (skipped without one: `.ci/run` starts one). The code location runs in its
own gRPC code server, as under `dagster dev` or the daemon; the run (dimensions and every
`jira_issues` partition in one run) is queued with the job's own tags, dequeued by one pass of
the daemon's QueuedRunCoordinatorDaemon and started by the DefaultRunLauncher in a run worker
process. The store and Dagster's records must both show the whole sync.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
    QueuedRunCoordinatorDaemon,
)

from jira_pipeline.fakejira import FakeJiraHandle
from jira_pipeline.storage.client import get_database
from jira_pipeline_tests.assets.conftest import this_hour
from jira_pipeline_tests.postgres import POSTGRES_FILE, instance_overrides, requires_postgres

REPO = Path(__file__).resolve().parents[2]
LOCATION = "jira_pipeline"
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def submit(workspace: WorkspaceProcessContext, instance: dg.DagsterInstance, job_name: str,
           tags: dict[str, str]) -> DagsterRun:
    """Queue a run the way the schedule and sensor daemons do: plan it in the code server,
    create it with the job's tags, submit it to the instance's run coordinator."""
    request = workspace.create_request_context()
    location = request.get_code_location(LOCATION)
    [repository] = location.get_repositories().values()
    remote_job = repository.get_full_job(job_name)
    plan = location.get_execution_plan(
        remote_job, {}, step_keys_to_execute=None, known_state=None, instance=instance
    )
    run = instance.create_run(
        job_name=job_name, run_id=None, run_config={}, resolved_op_selection=None,
        step_keys_to_execute=None, status=DagsterRunStatus.NOT_STARTED, op_selection=None,
        root_run_id=None, parent_run_id=None, tags={**(remote_job.run_tags or {}), **tags},
        job_snapshot=remote_job.job_snapshot,
        execution_plan_snapshot=plan.execution_plan_snapshot,
        parent_job_snapshot=remote_job.parent_job_snapshot,
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
        asset_selection=None, asset_check_selection=None, asset_graph=repository.asset_graph,
    )  # fmt: skip
    return instance.submit_run(run.run_id, request)


def run_to_the_end(workspace: WorkspaceProcessContext, instance: dg.DagsterInstance,
                   run: DagsterRun, polls: int = 2400) -> DagsterRun:
    """Pass the queue daemon over the run until it is launched, then wait for it to finish
    (a bounded number of polls: a hung run fails the test instead of hanging it)."""
    daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
    current: DagsterRun | None = run
    for _ in range(polls):
        current = instance.get_run_by_id(run.run_id)
        assert current is not None
        if current.status in FINISHED:
            return current
        if current.status == DagsterRunStatus.QUEUED:
            list(daemon.run_iteration(workspace))
        time.sleep(0.5)
    raise AssertionError(f"run {run.run_id} did not finish: {current and current.status}")


def failure_messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [
        str(record.dagster_event.event_specific_data)[:2000]
        for record in instance.all_logs(run_id)
        if record.dagster_event is not None and record.dagster_event.is_failure
    ]


@requires_postgres
@pytest.mark.timeout(1800)
def test_a_launched_full_sync_on_a_postgres_instance_stores_every_issue(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    site_env: Callable[..., date],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = fake_jira_factory(issues=120, days=3, now=this_hour(), seed=1)
    site_env(fake, days=4)
    with instance_overrides(POSTGRES_FILE, monkeypatch) as overrides, \
            dg.instance_for_test(overrides=overrides) as instance:
        from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        target = ModuleTarget("jira_pipeline.definitions", None, str(REPO), LOCATION)
        with create_test_daemon_workspace_context(target, instance) as workspace:
            request = workspace.create_request_context()
            [repository] = request.get_code_location(LOCATION).get_repositories().values()
            issues_key = dg.AssetKey("jira_issues")
            partitions = repository.asset_graph.get(issues_key).partitions_def
            assert partitions is not None
            keys = list(partitions.get_partition_keys())
            run = submit(workspace, instance, "jira_sync_job", {
                ASSET_PARTITION_RANGE_START_TAG: keys[0],
                ASSET_PARTITION_RANGE_END_TAG: keys[-1],
            })
            assert run.status == DagsterRunStatus.QUEUED
            finished = run_to_the_end(workspace, instance, run)
        assert finished.status == DagsterRunStatus.SUCCESS, failure_messages(instance, run.run_id)

        # Dagster's records, in PostgreSQL: every partition and every dimension materialized.
        assert instance.get_materialized_partitions(issues_key) == set(keys)
        for dimension in ("jira_projects", "jira_statuses", "jira_users"):
            assert instance.get_latest_materialization_event(dg.AssetKey(dimension)) is not None

        # The store the run worker wrote (the embedded one, under the instance's DAGSTER_HOME)
        # holds exactly the fake's issues, and the dimensions.
        db = get_database()
        live = {issue["id"] for issue in fake.admin.issues()}
        stored: dict[str, Any] = {
            doc["issue_id"]: doc for doc in db["jira_issues"].find({"is_deleted": {"$ne": True}})
        }
        assert set(stored) == live and len(live) == 120
        for dimension in ("jira_projects", "jira_statuses", "jira_users"):
            assert db[dimension].count_documents({}) > 0, dimension
