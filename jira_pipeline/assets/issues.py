"""`jira_issues`: issues by daily partition of `updated`, each partition a delta-sync window."""

from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import timedelta
from typing import Any

import dagster as dg
from pydantic import Field

from jira_pipeline.assets.census import IssueCensus, census_enabled
from jira_pipeline.assets.checks import issue_check_results, issue_check_specs
from jira_pipeline.assets.dimensions import NETWORK_RETRY_POLICY
from jira_pipeline.assets.resources import JiraResource
from jira_pipeline.assets.site_resource import with_site_resource
from jira_pipeline.assets.sites import JiraSite
from jira_pipeline.assets.streams import JiraRecordStream, stored_asset_spec
from jira_pipeline.jira import IssueRecord, IssueWindow, JiraClient, build_issue_jql
from jira_pipeline.settings import PipelineSettings
from jira_pipeline.storage.resources import MongoResource
from jira_pipeline.storage.sync_errors import UnstorableRecord

# Everything Jira knows of an issue: stored whole under `raw`. Not its changelog: Jira embeds
# only the first 100 histories; `jira_issue_changelogs` fetches them all (changelog/bulkfetch).
ISSUE_FIELDS = ("*all",)
ISSUE_EXPAND: tuple[str, ...] = ()


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
    issues_key = site.asset_key("jira_issues")

    # A multi-asset of one asset: `@dg.asset` cannot subset its checks.
    @dg.multi_asset(
        name=issues_key.to_python_identifier(),
        specs=[
            stored_asset_spec(
                site, "jira_issues",
                "Jira issues with every field under `raw`. A daily partition holds the issues "
                "whose `updated` falls on that UTC day; today's partition is the delta the "
                "schedule and the refresh sensor keep current.",
                metadata={"jira/projects": ", ".join(settings.projects)
                          or "all visible projects"},
            )
        ],
        partitions_def=partitions,
        # A backfill of any length is one run: memory is bounded by a batch, not by the range.
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=NETWORK_RETRY_POLICY,
        pool=site.pool,
        # Evaluated in this step once its issues are written; `fresh` is a check of its own.
        check_specs=issue_check_specs(site, partitions),
        # The UI may select the asset without its checks, or checks without the asset.
        can_subset=True,
    )
    @with_site_resource(site)
    def jira_issues(
        context: dg.AssetExecutionContext,
        config: IssueSyncConfig,
        jira: JiraResource,
        mongo: MongoResource,
    ) -> Iterator[dg.Output | dg.AssetCheckResult | dg.AssetCheckEvaluation]:
        if issues_key in context.selected_asset_keys:
            # Dagster calls the IO manager's handle_output (which drains and writes the stream)
            # before this generator resumes: the checks below read what it wrote.
            yield dg.Output(
                issue_stream(context, config, jira, mongo, site, settings),
                output_name=context.assets_def.get_output_name_for_asset_key(issues_key),
            )
        yield from issue_check_results(
            context, jira, mongo.get_database(), site, settings, partitions
        )

    return jira_issues


def issue_stream(
    context: dg.AssetExecutionContext,
    config: IssueSyncConfig,
    jira: JiraResource,
    mongo: MongoResource,
    site: JiraSite,
    settings: PipelineSettings,
) -> JiraRecordStream:
    """The step's partitions' issues; with the census, then the issues it found missing and the
    tombstone of those Jira provably lacks."""
    lookback = (
        timedelta(minutes=config.lookback_minutes)
        if config.lookback_minutes is not None
        else settings.lookback
    )
    time_window = context.partition_time_window
    window = IssueWindow(time_window.start, time_window.end).widened(lookback)
    # The census reads the store through the `mongo` resource; it writes nothing itself.
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

    # Data Center names epics' children's epic in the Epic Link custom field: its id, asked of
    # Jira by the walk before its first issue (one /field request; Cloud uses `parent`).
    epic_link: dict[str, str | None] = {"field": None}

    async def walk(client: JiraClient) -> AsyncIterator[dict[str, Any]]:
        if client.deployment == "datacenter":
            epic_link["field"] = epic_link_field(await client.fields())
        async for issue in client.search_window(
            window, projects=settings.projects or None, fields=ISSUE_FIELDS,
            expand=ISSUE_EXPAND,
        ):
            yield issue

    def window_record(raw: dict[str, Any]) -> IssueRecord:
        if census is not None and str(raw.get("id", "")).isdigit():
            written.add(int(raw["id"]))
        return IssueRecord.from_raw(raw, site.connection_id, epic_link["field"])

    def census_records() -> Iterator[IssueRecord | UnstorableRecord]:
        assert census is not None
        for raw in census.missing_issues(written):
            try:
                yield IssueRecord.from_raw(raw, site.connection_id, epic_link["field"])
            except ValueError as error:  # files it in jira_sync_errors, as the window does
                yield UnstorableRecord.from_error(raw, error)

    def census_figures() -> Mapping[str, Any]:
        return census.metadata() if census is not None else {"reconciled": False}

    return JiraRecordStream(
        jira,
        walk,
        window_record,
        preview_fields=("key", "summary", "status_name", "updated"),
        then=census_records if census is not None else None,
        deletions=census.vanished if census is not None else None,
        report=census_figures,
        progress=jira.walk_progress(context.log, "issues", jql=build_issue_jql(
            window, projects=settings.projects or None)),
    )


EPIC_LINK_SCHEMA = "com.pyxis.greenhopper.jira:gh-epic-link"


def epic_link_field(fields: list[dict[str, Any]]) -> str | None:
    """The id of the Epic Link custom field in Jira's field list, if the site has one."""
    for field in fields:
        schema = field.get("schema") if isinstance(field, dict) else None
        if isinstance(schema, dict) and schema.get("custom") == EPIC_LINK_SCHEMA:
            return str(field.get("id")) if field.get("id") else None
    return None
