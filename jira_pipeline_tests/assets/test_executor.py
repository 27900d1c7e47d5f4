"""Every run of the code location executes its steps in the run's own process: the jobs, and the
implicit asset job behind the UI's "Materialize" and `dagster asset materialize`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg

from jira_pipeline.assets.factory import build_definitions
from jira_pipeline.fakejira import FakeJiraHandle
from jira_pipeline_tests.assets.conftest import this_hour

REPO = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).with_name("dagster")


def step_pids(events: Sequence[Any]) -> set[int]:
    """The processes that ran a run's steps (their step events' pids)."""
    return {event.dagster_event.pid for event in events
            if event.dagster_event is not None and event.dagster_event.step_key is not None
            and event.dagster_event.pid is not None}


def run_pid(events: Sequence[Any]) -> int:
    (start,) = [e for e in events if e.dagster_event_type == dg.DagsterEventType.RUN_START]
    return int(start.dagster_event.pid)


def test_every_job_and_the_implicit_asset_job_use_the_in_process_executor(
    site_env: Callable[..., date],
) -> None:
    site_env(None, days=3)

    defs = build_definitions()

    repository = defs.get_repository_def()
    jobs = repository.get_all_jobs()
    assert {"jira_sync_job", "jira_issues_job", "jira_dimensions_job"} <= {j.name for j in jobs}
    implicit = defs.resolve_implicit_global_asset_job_def()
    for job in (*jobs, implicit):
        assert job.executor_def.name == "in_process", job.name


def test_dagster_asset_materialize_runs_every_step_in_one_process(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    site_env: Callable[..., date],
) -> None:
    fake = fake_jira_factory(issues=20, days=2, now=this_hour(), seed=1)
    site_env(fake, days=3)

    materialized = subprocess.run(
        [str(DAGSTER), "asset", "materialize", "-m", "jira_pipeline.definitions",
         "--select", "jira_projects,jira_statuses"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )

    assert materialized.returncode == 0, materialized.stderr[-3000:]
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].is_success
        events = instance.all_logs(runs[0].run_id)
    started = [e for e in events if e.dagster_event_type == dg.DagsterEventType.STEP_START]
    assert started, "no step ran"
    checked = [e for e in events
               if e.dagster_event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]
    assert checked, "the selected assets' checks did not run"
    assert step_pids(events) == {run_pid(events)}
    assert any("in process" in (event.message or "") for event in events)


def test_dagster_job_execute_runs_every_step_of_a_job_in_one_process(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    site_env: Callable[..., date],
) -> None:
    job_name = "jira_dimensions_job"
    fake = fake_jira_factory(issues=20, days=2, now=this_hour(), seed=1)
    site_env(fake, days=3)

    launched = subprocess.run(
        [str(DAGSTER), "job", "execute", "-m", "jira_pipeline.definitions", "-j", job_name],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )

    assert launched.returncode == 0, launched.stderr[-3000:]
    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs()
        events = instance.all_logs(run.run_id)
    started = [e for e in events if e.dagster_event_type == dg.DagsterEventType.STEP_START]
    assert started
    assert step_pids(events) == {run_pid(events)}
