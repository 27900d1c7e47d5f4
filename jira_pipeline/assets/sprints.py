"""`jira_sprint_issues` (sprint membership over time, partitioned like `jira_issues`) and
`jira_sprint_report` (per sprint and project, recomputed whole), both derived from what the
issue sync stored: no request to Jira beyond the issue sync and the sprint list, except the
membership check's sample of closed sprints (`history/sprints.py` says how)."""


import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any

import dagster as dg
from pymongo.database import Database

from jira_pipeline.assets.checks import jira_spent
from jira_pipeline.assets.history import IssueHistories, history_window
from jira_pipeline.assets.resources import JiraResource
from jira_pipeline.assets.site_resource import with_site_resource
from jira_pipeline.assets.sites import JiraSite
from jira_pipeline.assets.streams import stored_asset_spec
from jira_pipeline.history.fields import FieldCatalog, issue_field_intervals
from jira_pipeline.history.sprints import (
    MEMBERSHIP_FIELDS,
    SprintFields,
    SprintWindow,
    sprint_issue_rows,
    sprint_report_rows,
    stale_issue_ids,
)
from jira_pipeline.history.transitions import Directory
from jira_pipeline.jira import JiraClient
from jira_pipeline.settings import PipelineSettings
from jira_pipeline.storage.derived_rows import DerivedRows, RowScope
from jira_pipeline.storage.entities import SPRINT_ISSUES, SPRINT_REPORT
from jira_pipeline.storage.history_reads import FIELDS_COLLECTION, HistorySource
from jira_pipeline.storage.resources import MongoResource

SPRINTS_COLLECTION = "jira_sprints"
MEMBERSHIP_CHECK = "sprint_membership_matches_jira"
# Closed sprints the check asks Jira about each run (the most recently completed): a closed
# sprint's members no longer change, so a difference is the derivation's, not Jira's motion.
CHECKED_SPRINTS = 3
SAMPLE = 10
SPRINT_FIELDS = ("sprint_id", "name", "state", "board_ids", "start_date", "end_date",
                 "complete_date", "activated_date")


def sprint_fields(db: Database, connection_id: str) -> SprintFields:
    return SprintFields.from_documents(db[FIELDS_COLLECTION].find(
        {"connection_id": connection_id},
        ["field_id", "name", "schema_custom", "is_deleted"]))


def stored_sprints(db: Database, connection_id: str) -> dict[str, dict[str, Any]]:
    """The live stored sprints by id."""
    return {str(doc["sprint_id"]): doc for doc in db[SPRINTS_COLLECTION].find(
        {"connection_id": connection_id, "is_deleted": {"$ne": True}}, list(SPRINT_FIELDS))}


class SprintMemberships:
    """The step's issues (its window's, and those of sprints started or closed since their
    rows were written) derived into membership rows, one scope per batch of issues."""

    def __init__(self, source: HistorySource, window_ids: list[str]) -> None:
        db, connection_id = source.db, source.connection_id
        self.fields = sprint_fields(db, connection_id)
        self.windows = {sprint_id: SprintWindow.from_document(doc)
                        for sprint_id, doc in stored_sprints(db, connection_id).items()}
        stored = db[SPRINT_ISSUES.collection].find(
            {"connection_id": connection_id},
            ["issue_id", "sprint_id", "sprint_started_at", "sprint_completed_at"])
        self.stale = stale_issue_ids(stored, self.windows) - set(window_ids)
        self.issue_ids = sorted({*window_ids, *self.stale})
        catalog, directory = source.catalog(), source.directory()
        self.histories = IssueHistories(
            source, self.issue_ids, self._deriver(catalog, directory),
            raw_fields=self.fields.derived,
        )

    def _deriver(self, catalog: FieldCatalog, directory: Directory) -> Any:
        fields, windows = self.fields, self.windows
        only = fields.derived

        def derive(issue: dict[str, Any], changelog: list[dict[str, Any]]) -> list[dict[str, Any]]:
            intervals = issue_field_intervals(issue, changelog, catalog, tracked=only, only=only)
            return sprint_issue_rows(issue, intervals, fields, windows, directory)

        return derive

    def scopes(self) -> Iterator[RowScope]:
        if self.fields.sprint is None:
            return iter(())  # no sprint field: no issue can be in a sprint
        return self.histories.scopes()

    def metadata(self) -> Mapping[str, Any]:
        return {
            **self.histories.metadata(),
            "membership_rows": self.histories.rows,
            "issues_of_restarted_sprints": len(self.stale),
            "sprint_field": self.fields.sprint or "(none)",
            "story_points_field": self.fields.story_points or "(none)",
        }


def build_sprint_issues_asset(
    site: JiraSite, partitions: dg.DailyPartitionsDefinition, settings: PipelineSettings
) -> dg.AssetsDefinition:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)  # backfill_policy
        return _build_sprint_issues_asset(site, partitions, settings)


