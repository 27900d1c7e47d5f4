"""`jira_issue_daily_summary`: per UTC day, project and status, counted from the stored issues
and their history into the MongoDB collection of the same name, partitioned like `jira_issues`.

What a partition's rows mean: the rows of its UTC day, each complete whatever partition its
issues sit in. `issues_updated` counts the issues changed that day (a history entry, or their
last update), each under the project and status it was in at the end of that day: read from
status history (`jira_issue_status_transitions`), so an issue edited again later still counts on
the earlier day, in the status it had then. `created` and `resolved` count the project's issues
created and resolved that day, though those issues are usually updated later (another
`jira_issues` partition). So a partition reads the issues whose `updated`, `created` or
`resolution_date` falls on its day (projected to five key fields; see `StoredIssueDays` for the
queries), the history entries of its day and the status intervals of their issues, and replaces
that day's rows. The first partition also holds the days before it (issues created before the
sync start date) and the last the days after it, as `jira_issues` does.

Status and project names are the stored ones now (a status renamed in Jira shows under its new
name on every day summarised after the rename). A day's rows are as fresh as the day's last run;
the daily schedule reruns yesterday and today, a backfill its range. An issue deleted in Jira
leaves the days summarised after its deletion.
"""

import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
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
    day_of,
    in_range,
)
from jira_pipeline.storage.entities import DAILY_SUMMARY
from jira_pipeline.storage.io_manager import CONNECTION_METADATA_KEY

SUMMARY_COLUMNS = ["day", "project_key", "status_name", "issues_updated", "created", "resolved"]
NO_STATUS = "(none)"
NONE_UPDATED = "(none updated)"
PREVIEW_ROWS = 10


def summarise(
    issues: Iterable[Mapping[str, Any]], days: DayRange,
    changes: Iterable[tuple[datetime, str | None, str | None]] | None = None,
) -> list[dict[str, Any]]:
    """The summary rows of the days in `days`, from issues holding at least those whose
    `updated`, `created` or `resolution_date` lies in it (others are ignored) and the changes of
    those days (`StoredIssueDays.changes`: day, project and status at the end of the day, once
    per issue and day); without `changes`, each issue counts on its last update's day in its
    current status. Sorted by day, project and status. Memory holds the rows, never the
    issues."""
    updated: dict[tuple[datetime, str], Counter[str]] = defaultdict(Counter)
    created: Counter[tuple[datetime, str]] = Counter()
    resolved: Counter[tuple[datetime, str]] = Counter()
    for day, project_key, status_name in changes or ():
        if in_range(day, days):
            updated[(day, project_key or NO_STATUS)][status_name or NO_STATUS] += 1
    for issue in issues:
        project = issue.get("project_key") or NO_STATUS
        if changes is None and in_range(issue.get("updated"), days):
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
        # in a run with them, the summary counts under the new names. The changelogs and status
        # history say what each issue was on the days it changed: in a run with them, the
        # summary reads what they just wrote.
        deps=[site.asset_key("jira_projects"), site.asset_key("jira_statuses"),
              site.asset_key("jira_issue_changelogs"),
              site.asset_key("jira_issue_status_transitions")],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        io_manager_key=IO_MANAGER_KEY,
        description="Per UTC day, project and status: issues changed that day (in the status "
        "they had at the end of it, from status history), and the project's issues created and "
        "resolved that day. A partition replaces its day's rows in the MongoDB collection "
        "jira_issue_daily_summary, read from the issues whose updated, created or resolution "
        "date falls on that day, that day's changelog entries and their status intervals.",
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
        ranges = [SummaryRange(days, summarise(issues.issues_touching(days), days,
                                               issues.changes(days)))
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
                "change_queries": issues.change_queries,
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
