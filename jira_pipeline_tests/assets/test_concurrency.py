"""The repository's dagster.yaml enforced by Dagster's own run queue: two runs syncing one site's
issues never run at once, other sites are not held up, and each site has a run budget.

Runs are queued through a workspace that loads the code location the way `dagster dev` does
(in process here), and one iteration of Dagster's QueuedRunCoordinatorDaemon decides which to
launch. Only the launcher is a stand-in (it records launches instead of starting processes).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus
from dagster._core.storage.tags import PARTITION_NAME_TAG
from dagster._core.test_utils import MockedRunLauncher, create_test_daemon_workspace_context
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
    QueuedRunCoordinatorDaemon,
)

from jira_pipeline.storage.client import get_database
from jira_pipeline.storage.connections import ConnectionRepository

REPO = Path(__file__).resolve().parents[2]
SECOND_SITE = "acme"


def today() -> str:
    """Today's issue partition (UTC days)."""
    return datetime.now(UTC).date().isoformat()


@dataclass
class RunQueue:
    """An instance configured by the repo's dagster.yaml and a workspace on its code location."""

    instance: dg.DagsterInstance
    workspace: WorkspaceProcessContext
    location_name: str

    def submit(
        self,
        job_name: str,
        partition: str | None = None,
        *,
        asset_selection: set[dg.AssetKey] | None = None,
        tags: dict[str, str] | None = None,
    ) -> DagsterRun:
        """Queue a run as the sensor and schedule daemons do: plan it from the code location,
        create it, and submit it to the instance's run coordinator."""
        request = self.workspace.create_request_context()
        location = request.get_code_location(self.location_name)
        [repository] = location.get_repositories().values()
        remote_job = repository.get_full_job(job_name)
        if asset_selection is not None:
            remote_job = location.get_job(JobSubsetSelector(
                location_name=self.location_name, repository_name=repository.name,
                job_name=job_name, op_selection=None, asset_selection=asset_selection,
            ))  # fmt: skip
        plan = location.get_execution_plan(
            remote_job, {}, step_keys_to_execute=None, known_state=None, instance=self.instance
        )
        tags = {**(remote_job.run_tags or {}), **(tags or {})}
        if partition is not None:
            tags[PARTITION_NAME_TAG] = partition
        run = self.instance.create_run(
            job_name=job_name,
            run_id=None,
            run_config={},
            resolved_op_selection=None,
            step_keys_to_execute=None,
            status=DagsterRunStatus.NOT_STARTED,
            op_selection=None,
            root_run_id=None,
            parent_run_id=None,
            tags=tags,
            job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            asset_selection=frozenset(asset_selection) if asset_selection else None,
            asset_check_selection=None,
            asset_graph=repository.asset_graph,
        )
        return self.instance.submit_run(run.run_id, request)

    def submit_for_site(self, site: str, asset: str, partition: str | None = None
                        ) -> DagsterRun:
        """Queue a registered site's run as its sensor requests it: the shared job narrowed to
        the site's asset, with the site's tags (issue runs also carry `jira/issues`)."""
        tags = {"jira/connection": site}
        if asset == "jira_issues":
            tags["jira/issues"] = site
        return self.submit("jira_sites_job", partition,
                           asset_selection={dg.AssetKey([site, asset])}, tags=tags)

    def dequeue(self) -> None:
        """One iteration of the daemon that `dagster dev` runs to launch queued runs."""
        list(QueuedRunCoordinatorDaemon(interval_seconds=1).run_iteration(self.workspace))

    def status(self, run: DagsterRun) -> DagsterRunStatus:
        found = self.instance.get_run_by_id(run.run_id)
        assert found is not None
        return found.status

    def launched(self) -> set[str]:
        launcher = self.instance.run_launcher
        assert isinstance(launcher, MockedRunLauncher)
        return {run.run_id for run in launcher.queue()}

    def finish(self, run: DagsterRun) -> None:
        self.instance.report_dagster_event(
            DagsterEvent(event_type_value=DagsterEventType.RUN_SUCCESS.value,
                         job_name=run.job_name),
            run_id=run.run_id,
        )  # fmt: skip


