"""Which stored issues a step that follows `jira_issues` covers (changelogs, comments,
worklogs): its partitions' window of `updated`, the issues the run's census stored from other
days, and the issues the run's census proved deleted, whose comments, histories and worklogs
went with them. Reads only: the IO manager writes."""

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import dagster as dg
from pymongo.database import Database

from jira_pipeline.assets.census import census_enabled
from jira_pipeline.assets.checks import run_started
from jira_pipeline.jira import IssueWindow
from jira_pipeline.settings import PipelineSettings
from jira_pipeline.timeutil import parse_jira_datetime

ISSUES_COLLECTION = "jira_issues"
# Issue ids per `$in` of a query (a server's command stays far below its 16 MiB).
IDS_PER_QUERY = 1000


class StoredWindow:
    """A range of stored issues' `updated` ([start, end); None: unbounded on that side), and
    with `stored_since`, also the issues first stored since then outside it (what a census
    brought in from other days)."""

    def __init__(self, start: datetime | None, end: datetime | None) -> None:
        self.start, self.end = start, end
        self.stored_since: datetime | None = None

    def newly_stored_selector(self, connection_id: str) -> dict[str, Any] | None:
        """The issues first stored since `stored_since` whose `updated` is outside the range."""
        if self.stored_since is None or (self.start is None and self.end is None):
            return None
        outside: list[dict[str, Any]] = []
        if self.start is not None:
            outside.append({"updated": {"$lt": self.start}})
        if self.end is not None:
            outside.append({"updated": {"$gte": self.end}})
        return {"connection_id": connection_id, "is_deleted": {"$ne": True},
                "first_seen_at": {"$gte": self.stored_since}, "$or": outside}

    def selector(self, connection_id: str) -> dict[str, Any]:
        selector: dict[str, Any] = {"connection_id": connection_id, "is_deleted": {"$ne": True}}
        bounds: dict[str, datetime] = {}
        if self.start is not None:
            bounds["$gte"] = self.start
        if self.end is not None:
            bounds["$lt"] = self.end
        if bounds:
            selector["updated"] = bounds
        return selector

    def selectors(self, connection_id: str) -> list[dict[str, Any]]:
        """What a step reads: the window's live issues, then those the census stored."""
        newly = self.newly_stored_selector(connection_id)
        return [self.selector(connection_id), *([newly] if newly is not None else [])]

    def __str__(self) -> str:
        start = self.start.isoformat() if self.start else "the beginning"
        end = self.end.isoformat() if self.end else "now"
        return f"[{start}, {end})"


def run_window(
    context: dg.AssetExecutionContext,
    partitions: dg.DailyPartitionsDefinition | None,
    settings: PipelineSettings,
    issues_key: dg.AssetKey,
    asset_key: dg.AssetKey | None = None,
) -> StoredWindow:
    """The run's partitions' window widened by the lookback, open-ended at the partition set's
    ends (the first partition holds what came before it, the last what came after); a run
    of the check alone (no partition), or an unpartitioned step, judges the whole site's
    issues. So does the first run of `asset_key` ever (`first_materialization`): a
    deployment upgraded to a version that adds the asset has issues stored long ago, which
    the daily run's window would never reach. When the run's `jira_issues` step takes the
    census, `stored_since` is the run's start: the census stored issues from other days, and
    proved others deleted, since then."""
    try:
        time_window = context.partition_time_window if partitions is not None else None
    except dg.DagsterInvariantViolationError:  # the check alone: not a partitioned step
        time_window = None
    if asset_key is not None and time_window is not None and first_materialization(
            context, asset_key):
        context.log.info(f"{asset_key.to_user_string()} was never materialized: this run "
                         "covers every stored issue (an upgrade's first run)")
        time_window = None
    if time_window is None or partitions is None:
        window = StoredWindow(None, None)
    else:
        widened = IssueWindow(time_window.start, time_window.end).widened(settings.lookback)
        first, last = partitions.get_first_partition_key(), partitions.get_last_partition_key()
        keys = context.partition_keys
        window = StoredWindow(None if keys[0] == first else widened.start,
                              None if keys[-1] == last else widened.end)
    if census_ran(context, issues_key):
        window.stored_since = run_started(context.instance, context.run.run_id)
    return window


def first_materialization(context: dg.AssetExecutionContext, asset_key: dg.AssetKey) -> bool:
    """Whether `asset_key` has no materialization yet, in any partition (one event-log read)."""
    return context.instance.get_latest_materialization_event(asset_key) is None


def census_ran(context: dg.AssetExecutionContext, issues_key: dg.AssetKey) -> bool:
    """Whether this run's `jira_issues` step takes the census (its run config, else the daily
    schedule's tag)."""
    run_config: dict[str, Any] = dict(context.run.run_config or {})
    ops: dict[str, Any] = run_config.get("ops") or {}
    config: dict[str, Any] = (ops.get(issues_key.to_python_identifier()) or {}).get("config") or {}
    return census_enabled(config.get("reconcile_deletions"), context.run.tags)


def window_issues(
    db: Database, connection_id: str, window: StoredWindow, projection: Mapping[str, Any]
) -> Iterator[dict[str, Any]]:
    """The window's stored live issues, projected, from one cursor per selector (the `updated`
    index narrows the first)."""
    for selector in window.selectors(connection_id):
        yield from db[ISSUES_COLLECTION].find(selector, dict(projection))


def live_children_of_deleted_issues(
    db: Database, connection_id: str, window: StoredWindow, collection: str, id_field: str
) -> list[str]:
    """The ids of the live documents of `collection` (comments, histories, worklogs) whose
    issue this run's census proved gone (marked deleted since the run started): Jira deletes
    them with the issue, and lists them nowhere after. Nothing without a census in the run:
    other runs prove nothing."""
    if window.stored_since is None:
        return []
    deleted = [str(doc["issue_id"]) for doc in db[ISSUES_COLLECTION].find(
        {"connection_id": connection_id, "is_deleted": True,
         "deleted_at": {"$gte": window.stored_since}}, {"issue_id": 1, "_id": 0})
        if doc.get("issue_id") is not None]
    found: list[str] = []
    for start in range(0, len(deleted), IDS_PER_QUERY):
        issues = deleted[start:start + IDS_PER_QUERY]
        found.extend(str(doc[id_field]) for doc in db[collection].find(
            {"connection_id": connection_id, "issue_id": {"$in": issues},
             "is_deleted": {"$ne": True}}, {id_field: 1, "_id": 0}))
    return found


def issues_the_census_stored(
    db: Database, connection_id: str, window: StoredWindow
) -> list[tuple[str, datetime | None]]:
    """(issue id, `updated`) of the live issues first stored since the run started, when the
    run's census ran (what it brought in: issues revealed by a permission or a restored
    project, or missed; and the run's new issues). Nothing without a census."""
    if window.stored_since is None:
        return []
    return [(str(doc["issue_id"]), parse_jira_datetime(doc.get("updated")))
            for doc in db[ISSUES_COLLECTION].find(
                {"connection_id": connection_id, "is_deleted": {"$ne": True},
                 "first_seen_at": {"$gte": window.stored_since}},
                {"issue_id": 1, "updated": 1, "_id": 0})
            if doc.get("issue_id") is not None]
