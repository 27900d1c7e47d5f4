"""`sync_bench.py --scope issues` times the sync job's fetch of the dimensions and the issues,
like for like with the bare client's fetch: its op selection must hold every step that fetches
or checks them and no follower."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

from jira_pipeline.assets.factory import build_definitions
from jira_pipeline.assets.jobs import ISSUE_FOLLOWERS

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import sync_bench  # a script beside the package, not an installed module


def test_the_issues_scope_is_the_dimensions_the_issues_and_their_checks(
    site_env: Callable[..., date],
) -> None:
    site_env(None, days=3)
    job = build_definitions().get_repository_def().get_job("jira_sync_job")

    ops = sync_bench.issues_scope_ops(job)

    assert {"jira_dimensions", "jira_issues", "jira_issues_fresh"} <= set(ops)
    assert not set(ops) & {*ISSUE_FOLLOWERS, "jira_issue_daily_summary"}
    # A valid selection of the job: it keeps exactly those steps.
    subset = job.get_subset(op_selection=ops)
    assert sorted(node.name for node in subset.graph.nodes) == ops
    # Every step left out is a follower's (its checks run in its own step).
    left_out = {node.name for node in job.graph.nodes} - set(ops)
    assert left_out == {*ISSUE_FOLLOWERS, "jira_issue_daily_summary"}