@pytest.fixture
def run_queue(
    site_env: Callable[..., date], monkeypatch: pytest.MonkeyPatch,
    instance_config: dict[str, Any],
) -> Iterator[RunQueue]:
    """The queue of an instance configured by dagster.yaml, and by dagster.postgres.yaml on a
    real PostgreSQL server when DAGSTER_PG_URL is set."""
    site_env(None, days=5)
    overrides = dict(instance_config)
    # Record launches instead of starting run processes: the one stand-in in this test.
    overrides["run_launcher"] = {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"}
    [location] = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"]
    target = location["python_module"]
    # The code location is imported afresh, under this test's environment.
    monkeypatch.delitem(sys.modules, target["module_name"], raising=False)
    with dg.instance_for_test(overrides=overrides) as instance:
        # DAGSTER_HOME is now the instance's folder: the embedded store lives there. A second
        # site, registered as a connection, gets its own assets and pool (its runs go through
        # the registered sites' shared job, tagged with the site).
        ConnectionRepository(get_database()).add(
            SECOND_SITE, "https://jira.acme.example", auth_type="pat"
        )
        origin = InProcessCodeLocationOrigin(
            LoadableTargetOrigin(module_name=target["module_name"],
                                 working_directory=str(REPO)),
            location_name=target["location_name"],
        )  # fmt: skip
        with create_test_daemon_workspace_context(
            InProcessWorkspaceLoadTarget(origin), instance
        ) as workspace:
            yield RunQueue(instance, workspace, target["location_name"])


def test_a_second_run_of_the_same_sites_issue_partition_waits_until_the_first_ends(
    run_queue: RunQueue,
) -> None:
    day = today()
    first = run_queue.submit("jira_issues_job", day)
    run_queue.dequeue()
    assert run_queue.launched() == {first.run_id}

    second = run_queue.submit("jira_issues_job", day)
    run_queue.dequeue()

    assert run_queue.status(second) == DagsterRunStatus.QUEUED
    run_queue.dequeue()  # held for as long as the first one runs
    assert run_queue.launched() == {first.run_id}

    run_queue.finish(first)
    run_queue.dequeue()

    assert run_queue.launched() == {first.run_id, second.run_id}


def test_runs_queued_together_wait_for_each_other_once_the_pool_is_known(
    run_queue: RunQueue,
) -> None:
    # What a deployment does once (see the next test): create the pool's limit row, here from
    # dagster.yaml's default_limit, before the first runs are queued.
    run_queue.instance.event_log_storage.initialize_concurrency_limit_to_default(
        "jira_issues-default"
    )
    day = today()
    runs = [run_queue.submit("jira_issues_job", day) for _ in range(2)]

    run_queue.dequeue()

    assert run_queue.launched() == {runs[0].run_id}
    assert run_queue.status(runs[1]) == DagsterRunStatus.QUEUED


def test_runs_queued_together_on_a_fresh_instance_wait_for_each_other(
    run_queue: RunQueue,
) -> None:
    # Dagster creates a pool's limit only after the first queue pass that meets it; the
    # `jira/issues` run-tag limit holds from the very first pass.
    day = today()
    runs = [run_queue.submit("jira_issues_job", day) for _ in range(2)]

    run_queue.dequeue()

    assert run_queue.launched() == {runs[0].run_id}
    assert run_queue.status(runs[1]) == DagsterRunStatus.QUEUED


def test_another_sites_issue_run_is_not_held_up_and_has_its_own_limit(
    run_queue: RunQueue,
) -> None:
    day = today()
    first = run_queue.submit("jira_issues_job", day)
    run_queue.dequeue()

    waiting = run_queue.submit("jira_issues_job", day)
    other_site = run_queue.submit_for_site(SECOND_SITE, "jira_issues", day)
    run_queue.dequeue()

    assert run_queue.launched() == {first.run_id, other_site.run_id}
    assert run_queue.status(waiting) == DagsterRunStatus.QUEUED

    other_site_again = run_queue.submit_for_site(SECOND_SITE, "jira_issues", day)
    run_queue.dequeue()
    assert run_queue.status(other_site_again) == DagsterRunStatus.QUEUED


def test_each_site_runs_at_most_two_runs_at_once(run_queue: RunQueue) -> None:
    issues = run_queue.submit("jira_issues_job", today())
    refreshes = [run_queue.submit("jira_dimensions_job") for _ in range(3)]
    other_site = [run_queue.submit_for_site(SECOND_SITE, "jira_projects") for _ in range(2)]

    run_queue.dequeue()

    launched = run_queue.launched()
    assert issues.run_id in launched
    assert len(launched & {run.run_id for run in refreshes}) == 1
    assert {run.run_id for run in other_site} <= launched
