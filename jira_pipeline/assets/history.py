"""`jira_issue_field_history`, `jira_issue_status_transitions` and `jira_time_in_status_daily`:
derived from the stored issues and their changelogs, partitioned like `jira_issues`.

A partition recomputes the history of every issue updated in its window (widened by the
lookback and open at the partition set's ends, as `jira_issue_changelogs` reads it; the asset's
first run ever covers every stored issue) and of every issue marked deleted then, whole, and the
IO manager replaces that issue's stored rows: an interval that no longer exists (a history entry
gone, a deleted issue) leaves no row, and a rerun writes nothing new. Changelog entries are
immutable and an issue edited gets a newer `updated`, so an issue's history is recomputed in the
partition of its last change. The daily time in status replaces the partition's UTC days.
"""

import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

import dagster as dg

from jira_pipeline.assets.issue_window import run_window
from jira_pipeline.assets.sites import JiraSite
from jira_pipeline.assets.streams import stored_asset_spec
from jira_pipeline.history.fields import (
    FieldCatalog,
    field_history_rows,
    issue_field_intervals,
)
from jira_pipeline.history.time_in_status import DAY, DailyTimeInStatus
from jira_pipeline.history.transitions import Directory, status_transition_rows
from jira_pipeline.settings import PipelineSettings
from jira_pipeline.storage.derived_rows import DerivedRows, RowScope
from jira_pipeline.storage.entities import (
    FIELD_HISTORY,
    STATUS_TRANSITIONS,
    TIME_IN_STATUS_DAILY,
    DerivedSpec,
)
from jira_pipeline.storage.history_reads import HistorySource, IssueBatch
from jira_pipeline.storage.resources import MongoResource
from jira_pipeline.timeutil import utc_now

CONSISTENT_CHECK = "field_history_consistent"
# The fields the check compares: the current interval's value against the issue's own field.
CHECKED_FIELDS = ("status", "assignee", "priority")
SAMPLE = 10
# Days of time in status computed (and held) at once.
DAYS_PER_CHUNK = 7


def _upstream(site: JiraSite) -> list[dg.AssetKey]:
    return [site.asset_key("jira_issue_changelogs"), site.asset_key("jira_issues"),
            site.asset_key("jira_fields"), site.asset_key("jira_statuses"),
            site.asset_key("jira_projects")]


def _spec(site: JiraSite, spec: DerivedSpec, description: str,
          deps: list[dg.AssetKey]) -> dg.AssetSpec:
    return stored_asset_spec(site, spec.collection, description, deps=deps, kinds=("mongodb",))


def history_window(context: dg.AssetExecutionContext, site: JiraSite,
            partitions: dg.DailyPartitionsDefinition, settings: PipelineSettings,
            key: dg.AssetKey) -> tuple[datetime | None, datetime | None]:
    """The `updated` range of the step's issues, as the changelogs' step reads it: open at the
    partition set's ends, and whole on the asset's first run (`issue_window.run_window`)."""
    window = run_window(context, partitions, settings, site.asset_key("jira_issues"), key)
    return window.start, window.end


class IssueHistories:
    """A step's issues read in batches and derived into rows, one scope per batch; the figures
    (`metadata()`) are what the step read and how fast it derived."""

    def __init__(self, source: HistorySource, issue_ids: list[str],
                 derive: Callable[[dict[str, Any], list[dict[str, Any]]], list[dict[str, Any]]],
                 raw_fields: tuple[str, ...] | None = None) -> None:
        self.source = source
        self.issue_ids = issue_ids
        self.derive = derive
        self.raw_fields = raw_fields
        self.rows = 0
        self.derive_s = 0.0
        self.derive_cpu_s = 0.0  # CPU seconds: what a shared machine's load does not inflate

    def scopes(self) -> Iterator[RowScope]:
        for batch in self.source.batches(self.issue_ids, self.raw_fields):
            yield RowScope({"issue_id": {"$in": batch.ids}}, self._rows(batch))

    def _rows(self, batch: IssueBatch) -> list[dict[str, Any]]:
        started, cpu = time.perf_counter(), time.process_time()
        rows = [row for issue in batch.issues
                for row in self.derive(issue, batch.changelogs.get(str(issue["issue_id"]), []))]
        self.derive_s += time.perf_counter() - started
        self.derive_cpu_s += time.process_time() - cpu
        self.rows += len(rows)
        return rows

    def metadata(self) -> Mapping[str, Any]:
        return {
            "issues": len(self.issue_ids),
            "histories_read": self.source.histories_read,
            "history_items_read": self.source.items_read,
            "store_queries": self.source.reads,
            "derive_s": dg.MetadataValue.float(round(self.derive_s, 3)),
            "items_per_s": dg.MetadataValue.float(
                round(self.source.items_read / max(self.derive_s, 1e-9), 1)),
        }


