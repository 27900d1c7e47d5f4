"""`jira_issues`: issues by daily partition of `updated`, each partition a delta-sync window."""

from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Any

import dagster as dg
from pydantic import Field

from jira_pipeline.assets.dimensions import NETWORK_RETRY_POLICY
from jira_pipeline.assets.partitions import partition_key_for
from jira_pipeline.assets.resources import JiraResource
from jira_pipeline.assets.sites import JiraSite
from jira_pipeline.assets.streams import IO_MANAGER_KEY, JiraRecordStream, writing_store
from jira_pipeline.jira import IssueRecord, IssueWindow, build_issue_jql
from jira_pipeline.settings import PipelineSettings
from jira_pipeline.storage.io_manager import CONNECTION_METADATA_KEY
from jira_pipeline.storage.resources import MongoResource
from jira_pipeline.storage.upserts import mark_deleted_except
from jira_pipeline.timeutil import utc_now

# Everything Jira knows of an issue, and its history: stored whole under `raw`.
ISSUE_FIELDS = ("*all",)
ISSUE_EXPAND = ("changelog",)


class IssueSyncConfig(dg.Config):
    """Run-time choices for one `jira_issues` run (all optional)."""

    reconcile_deletions: bool | None = Field(
        default=None,
        description="Mark stored issues that no longer exist in Jira as deleted. Default: only "
        "when the run includes today's partition.",
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
        today = partition_key_for(partitions, utc_now())
        reconcile = (
            config.reconcile_deletions
            if config.reconcile_deletions is not None
            else today in context.partition_keys
        )
        context.log.info(
            f"fetching issues updated in [{window.start.isoformat()}, {window.end.isoformat()}) "
            f"({len(context.partition_keys)} partition(s), lookback {lookback})"
        )

        def reconcile_deleted() -> Mapping[str, Any]:
            if not reconcile:
                return {"marked_deleted": 0, "reconciled": False}
            return {
                "marked_deleted": mark_deleted_issues(
                    jira, mongo, site, settings, lookback, context.log
                ),
                "reconciled": True,
            }

        return JiraRecordStream(
            jira,
            lambda client: client.search_window(
                window, projects=settings.projects or None, fields=ISSUE_FIELDS,
                expand=ISSUE_EXPAND,
            ),
            lambda raw: IssueRecord.from_raw(raw, site.connection_id),
            preview_fields=("key", "summary", "status_name", "updated"),
            after_write=reconcile_deleted,
        )

    return jira_issues


def mark_deleted_issues(
    jira: JiraResource,
    mongo: MongoResource,
    site: JiraSite,
    settings: PipelineSettings,
    lookback: timedelta,
    log: Any,
) -> int:
    """Mark stored issues that Jira no longer returns as deleted; returns how many.

    No incremental JQL returns a deleted issue, so the only way to notice one is to compare the
    stored ids with every id Jira has in the synced range: a `fields=id` walk costs one request
    per 5,000 issues. A run has just stored every issue Jira changed, so when Jira's count for
    the range equals the stored live count nothing was deleted, and one count request replaces
    the walk. (Jira calls its count approximate; a count that is off only costs a walk, or,
    if it exactly hides a deletion, defers it to a later run.)
    """
    start = datetime.combine(settings.sync_start_date, time(0), tzinfo=UTC) - lookback
    # Bounded on both sides like every query we send; the future end covers clock skew.
    scope_window = IssueWindow(start, utc_now() + timedelta(days=1))
    jql = build_issue_jql(scope_window, projects=settings.projects or None)
    scope: dict[str, Any] = {"updated": {"$gte": start}}
    if settings.projects:
        scope["project_key"] = {"$in": list(settings.projects)}
    db = mongo.get_database()
    in_jira = jira.run(lambda client: client.count_issues(jql))
    stored_live = db["jira_issues"].count_documents(
        {**scope, "connection_id": site.connection_id, "is_deleted": {"$ne": True}}
    )
    if in_jira == stored_live:
        log.info(f"Jira and MongoDB both hold {in_jira} live issue(s) in the synced range: "
                 "nothing deleted")
        return 0
    live = set(jira.iterate(lambda client: client.issue_ids(jql), max_buffered=5000))
    if not live:
        log.warning("Jira returned no issue ids for the synced range: nothing marked deleted")
        return 0
    marked = mark_deleted_except(db, "issues", site.connection_id, live,
                                 scope=scope)
    if marked:
        log.info(f"marked {marked} issue(s) deleted: they no longer exist in Jira")
    return marked
