"""The refresh sensor after a run that Jira's faults failed: the changes it requested are asked
for again on the next tick, and once a run succeeds MongoDB holds exactly what Jira holds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dagster as dg
from pymongo.database import Database

from jira_pipeline.assets.sensors import RefreshCursor
from jira_pipeline.fakejira import FakeJiraHandle
from jira_pipeline_tests.resilience.conftest import (
    SyncTarget,
    fake_issue_versions,
    stored_versions,
    this_hour,
)


def test_sensor_requests_a_failed_runs_changes_again_until_a_run_stores_them(
    fake_jira_factory: Callable[..., FakeJiraHandle],
    point_at: Callable[..., SyncTarget],
    open_store: Callable[[Path], Database],
) -> None:
    fake = fake_jira_factory(issues=120, days=2, now=this_hour())
    target = point_at(fake)
    defs = target.definitions()
    sensor = defs.resolve_sensor_def("jira_refresh_sensor")
    with dg.instance_for_test(set_dagster_home=False) as instance:
        assert target.sync(defs=defs, instance=instance).success
        cursor: str | None = None

        def tick() -> list[dg.RunRequest]:
            nonlocal cursor
            with dg.build_sensor_context(
                instance=instance, cursor=cursor, resources=defs.resources, definitions=defs
            ) as context:
                data = sensor.evaluate_tick(context)
            cursor = data.cursor
            return [r for r in data.run_requests or [] if r.job_name == "jira_issues_job"]

        def launch(request: dg.RunRequest) -> dg.ExecuteInProcessResult:
            return defs.resolve_job_def("jira_issues_job").execute_in_process(
                instance=instance, tags=request.tags, raise_on_error=False
            )

        assert not tick()
        fake.admin.advance_clock(5)
        touched = [fake.admin.touch_issue(row["key"]) for row in fake.admin.issues()[:3]]

        [first] = tick()
        fake.admin.configure(fault_rate=1.0)  # every request answers 5xx: the client gives up
        assert not launch(first).success
        fake.admin.configure(fault_rate=0.0)

        [again] = tick()
        assert again.run_key != first.run_key
        assert launch(again).success
        assert not tick()
        parsed = RefreshCursor.parse(cursor)
        assert parsed is not None and parsed.pending is None

    stored = stored_versions(open_store(target.store_folder))
    assert stored == fake_issue_versions(fake)
    assert {row["id"] for row in touched} <= set(stored)