def field_history_deriver(
    catalog: FieldCatalog,
) -> Callable[[dict[str, Any], list[dict[str, Any]]], list[dict[str, Any]]]:
    def derive(issue: dict[str, Any], changelog: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return field_history_rows(issue, issue_field_intervals(issue, changelog, catalog))

    return derive


def status_transition_deriver(
    catalog: FieldCatalog, directory: Directory
) -> Callable[[dict[str, Any], list[dict[str, Any]]], list[dict[str, Any]]]:
    def derive(issue: dict[str, Any], changelog: list[dict[str, Any]]) -> list[dict[str, Any]]:
        fields = issue_field_intervals(issue, changelog, catalog, tracked=("status",),
                                       only=("status", "project"))
        return status_transition_rows(issue, fields.get("status", []), directory,
                                      fields.get("project", []))

    return derive


def build_field_history_asset(
    site: JiraSite, partitions: dg.DailyPartitionsDefinition, settings: PipelineSettings
) -> dg.AssetsDefinition:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)  # backfill_policy
        return _build_field_history_asset(site, partitions, settings)


def _build_field_history_asset(
    site: JiraSite, partitions: dg.DailyPartitionsDefinition, settings: PipelineSettings
) -> dg.AssetsDefinition:
    key = site.asset_key(FIELD_HISTORY.collection)

    @dg.multi_asset(
        name=key.to_python_identifier(),
        specs=[_spec(site, FIELD_HISTORY, "One row per issue, field and interval of its value "
                     "(value, value_string, valid_from, valid_until, author, is_current), values "
                     "at creation included; arrays as sets per interval. A partition recomputes "
                     "the issues updated in its window and replaces their rows.",
                     _upstream(site))],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[dg.AssetCheckSpec(
            CONSISTENT_CHECK, asset=key,
            description="For the step's issues, the current interval's value of status, "
            "assignee and priority equals the issue's own field (a difference means the "
            "changelog is incomplete or the history is older than the issue).",
        )],
        can_subset=True,
    )
    def jira_issue_field_history(
        context: dg.AssetExecutionContext, mongo: MongoResource
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        source = HistorySource(mongo.get_database(), site.connection_id)
        # The check alone runs without the asset's partitions (it is not partitioned): it then
        # checks every live issue.
        materializing = key in context.selected_asset_keys
        ids = (source.window_issue_ids(
            *history_window(context, site, partitions, settings, key))
               if materializing else source.live_issue_ids())
        if materializing:
            histories = IssueHistories(source, ids, field_history_deriver(source.catalog()))
            # The IO manager writes the rows before this generator resumes: the check reads them.
            yield dg.Output(
                DerivedRows(FIELD_HISTORY, site.connection_id, histories.scopes(),
                            histories.metadata),
                output_name=context.assets_def.get_output_name_for_asset_key(key),
            )
        if dg.AssetCheckKey(key, CONSISTENT_CHECK) in context.selected_asset_check_keys:
            yield consistency_result(source, ids, key)

    return jira_issue_field_history


def current_field_differences(source: HistorySource, issue_ids: list[str]) -> list[str]:
    """Each checked field whose current interval differs from the issue's (or is missing)."""
    differences: list[str] = []
    for offset in range(0, len(issue_ids), source.batch_issues):
        ids = issue_ids[offset:offset + source.batch_issues]
        current: dict[tuple[str, str], dict[str, Any]] = {
            (str(doc["issue_id"]), str(doc["field_id"])): doc
            for doc in source._find(FIELD_HISTORY.collection, {
                "issue_id": {"$in": ids}, "is_current": True,
                "field_id": {"$in": list(CHECKED_FIELDS)},
            }, ["issue_id", "field_id", "value", "value_string"])
        }
        for issue in source._find("jira_issues", {"issue_id": {"$in": ids},
                                                  "is_deleted": {"$ne": True}},
                                  ["issue_id", "key", "status_id", "assignee_account_id",
                                   "priority", "raw.fields.assignee.name"]):
            issue_id = str(issue["issue_id"])
            expected = {"status": issue.get("status_id"),
                        "assignee": issue.get("assignee_account_id"),
                        "priority": issue.get("priority")}
            # Data Center's changelog names an assignee by username, its issues by user key.
            assignee = ((issue.get("raw") or {}).get("fields") or {}).get("assignee")
            username = assignee.get("name") if isinstance(assignee, dict) else None
            for field_id, value in expected.items():
                row = current.get((issue_id, field_id))
                if row is None:
                    if value is not None:
                        differences.append(f"{issue.get('key')} {field_id}: no current row")
                    continue
                stored = row.get("value_string" if field_id == "priority" else "value")
                if field_id == "assignee" and stored is not None and stored == username:
                    continue
                if stored != value:
                    differences.append(
                        f"{issue.get('key')} {field_id}: history {stored!r}, issue {value!r}")
    return differences


def consistency_result(
    source: HistorySource, issue_ids: list[str], key: dg.AssetKey
) -> dg.AssetCheckResult:
    differences = current_field_differences(source, issue_ids)
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=CONSISTENT_CHECK,
        passed=not differences,
        metadata={"issues_checked": len(issue_ids), "differences": len(differences),
                  "sample": "; ".join(differences[:SAMPLE])},
    )


