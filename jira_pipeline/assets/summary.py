"""`jira_issue_daily_summary`: per UTC day, project and status, counted from the stored issues
into the MongoDB collection of the same name, partitioned like `jira_issues`.

What a partition's rows mean: the rows of its UTC day, each complete whatever partition its
issues sit in. `issues_updated` counts the issues last updated that day in each status (their
current status); `created` and `resolved` count the project's issues created and resolved that
day, though those issues are usually updated later (another `jira_issues` partition). So a
partition reads the issues whose `updated`, `created` or `resolution_date` falls on its day
(projected to five key fields; see `StoredIssueDays` for the queries) and replaces that day's
rows. The first partition also holds the days before it (issues created before the sync start
date) and the last the days after it, as `jira_issues` does.

A day's rows are as fresh as the day's last run: an issue edited today leaves its earlier
day's `issues_updated` when that day's partition runs again (the daily schedule reruns yesterday and
today; a backfill reruns its range), and a status renamed in Jira shows under its new name on
the days summarised after the rename.
"""

import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from jira_pipeline.assets.partitions import partition_key_for
from jira_pipeline.assets.sites import JiraSite
from jira_pipeline.assets.streams import IO_MANAGER_KEY, markdown_table
from jira_pipeline.storage.daily_summary import (
    DailySummary,
    DayRange,
    StoredIssueDays,
    SummaryRange,
    aware,
    in_range,
)
from jira_pipeline.storage.entities import DAILY_SUMMARY
from jira_pipeline.storage.io_manager import CONNECTION_METADATA_KEY

SUMMARY_COLUMNS = ["day", "project_key", "status_name", "issues_updated", "created", "resolved"]
NO_STATUS = "(none)"
NONE_UPDATED = "(none updated)"
PREVIEW_ROWS = 10


def day_of(moment: datetime) -> datetime:
    moment = aware(moment)
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)


def summarise(issues: Iterable[Mapping[str, Any]], days: DayRange) -> list[dict[str, Any]]:
    """The summary rows of the days in `days`, from issues holding at least those whose
    `updated`, `created` or `resolution_date` lies in it (others are ignored), sorted by day,
    project and status. Memory holds the rows, never the issues."""
    updated: dict[tuple[datetime, str], Counter[str]] = defaultdict(Counter)
    created: Counter[tuple[datetime, str]] = Counter()
    resolved: Counter[tuple[datetime, str]] = Counter()
    for issue in issues:
        project = issue.get("project_key") or NO_STATUS
        if in_range(issue.get("updated"), days):
            updated[(day_of(issue["updated"]), project)][issue.get("status_name") or NO_STATUS] += 1
        if in_range(issue.get("created"), days):
            created[(day_of(issue["created"]), project)] += 1
        if in_range(issue.get("resolution_date"), days):
            resolved[(day_of(issue["resolution_date"]), project)] += 1
    rows: list[dict[str, Any]] = []
    for day, project in sorted({*updated, *created, *resolved}):
        per_status = updated.get((day, project)) or Counter({NONE_UPDATED: 0})
        for status in sorted(per_status):
            rows.append({
                "day": day, "project_key": project, "status_name": status,
                "issues_updated": per_status[status], "created": created[(day, project)],
                "resolved": resolved[(day, project)],
            })  # fmt: skip
    return rows


def build_summary_asset(
    site: JiraSite, partitions: dg.DailyPartitionsDefinition
) -> dg.AssetsDefinition:
    with warnings.catch_warnings():
        # `backfill_policy` is "beta": a backfill of the summary is one run, as of jira_issues.
        warnings.simplefilter("ignore", dg.BetaWarning)
        return _build_summary_asset(site, partitions)


def _build_summary_asset(
    site: JiraSite, partitions: dg.DailyPartitionsDefinition
) -> dg.AssetsDefinition:
    @dg.asset(
        key=site.asset_key("jira_issue_daily_summary"),
        group_name=site.group_name,
        ins={
            "issues": dg.AssetIn(
                key=site.asset_key("jira_issues"), partition_mapping=dg.IdentityPartitionMapping()
            )
        },
        # Issues carry copies of status names and project keys that these assets' runs refresh:
        # in a run with them, the summary counts under the new names.
        deps=[site.asset_key("jira_projects"), site.asset_key("jira_statuses")],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        io_manager_key=IO_MANAGER_KEY,
        description="Per UTC day, project and status: issues last updated that day (in their "
        "current status), and the project's issues created and resolved that day. A partition "
        "replaces its day's rows in the MongoDB collection jira_issue_daily_summary, read from "
        "the issues whose updated, created or resolution date falls on that day.",
        metadata={
            CONNECTION_METADATA_KEY: site.connection_id,
            "mongo/collection": DAILY_SUMMARY.collection,
        },
        kinds={"mongodb"},
        tags={"jira/connection": site.name},
    )
    def jira_issue_daily_summary(
        context: dg.AssetExecutionContext, issues: StoredIssueDays
    ) -> dg.Output[DailySummary]:
        keys = list(context.partition_keys)
        ranges = [SummaryRange(days, summarise(issues.issues_touching(days), days))
                  for days in issues.ranges]  # fmt: skip
        rows = [row for summary_range in ranges for row in summary_range.rows]
        context.log.info(
            f"summarised {issues.documents_read} stored issue(s) read in {issues.queries} "
            f"quer{'y' if issues.queries == 1 else 'ies'} into {len(rows)} row(s) for "
            f"{len(keys)} day(s)"
        )
        if len(keys) > 1:
            # Each partition's materialization shows its own day's rows.
            by_key: dict[str, list[dict[str, Any]]] = {key: [] for key in keys}
            last = partitions.get_last_partition_key() or keys[-1]
            for row in rows:  # days before the first partition and after the last belong to them
                key = min(partition_key_for(partitions, row["day"]), last)
                by_key.setdefault(key, []).append(row)
            for key in keys:
                context.add_asset_metadata(
                    summary_figures(by_key.get(key, [])), partition_key=key
                )
        return dg.Output(
            DailySummary(site.connection_id, ranges),
            metadata={
                **summary_figures(rows),
                "issues_read": issues.documents_read,
                "issue_queries": issues.queries,
            },
        )

    return jira_issue_daily_summary


def summary_figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "dagster/row_count": len(rows),
        "issues_updated": sum(row["issues_updated"] for row in rows),
        "preview": dg.MetadataValue.md(
            markdown_table(
                [{**row, "day": row["day"].date().isoformat()} for row in rows[-PREVIEW_ROWS:]],
                tuple(SUMMARY_COLUMNS),
            )
        ),
    }
