"""The code location Dagster loads: it validates, holds what the UI should show, and a missing
or malformed setting fails at load time with one message naming the variable."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._serdes import serialize_value

from jira_pipeline.settings import ConfigurationError
from jira_pipeline_tests.assets.conftest import DIMENSIONS, MADE_UP_TOKEN

HISTORY = {"jira_issue_field_history", "jira_issue_status_transitions",
           "jira_time_in_status_daily", "jira_sprint_issues", "jira_sprint_report"}
ASSETS = {*DIMENSIONS, "jira_issues", "jira_issue_daily_summary", "jira_issue_comments",
          "jira_issue_changelogs", "jira_worklogs", *HISTORY, "jira_issue_links"}
REPO = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).with_name("dagster")


def load_code_location(monkeypatch: pytest.MonkeyPatch) -> dg.Definitions:
    """`jira_pipeline.definitions.defs`, loaded as Dagster loads it: the `@dg.definitions`
    function, called under the current environment (the import alone builds nothing)."""
    monkeypatch.delitem(sys.modules, "jira_pipeline.definitions", raising=False)
    return importlib.import_module("jira_pipeline.definitions").defs()


def test_code_location_loads_and_validates_with_every_asset_job_schedule_sensor_and_check(
    site_env: Callable[..., date], monkeypatch: pytest.MonkeyPatch
) -> None:
    start = site_env(None, days=40)

    defs = load_code_location(monkeypatch)

    dg.Definitions.validate_loadable(defs)
    repository = defs.get_repository_def()
    repository.load_all_definitions()
    graph = repository.asset_graph
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} == ASSETS
    assert {graph.get(dg.AssetKey(name)).group_name for name in ASSETS} == {"jira"}
    assert {job.name for job in repository.get_all_jobs()} >= {
        "jira_sync_job", "jira_issues_job", "jira_dimensions_job",
    }  # fmt: skip
    assert [s.name for s in repository.schedule_defs] == ["jira_daily_schedule"]
    assert [s.name for s in repository.sensor_defs] == ["jira_refresh_sensor"]
    checks = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    assert checks == {
        ("jira_issues", "matches_jira_count"), ("jira_issues", "no_duplicate_keys"),
        ("jira_issues", "references_present"), ("jira_issues", "fresh"),
        ("jira_issues", "reference_data_present"), ("jira_issues", "project_parts_present"),
        ("jira_issues", "no_sync_errors"), ("jira_issue_comments", "comments_complete"),
        ("jira_issue_changelogs", "changelog_complete"),
        ("jira_worklogs", "worklog_totals_match"),
        ("jira_issue_field_history", "field_history_consistent"),
        ("jira_sprints", "referenced_sprints_stored"),
        ("jira_sprint_issues", "sprint_membership_matches_jira"),
        *((name, check) for name in DIMENSIONS for check in ("not_empty", "no_duplicate_keys")),
    }  # fmt: skip

    issues = defs.resolve_assets_def("jira_issues")
    partitions = issues.partitions_def
    assert isinstance(partitions, dg.DailyPartitionsDefinition)
    assert partitions.timezone == "UTC" and partitions.end_offset == 1
    keys = partitions.get_partition_keys()
    assert keys[0] == start.isoformat()
    assert keys[-1] == datetime.now(UTC).date().isoformat()  # today is a partition
    assert issues.backfill_policy == dg.BackfillPolicy.single_run()
    assert issues.op.pool == "jira_issues-default"  # one run at a time: dagster.yaml
    for name in ("jira_issues", *DIMENSIONS, "jira_issue_comments"):
        node = defs.resolve_assets_def(name).op
        assert node.retry_policy is not None and node.retry_policy.max_retries >= 1, name


def dagster_definitions_validate() -> subprocess.CompletedProcess[str]:
    """The command a user runs on this repository's workspace.yaml, in this environment."""
    return subprocess.run(
        [str(DAGSTER), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )


def test_dagster_definitions_validate_accepts_the_workspace(
    site_env: Callable[..., date],
) -> None:
    site_env(None, days=3)

    validated = dagster_definitions_validate()

    assert validated.returncode == 0, validated.stderr[-2000:]
    assert "All code locations passed validation" in validated.stderr + validated.stdout


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [("JIRA_LOOKBACK_MINUTES", "ten", "JIRA_LOOKBACK_MINUTES must be a whole number, got 'ten'"),
     # a 5-field string Dagster itself refuses: the message names the variable, not the schedule
     ("JIRA_SCHEDULE_CRON", "99 2 * * *", "JIRA_SCHEDULE_CRON must be a cron schedule Dagster "
      "accepts")],
)  # fmt: skip
def test_dagster_definitions_validate_names_a_malformed_variable(
    site_env: Callable[..., date], monkeypatch: pytest.MonkeyPatch, variable: str, value: str,
    message: str,
) -> None:
    site_env(None, days=3)
    monkeypatch.setenv(variable, value)

    validated = dagster_definitions_validate()

    output = validated.stdout + validated.stderr
    assert validated.returncode != 0
    assert message in output
    assert MADE_UP_TOKEN not in output


def test_the_api_token_never_reaches_what_the_ui_is_shown(
    site_env: Callable[..., date], monkeypatch: pytest.MonkeyPatch
) -> None:
    site_env(None, days=3)

    defs = load_code_location(monkeypatch)

    snapshot = serialize_value(RepositorySnap.from_def(defs.get_repository_def()))
    assert "JIRA_API_TOKEN" in snapshot  # the resource points at the variable...
    assert MADE_UP_TOKEN not in snapshot  # ...never at its value


def test_without_any_site_loading_fails_naming_jira_base_url(
    site_env: Callable[..., date], monkeypatch: pytest.MonkeyPatch
) -> None:
    site_env(None, days=3)
    for name in ("JIRA_BASE_URL", "JIRA_EMAIL", "JIRA_API_TOKEN"):
        monkeypatch.delenv(name)

    with pytest.raises(ConfigurationError, match=r"^JIRA_BASE_URL ") as raised:
        load_code_location(monkeypatch)
    assert raised.value.variable == "JIRA_BASE_URL"
