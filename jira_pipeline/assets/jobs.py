"""Each site's jobs: the daily sync, the issue delta, and the dimension refresh."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from jira_pipeline.assets.sites import JiraSite

DIMENSION_ASSETS = ("jira_projects", "jira_statuses", "jira_users", "jira_fields",
                    "jira_issue_types", "jira_priorities", "jira_resolutions",
                    "jira_status_categories", "jira_boards", "jira_sprints",
                    "jira_project_versions", "jira_project_components")
# Derived from the stored issues and their changelogs (no request to Jira).
HISTORY_ASSETS = ("jira_issue_field_history", "jira_issue_status_transitions",
                  "jira_time_in_status_daily", "jira_sprint_issues", "jira_sprint_report")
# What every issue run also materializes: the comments, changelogs and history of the synced
# issue window (partitioned like jira_issues), and the worklogs (not partitioned: the site-wide
# worklog feed, which Dagster materializes once in each run of the partitioned jobs).
ISSUE_FOLLOWERS = ("jira_issue_comments", "jira_issue_changelogs", "jira_worklogs",
                   *HISTORY_ASSETS,
                   "jira_issue_links")
# Every step of a run runs in the run's own process: the multiprocess executor started a process
# per asset and per check, each importing Dagster and rebuilding the code location (most of a
# run's wall time and CPU), while the I/O concurrency a sync needs already lives in the client.
# Set on each job and, in factory.build_definitions, as the code location's default executor
# (what the implicit asset job behind the UI's "Materialize" and `dagster asset materialize` uses).
RUN_EXECUTOR = dg.in_process_executor


@dataclass(frozen=True)
class SiteJobs:
    sync: dg.UnresolvedAssetJobDefinition
    issues: dg.UnresolvedAssetJobDefinition
    dimensions: dg.UnresolvedAssetJobDefinition

    def all(self) -> list[dg.UnresolvedAssetJobDefinition]:
        return [self.sync, self.issues, self.dimensions]


def build_site_jobs(site: JiraSite) -> SiteJobs:
    # Partitioning is inferred from the selected assets (jira_issues' daily partitions).
    dimensions = [site.asset_key(name) for name in DIMENSION_ASSETS]
    issues = site.asset_key("jira_issues")
    summary = site.asset_key("jira_issue_daily_summary")
    # The partitioned assets that follow every issue delta (an edited issue may have new
    # comments and histories): in the sync job and in the job the sensor requests.
    followers = [site.asset_key(name) for name in ISSUE_FOLLOWERS]
    return SiteJobs(
        sync=dg.define_asset_job(
            site.object_name("jira_sync_job"),
            selection=dg.AssetSelection.assets(*dimensions, issues, summary, *followers),
            tags=site.issue_run_tags,
            executor_def=RUN_EXECUTOR,
            description="Dimensions, the chosen issue partitions, and the daily summary.",
        ),
        issues=dg.define_asset_job(
            site.object_name("jira_issues_job"),
            selection=dg.AssetSelection.assets(issues, *followers),
            tags=site.issue_run_tags,
            executor_def=RUN_EXECUTOR,
            description="The chosen `jira_issues` partitions and what follows each issue "
            "(comments, changelogs, worklogs, history): what the sensor requests.",
        ),
        dimensions=dg.define_asset_job(
            site.object_name("jira_dimensions_job"),
            selection=dg.AssetSelection.assets(*dimensions),
            tags=site.run_tags,
            executor_def=RUN_EXECUTOR,
            description="Projects, statuses, users, fields and the reference data (issue types, "
            "priorities, resolutions, status categories): full refresh.",
        ),
    )


SITES_JOB = "jira_sites_job"


def build_sites_job(asset_keys: Sequence[dg.AssetKey]) -> dg.UnresolvedAssetJobDefinition:
    """One job for every registered site's assets (`asset_keys`); each run selects one site's
    (a job per site and kind made the code location's load grow by about 0.1 s a site). The
    keys are listed rather than the sites' groups: Dagster resolves each group by a scan of
    every asset, which grew with the square of the sites (9% of a 1,000-site load)."""
    return dg.define_asset_job(
        SITES_JOB,
        selection=dg.AssetSelection.assets(*asset_keys),
        description="The assets of the sites registered in jira_connections. The schedule and "
        "the sensor narrow each run to one site's assets (and tag it with the site); "
        "materialize a site's assets from its group.",
        executor_def=RUN_EXECUTOR,
    )