def build_status_transitions_asset(
    site: JiraSite, partitions: dg.DailyPartitionsDefinition, settings: PipelineSettings
) -> dg.AssetsDefinition:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)  # backfill_policy
        return _build_status_transitions_asset(site, partitions, settings)


def _build_status_transitions_asset(
    site: JiraSite, partitions: dg.DailyPartitionsDefinition, settings: PipelineSettings
) -> dg.AssetsDefinition:
    spec = _spec(site, STATUS_TRANSITIONS, "One row per issue and status interval: status id, "
                 "name and category (from jira_statuses, so renames show), previous status, "
                 "entered_at, left_at, minutes_in_status, transition_direction (forward / "
                 "backward / lateral by category), is_current, and the project the issue was "
                 "in. A partition recomputes the issues updated in its window.", _upstream(site))

    @dg.multi_asset(
        name=spec.key.to_python_identifier(),
        specs=[spec],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def jira_issue_status_transitions(
        context: dg.AssetExecutionContext, mongo: MongoResource
    ) -> DerivedRows:
        source = HistorySource(mongo.get_database(), site.connection_id)
        ids = source.window_issue_ids(
            *history_window(context, site, partitions, settings, spec.key))
        histories = IssueHistories(
            source, ids, status_transition_deriver(source.catalog(), source.directory()),
            raw_fields=("status", "project"),
        )
        return DerivedRows(STATUS_TRANSITIONS, site.connection_id, histories.scopes(),
                           histories.metadata)

    return jira_issue_status_transitions


def day_chunks(start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    """[start, end) in runs of `DAYS_PER_CHUNK` UTC days."""
    lower = start
    while lower < end:
        upper = min(lower + DAYS_PER_CHUNK * DAY, end)
        yield lower, upper
        lower = upper


class TimeInStatusDays:
    """The days of [start, end) computed a chunk of days at a time, each chunk's rows replacing
    its stored ones; memory holds one chunk's compact spans (`DailyTimeInStatus`) and rows,
    the transitions streamed past."""

    def __init__(self, source: HistorySource, start: datetime, end: datetime,
                 now: datetime) -> None:
        self.source, self.start, self.end, self.now = source, start, end, now
        self.transitions_read = 0
        self.rows = 0
        self.compute_s = 0.0
        self.compute_cpu_s = 0.0

    def scopes(self) -> Iterator[RowScope]:
        for lower, upper in day_chunks(self.start, self.end):
            started, cpu = time.perf_counter(), time.process_time()
            days = DailyTimeInStatus(lower, upper, self.now)
            for transition in self.source.transitions_overlapping(lower, upper):
                days.add(transition)
            rows = days.rows()
            self.compute_s += time.perf_counter() - started
            self.compute_cpu_s += time.process_time() - cpu
            self.transitions_read += days.read
            self.rows += len(rows)
            yield RowScope({"day": {"$gte": lower, "$lt": upper}}, rows)

    def metadata(self) -> Mapping[str, Any]:
        return {"transitions_read": self.transitions_read, "store_queries": self.source.reads,
                "compute_s": dg.MetadataValue.float(round(self.compute_s, 3))}


def build_time_in_status_asset(
    site: JiraSite, partitions: dg.DailyPartitionsDefinition, settings: PipelineSettings
) -> dg.AssetsDefinition:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)  # backfill_policy
        return _build_time_in_status_asset(site, partitions)


def _build_time_in_status_asset(
    site: JiraSite, partitions: dg.DailyPartitionsDefinition
) -> dg.AssetsDefinition:
    spec = _spec(site, TIME_IN_STATUS_DAILY, "Per UTC day, project and status: the issues in "
                 "that status at some moment of the day (issues_in_status) and, for the issues "
                 "that left it that day, how many (transitions) and the mean, p50 and p90 "
                 "minutes they had spent in it. Counted from "
                 "jira_issue_status_transitions; a partition replaces its days' rows.",
                 [site.asset_key(STATUS_TRANSITIONS.collection)])

    @dg.multi_asset(
        name=spec.key.to_python_identifier(),
        specs=[spec],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def jira_time_in_status_daily(
        context: dg.AssetExecutionContext, mongo: MongoResource
    ) -> DerivedRows:
        source = HistorySource(mongo.get_database(), site.connection_id)
        window = context.partition_time_window
        days = TimeInStatusDays(source, window.start, window.end, utc_now())
        return DerivedRows(TIME_IN_STATUS_DAILY, site.connection_id, days.scopes(),
                           days.metadata)

    return jira_time_in_status_daily
