"""`jira_issues`: issues by daily partition of `updated`, each partition a delta-sync window."""

from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import dagster as dg
from pydantic import Field

from jira_pipeline.assets.census import IssueCensus, IssueRecordStream, census_enabled
from jira_pipeline.assets.dimensions import NETWORK_RETRY_POLICY
from jira_pipeline.assets.resources import JiraResource
from jira_pipeline.assets.sites import JiraSite
from jira_pipeline.assets.streams import (
    IO_MANAGER_KEY,
    JiraRecordStream,
    failing_fast,
    writing_store,
)
from jira_pipeline.jira import IssueRecord, IssueWindow, build_issue_jql
from jira_pipeline.settings import PipelineSettings
from jira_pipeline.storage.io_manager import CONNECTION_METADATA_KEY
from jira_pipeline.storage.sync_errors import UnstorableRecord

# Everything Jira knows of an issue, and its history: stored whole under `raw`.
ISSUE_FIELDS = ("*all",)
ISSUE_EXPAND = ("changelog",)


class IssueSyncConfig(dg.Config):
    """Run-time choices for one `jira_issues` run (all optional)."""

    reconcile_deletions: bool | None = Field(
        default=None,
        description="Run the issue census: fetch the issues Jira has over the synced range that "
        "MongoDB lacks, and mark deleted the stored ones Jira provably lacks. Default: only in "
        "the daily schedule's runs (tag jira/census), never in sensor runs.",
    )
    lookback_minutes: int | None = Field(
        default=None, ge=0, description="Override JIRA_LOOKBACK_MINUTES for this run."
    )


def build_issues_asset(
    site: JiraSite, partitions: dg.DailyPartitionsDefinition, settings: PipelineSettings
) -> dg.AssetsDefinition:
    @dg.asset(
        key=site.asset_key("jira_issues"),
        group_name=site.group_name,
        description=(
            "Jira issues with every field and the changelog under `raw`. A daily partition "
            "holds the issues whose `updated` falls on that UTC day; today's partition is the "
            "delta the schedule and the refresh sensor keep current."
        ),
        partitions_def=partitions,
        # A backfill of any length is one run: memory is bounded by a batch, not by the range.
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=NETWORK_RETRY_POLICY,
        pool=site.pool,
        io_manager_key=IO_MANAGER_KEY,
        required_resource_keys={site.resource_key, IO_MANAGER_KEY},
        metadata={
            CONNECTION_METADATA_KEY: site.connection_id,
            "mongo/collection": "jira_issues",
            "jira/projects": ", ".join(settings.projects) or "all visible projects",
        },
        kinds={"jira", "mongodb"},
        tags={"jira/connection": site.name},
    )
    def jira_issues(context: dg.AssetExecutionContext, config: IssueSyncConfig) -> JiraRecordStream:
        jira: JiraResource = getattr(context.resources, site.resource_key)
        mongo = writing_store(context)
        lookback = (
            timedelta(minutes=config.lookback_minutes)
            if config.lookback_minutes is not None
            else settings.lookback
        )
        time_window = context.partition_time_window
        window = IssueWindow(time_window.start, time_window.end).widened(lookback)
        census = (
            IssueCensus(jira, mongo.get_database(), site, settings, lookback, context.log,
                        fields=ISSUE_FIELDS, expand=ISSUE_EXPAND)
            if census_enabled(config.reconcile_deletions, context.run.tags)
            else None
        )
        written: set[int] = set()  # ids of this run's window records: the census skips them
        context.log.info(
            f"fetching issues updated in [{window.start.isoformat()}, {window.end.isoformat()}) "
            f"({len(context.partition_keys)} partition(s), lookback {lookback})"
        )

        def reconcile_deleted() -> Mapping[str, Any]:
            if census is None:
                return {"marked_deleted": 0, "reconciled": False}
            with failing_fast():
                census.mark_vanished()
            return census.metadata()

        def window_record(raw: dict[str, Any]) -> IssueRecord:
            if census is not None and str(raw.get("id", "")).isdigit():
                written.add(int(raw["id"]))
            return IssueRecord.from_raw(raw, site.connection_id)

        def census_records() -> Iterator[IssueRecord | UnstorableRecord]:
            assert census is not None
            with failing_fast():
                for raw in census.missing_issues(written):
                    try:
                        yield IssueRecord.from_raw(raw, site.connection_id)
                    except ValueError as error:  # files it in jira_sync_errors, as the window does
                        yield UnstorableRecord.from_error(raw, error)

        return IssueRecordStream(
            jira,
            lambda client: client.search_window(
                window, projects=settings.projects or None, fields=ISSUE_FIELDS,
                expand=ISSUE_EXPAND,
            ),
            window_record,
            preview_fields=("key", "summary", "status_name", "updated"),
            after_write=reconcile_deleted,
            then=census_records if census is not None else None,
            progress=jira.walk_progress(context.log, "issues", jql=build_issue_jql(
                window, projects=settings.projects or None)),
        )

    return jira_issues
