"""`jira_issue_daily_summary`: an analyst-facing pandas asset built on the synced issues."""

from typing import Any, cast

import dagster as dg
import pandas as pd

from jira_pipeline.assets.sites import JiraSite
from jira_pipeline.assets.streams import markdown_table

SUMMARY_COLUMNS = ["day", "project_key", "status_name", "issues_updated", "created", "resolved"]


def daily_summary(issues: pd.DataFrame) -> pd.DataFrame:
    """Per UTC day and project: how many issues were last updated in each status, and how many
    issues were created and resolved that day (created/resolved repeat on each status row)."""
    if issues.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    frame = issues.assign(
        updated_day=issues["updated"].dt.floor("D"),
        created_day=issues["created"].dt.floor("D"),
        resolved_day=issues["resolution_date"].dt.floor("D"),
        status_name=issues["status_name"].fillna("(none)"),
    )
    updated = (
        frame.groupby(["updated_day", "project_key", "status_name"])
        .size()
        .rename("issues_updated")
        .reset_index()
        .rename(columns={"updated_day": "day"})
    )
    day_and_project = ["day", "project_key"]
    created = (
        frame.groupby(["created_day", "project_key"]).size().rename("created")
        .rename_axis(day_and_project)
    )
    resolved = (
        frame.dropna(subset=["resolved_day"])
        .groupby(["resolved_day", "project_key"])
        .size()
        .rename("resolved")
        .rename_axis(day_and_project)
    )
    per_day = (
        pd.concat([created, resolved], axis=1)
        .fillna(0)
        .astype("int64")
        .reset_index()
    )
    summary = per_day.merge(updated, on=day_and_project, how="outer")
    summary["status_name"] = summary["status_name"].fillna("(none updated)")
    for column in ("issues_updated", "created", "resolved"):
        summary[column] = summary[column].fillna(0).astype("int64")
    return summary[SUMMARY_COLUMNS].sort_values(["day", "project_key", "status_name"]).reset_index(
        drop=True
    )


def build_summary_asset(site: JiraSite) -> dg.AssetsDefinition:
    @dg.asset(
        key=site.asset_key("jira_issue_daily_summary"),
        group_name=site.group_name,
        ins={"issues": dg.AssetIn(key=site.asset_key("jira_issues"))},
        description="Per day, project and status: issues updated, created and resolved. Reads the "
        "synced issues through the Mongo IO manager as a DataFrame (deleted issues excluded).",
        kinds={"pandas"},
        tags={"jira/connection": site.name},
    )
    def jira_issue_daily_summary(
        context: dg.AssetExecutionContext, issues: pd.DataFrame
    ) -> dg.MaterializeResult:
        summary = daily_summary(issues)
        context.log.info(f"summarised {len(issues)} issues into {len(summary)} rows")
        return dg.MaterializeResult(
            value=summary,
            metadata={
                "dagster/row_count": len(summary),
                "issues": len(issues),
                "preview": dg.MetadataValue.md(
                    markdown_table(
                        # pandas types record keys as Hashable; these are the column names
                        cast(list[dict[str, Any]], summary.tail(10).to_dict("records")),
                        tuple(SUMMARY_COLUMNS),
                    )
                ),
            },
        )

    return jira_issue_daily_summary
