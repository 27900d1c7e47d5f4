"""`jira_daily_schedule`: each day, yesterday's and today's issue partitions and the dimensions."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from jira_pipeline.assets.census import CENSUS_TAG
from jira_pipeline.assets.jobs import HISTORY_ASSETS, SiteJobs
from jira_pipeline.assets.partitions import partition_key_for
from jira_pipeline.assets.sites import JiraSite
from jira_pipeline.settings import PipelineSettings


def partition_range_tags(first: str, last: str) -> dict[str, str]:
    """Tags that make one run cover a range of partitions (how single-run backfills work)."""
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}


def build_daily_schedule(
    site: JiraSite,
    jobs: SiteJobs,
    partitions: dg.DailyPartitionsDefinition,
    settings: PipelineSettings,
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=site.object_name("jira_daily_schedule"),
        cron_schedule=settings.schedule_cron,
        execution_timezone="UTC",
        job=jobs.sync,
        description="Yesterday's and today's jira_issues partitions (late updates to yesterday "
        "land too), the issue census of the whole synced range, the dimension assets, and the "
        "daily summary, in one run.",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def jira_daily_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        now = context.scheduled_execution_time
        yesterday, today = (
            partition_key_for(partitions, now - timedelta(days=1)),
            partition_key_for(partitions, now),
        )
        return dg.RunRequest(
            run_key=f"daily:{today}",
            # The census tag: the daily run also reconciles the whole synced range with Jira.
            tags={**site.issue_run_tags, **partition_range_tags(yesterday, today),
                  CENSUS_TAG: "true"},
        )

    return jira_daily_schedule


SITES_DAILY_SCHEDULE = "jira_sites_daily_schedule"


def site_sync_keys(site: JiraSite) -> list[dg.AssetKey]:
    """What a site's daily run materializes: its dimensions, issues and daily summary."""
    names = ("jira_projects", "jira_statuses", "jira_users", "jira_issues",
             "jira_issue_daily_summary", *HISTORY_ASSETS)
    return [site.asset_key(name) for name in names]


def build_sites_daily_schedule(
    sites: list[JiraSite],
    job: dg.UnresolvedAssetJobDefinition,
    partitions: dg.DailyPartitionsDefinition,
    settings: PipelineSettings,
) -> dg.ScheduleDefinition:
    """`jira_daily_schedule` for every registered site: one tick, one run per site."""

    @dg.schedule(
        name=SITES_DAILY_SCHEDULE,
        cron_schedule=settings.schedule_cron,
        execution_timezone="UTC",
        job=job,
        description="For each site registered in jira_connections, one run of what "
        "jira_daily_schedule runs: yesterday's and today's jira_issues partitions, the issue "
        "census, the dimension assets and the daily summary.",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def jira_sites_daily_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        now = context.scheduled_execution_time
        yesterday, today = (
            partition_key_for(partitions, now - timedelta(days=1)),
            partition_key_for(partitions, now),
        )
        return [
            dg.RunRequest(
                run_key=f"daily:{site.name}:{today}",
                asset_selection=site_sync_keys(site),
                tags={**site.issue_run_tags, **partition_range_tags(yesterday, today),
                      CENSUS_TAG: "true"},
            )
            for site in sites
        ]

    return jira_sites_daily_schedule