def _build_sprint_issues_asset(
    site: JiraSite, partitions: dg.DailyPartitionsDefinition, settings: PipelineSettings
) -> dg.AssetsDefinition:
    key = site.asset_key(SPRINT_ISSUES.collection)
    deps = [site.asset_key(name) for name in (
        "jira_issue_changelogs", "jira_issues", "jira_fields", "jira_statuses", "jira_projects",
        SPRINTS_COLLECTION)]
    spec = stored_asset_spec(
        site, SPRINT_ISSUES.collection,
        "One row per sprint and issue ever in it, from the sprint field and its changelog: the "
        "intervals it spent in the sprint (added_at, removed_at), whether it was committed at "
        "the sprint's start, added or removed during it, in it and done at its end or carried "
        "over, and its story points at start and end. A partition recomputes the issues "
        "updated in its window and those of sprints started or closed since.",
        deps=deps, kinds=("mongodb",))

    @dg.multi_asset(
        name=key.to_python_identifier(),
        specs=[spec],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[dg.AssetCheckSpec(
            MEMBERSHIP_CHECK, asset=key,
            description=f"For the {CHECKED_SPRINTS} most recently closed sprints, the issues "
            "stored as in the sprint now are those Jira's /rest/agile/1.0/sprint/{id}/issue "
            "lists (of the synced projects).",
        )],
        can_subset=True,
    )
    @with_site_resource(site)
    def jira_sprint_issues(
        context: dg.AssetExecutionContext, jira: JiraResource, mongo: MongoResource
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        db = mongo.get_database()
        if key in context.selected_asset_keys:
            source = HistorySource(db, site.connection_id)
            window = history_window(context, site, partitions, settings, key)
            memberships = SprintMemberships(source, source.window_issue_ids(*window))
            # The IO manager writes the rows before this generator resumes: the check reads them.
            yield dg.Output(
                DerivedRows(SPRINT_ISSUES, site.connection_id, memberships.scopes(),
                            memberships.metadata),
                output_name=context.assets_def.get_output_name_for_asset_key(key),
            )
        if dg.AssetCheckKey(key, MEMBERSHIP_CHECK) in context.selected_asset_check_keys:
            yield membership_check(db, jira, site, settings, key)

    return jira_sprint_issues


def membership_check(
    db: Database, jira: JiraResource, site: JiraSite, settings: PipelineSettings,
    key: dg.AssetKey,
) -> dg.AssetCheckResult:
    closed = sorted(
        (doc for doc in stored_sprints(db, site.connection_id).values()
         if str(doc.get("state") or "").lower() == "closed" and doc.get("complete_date")),
        key=lambda doc: (doc["complete_date"], doc["sprint_id"]), reverse=True,
    )[:CHECKED_SPRINTS]
    before = jira.counters()
    differences: list[str] = []
    projects = set(settings.projects)
    for sprint in closed:
        sprint_id = str(sprint["sprint_id"])
        in_jira = {
            issue_id for issue_id, issue_key in jira.iterate(_sprint_issues(sprint_id),
                                                             max_buffered=1000)
            if not projects or issue_key.rpartition("-")[0] in projects
        }
        stored = {str(doc["issue_id"]) for doc in db[SPRINT_ISSUES.collection].find(
            {"connection_id": site.connection_id, "sprint_id": sprint_id, "is_member": True},
            ["issue_id"])}
        differences.extend(f"sprint {sprint_id}: issue {issue_id} in Jira, not stored"
                           for issue_id in sorted(in_jira - stored))
        differences.extend(f"sprint {sprint_id}: issue {issue_id} stored, not in Jira"
                           for issue_id in sorted(stored - in_jira))
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=MEMBERSHIP_CHECK,
        passed=not differences,
        metadata={
            "sprints_checked": len(closed),
            "sprint_ids": ", ".join(str(doc["sprint_id"]) for doc in closed) or "(none closed)",
            "differences": len(differences),
            "sample": "; ".join(differences[:SAMPLE]),
            **jira_spent(jira, before),
        },
    )


def _sprint_issues(sprint_id: str) -> Callable[[JiraClient], AsyncIterator[tuple[str, str]]]:
    return lambda client: client.sprint_issues(sprint_id)


class SprintReport:
    """The whole report as one scope: every stored sprint against its membership rows."""

    def __init__(self, db: Database, connection_id: str) -> None:
        self.db, self.connection_id = db, connection_id
        self.rows = 0
        self.memberships = 0

    def scopes(self) -> Iterator[RowScope]:
        sprints = stored_sprints(self.db, self.connection_id)
        memberships = self.db[SPRINT_ISSUES.collection].find(
            {"connection_id": self.connection_id}, list(MEMBERSHIP_FIELDS))
        rows = sprint_report_rows(self._counted(memberships), sprints)
        self.rows = len(rows)
        yield RowScope({}, rows)

    def _counted(self, memberships: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        for membership in memberships:
            self.memberships += 1
            yield membership

    def metadata(self) -> Mapping[str, Any]:
        return {"report_rows": self.rows, "membership_rows_read": self.memberships}


def build_sprint_report_asset(site: JiraSite) -> dg.AssetsDefinition:
    spec = stored_asset_spec(
        site, SPRINT_REPORT.collection,
        "Per sprint and project (counted from jira_sprint_issues and "
        "jira_sprints): issues committed at the start, added and removed during the sprint, "
        "completed in it and carried over, story points committed and completed, with the "
        "sprint's name, state, boards and dates. Recomputed whole each run.",
        deps=[site.asset_key(SPRINT_ISSUES.collection), site.asset_key(SPRINTS_COLLECTION)],
        kinds=("mongodb",))

    @dg.multi_asset(name=spec.key.to_python_identifier(), specs=[spec])
    def jira_sprint_report(mongo: MongoResource) -> DerivedRows:
        report = SprintReport(mongo.get_database(), site.connection_id)
        return DerivedRows(SPRINT_REPORT, site.connection_id, report.scopes(), report.metadata)

    return jira_sprint_report
