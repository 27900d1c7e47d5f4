"""Fewer steps, same surface: a site's dimensions are one step and the issue checks run in the
issues' step, while any asset or check can still be selected alone (as the UI does)."""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg

from jira_pipeline_tests.assets.conftest import DIMENSIONS, Pipeline, check_results

ISSUES = dg.AssetKey("jira_issues")


def run_selection(pipeline: Pipeline, selection: dg.AssetSelection) -> dg.ExecuteInProcessResult:
    defs = dg.Definitions.merge(
        pipeline.defs, dg.Definitions(jobs=[dg.define_asset_job("picked_job", selection)])
    )
    job = defs.resolve_job_def("picked_job")
    tags = {"dagster/partition": pipeline.today} if job.partitions_def is not None else {}
    return job.execute_in_process(instance=pipeline.instance, tags=tags)


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    events = result.get_asset_materialization_events()
    return {event.asset_key.to_user_string() for event in events if event.asset_key is not None}


def test_the_dimensions_are_one_step_and_each_keeps_its_own_materialization_and_checks(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=10, days=1)

    result = pipeline.run("jira_dimensions_job")

    steps = {event.step_key for event in result.all_events if event.is_step_start}
    assert steps == {"jira_dimensions"}
    assert materialized(result) == set(DIMENSIONS)
    for name in DIMENSIONS:
        [event] = [e for e in result.get_asset_materialization_events()
                   if e.asset_key == dg.AssetKey(name)]
        figures = event.step_materialization_data.materialization.metadata
        assert figures["collection"].value == name  # written by the IO manager, as its own
        assert figures["dagster/row_count"].value == pipeline.db[name].count_documents({}) > 0
    evaluations = check_results(result)
    assert set(evaluations) == {
        (name, check) for name in DIMENSIONS for check in ("not_empty", "no_duplicate_keys")
    } | {("jira_sprints", "referenced_sprints_stored")}
    assert all(evaluation.passed for evaluation in evaluations.values())
    spec = pipeline.defs.resolve_assets_def("jira_users").specs_by_key[dg.AssetKey("jira_users")]
    assert (spec.group_name, set(spec.kinds)) == ("jira", {"jira", "mongodb"})


def test_one_dimension_selected_alone_is_fetched_and_checked_alone(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=10, days=1)

    result = run_selection(pipeline, dg.AssetSelection.assets("jira_statuses"))

    assert materialized(result) == {"jira_statuses"}
    assert set(check_results(result)) == {
        ("jira_statuses", "not_empty"), ("jira_statuses", "no_duplicate_keys"),
    }  # fmt: skip
    assert pipeline.db["jira_statuses"].count_documents({}) > 0
    assert pipeline.db["jira_projects"].count_documents({}) == 0
    assert pipeline.db["jira_users"].count_documents({}) == 0


def test_the_issue_checks_run_in_the_issues_step_after_its_writes(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=30, days=1)

    result = pipeline.run("jira_issues_job", pipeline.today)

    steps = {event.step_key for event in result.all_events if event.is_step_start}
    assert "jira_issues" in steps and not any("matches_jira_count" in (s or "") for s in steps)
    evaluations = check_results(result)
    in_step = {name for (asset, name) in evaluations if asset == "jira_issues"}
    assert {"matches_jira_count", "no_duplicate_keys", "no_sync_errors"} <= in_step
    checked = [e for e in result.all_events if e.step_key == "jira_issues"
               and e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]
    stored = [e for e in result.all_events if e.step_key == "jira_issues"
              and e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION]
    # references_present waits for the dimensions (their step follows this one).
    assert all(e.asset_check_evaluation_data.check_name != "references_present" for e in checked)
    events = list(result.all_events)
    # Every check of the step is evaluated after the materialization (the writes) it judges.
    assert stored and all(events.index(c) > events.index(stored[-1]) for c in checked)
    count = evaluations[("jira_issues", "matches_jira_count")]
    assert count.passed and count.metadata["stored_count"].value > 0


def test_a_check_selected_alone_runs_without_its_asset(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=10, days=1)
    assert pipeline.run("jira_dimensions_job").success

    result = run_selection(
        pipeline, dg.AssetSelection.checks(dg.AssetCheckKey(ISSUES, "no_duplicate_keys"))
    )

    assert materialized(result) == set()
    assert set(check_results(result)) == {("jira_issues", "no_duplicate_keys")}
    assert pipeline.db["jira_issues"].count_documents({}) == 0
    requests = pipeline.fake.admin.stats()["requests"]
    assert not any("/search/jql" in path for path in requests), requests  # no issue walk


def test_an_asset_selected_without_its_checks_evaluates_none(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=10, days=1)

    result = run_selection(pipeline, dg.AssetSelection.assets("jira_projects").without_checks())

    assert materialized(result) == {"jira_projects"}
    assert check_results(result) == {}


def test_assets_and_checks_declare_their_sites_typed_resources(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=10, days=1)

    for name in ("jira_issues", "jira_projects"):
        assets_def = pipeline.defs.resolve_assets_def(name)
        assert {"jira", "mongo", "mongo_io_manager"} <= set(assets_def.required_resource_keys)
    [fresh] = [checks for checks in pipeline.defs.asset_checks or ()
               if isinstance(checks, dg.AssetChecksDefinition)
               and dg.AssetCheckKey(ISSUES, "fresh") in checks.check_keys]
    assert {"jira", "mongo"} <= set(fresh.required_resource_keys)
