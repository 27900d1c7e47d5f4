"""A sync in a process of its own, for tests that kill it: `python -m
jira_pipeline_tests.resilience.sync_process JOB FIRST LAST` runs JOB over the partition range
FIRST..LAST (one run) against the persistent Dagster instance of $DAGSTER_HOME; asset names
after LAST narrow the run to those of JOB's assets."""

from __future__ import annotations

import sys

import dagster as dg

from jira_pipeline.assets.factory import build_definitions
from jira_pipeline.assets.schedules import partition_range_tags


def main(job: str, first: str, last: str, *assets: str) -> int:
    defs = build_definitions()
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def(job).execute_in_process(
            instance=instance, tags=partition_range_tags(first, last), raise_on_error=False,
            asset_selection=[dg.AssetKey(name) for name in assets] or None,
        )
    print(f"run {result.run_id} {'succeeded' if result.success else 'failed'}", flush=True)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
