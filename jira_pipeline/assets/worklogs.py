"""`jira_worklogs`: every worklog of the site, kept current from Jira's worklog feeds (Cloud) or
per issue updated since the last run (Data Center), deletions marked; check
`worklog_totals_match`."""

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
from pymongo.database import Database

from jira_pipeline.assets.checks import SAMPLE, selected_checks
from jira_pipeline.assets.dimensions import NETWORK_RETRY_POLICY
from jira_pipeline.assets.issue_window import (
    issues_the_census_stored,
    live_children_of_deleted_issues,
    run_window,
)
from jira_pipeline.assets.resources import JiraResource
from jira_pipeline.assets.site_resource import with_site_resource
from jira_pipeline.assets.sites import JiraSite
from jira_pipeline.assets.streams import JiraRecordStream, stored_asset_spec
from jira_pipeline.jira import IssueWindow, JiraClient, build_issue_jql
from jira_pipeline.jira.worklogs import (
    WorklogRecord,
    changed_worklogs,
    issue_worklogs,
    worklogs_by_id,
)
from jira_pipeline.settings import PipelineSettings
from jira_pipeline.storage.entities import WORKLOGS
from jira_pipeline.storage.io_manager import Tombstone, WriteStream
from jira_pipeline.storage.resources import MongoResource
from jira_pipeline.storage.sync_cursors import FeedCursor, read_cursor
from jira_pipeline.timeutil import parse_jira_datetime, to_epoch_ms

ASSET_NAME = "jira_worklogs"
FEED = "worklogs"
CHECK = "worklog_totals_match"
# Mismatched issues the check asks Jira about (100 a request); beyond this it fails as it is.
CHECK_ASKS_AT_MOST = 500
DC_ISSUE_PAGE = 1000  # Data Center's maxResults ceiling for the issues updated since the cursor
# Where a Data Center walk stops: no issue is updated this far ahead of the clock.
_DC_HORIZON = timedelta(days=366)


class WorklogWalk:
    """One run's walk over the worklog changes since the stored position, and where it ends.

    Cloud: `/worklog/updated?since=` page by page, each page's ids fetched at once with
    `/worklog/list` (so memory holds one page), then `/worklog/deleted?since=`. Both feeds
    leave out the minute before the request, so the new position is the youngest change each
    feed listed (Jira's `until`), never the clock: a change Jira had not listed yet lies after
    it and is read next run. `since` is inclusive, so a run re-reads the changes at its
    boundary (idempotent upserts).

    Data Center (no feeds through this path): the issues updated since the position (`updated
    >=`, one search request per 1,000 issues), then every worklog of each (one request per
    issue per 5,000 worklogs); the stored live worklogs of a walked issue that Jira no longer
    lists are marked deleted (its complete list is the evidence). The new position is the
    newest `updated` among the walked issues.
    """

    def __init__(self, position: Mapping[str, Any], settings: PipelineSettings,
                 scope: dict[str, bool] | None) -> None:
        self.updated_since = int(position.get("updated_since", 0))
        # The ids listed at exactly `updated_since` last run: `since` is inclusive, so they come
        # again; known, they are not fetched again (an idle run costs two requests, not three).
        self.boundary = {str(i) for i in position.get("updated_boundary_ids") or ()}
        self.deleted_since = int(position.get("deleted_since", 0))
        self.dc_issues_since = int(position.get("dc_issues_since", 0))
        self.projects = tuple(settings.projects)
        # issue id -> in JIRA_PROJECTS (None: every project); unknown issues are asked once.
        self.scope = scope
        self.deployment = "cloud"
        self.deleted: set[str] = set()
        # Worklog ids the walked issues' own lists held (Data Center; issues the census revealed).
        self.listed: set[str] = set()
        self.walked_issues: list[str] = []
        self.touched: set[str] = set()  # issue ids of the worklogs this run stored
        # (issue id, updated) of the issues this run's census stored (`_revealed_issues`).
        self.census_stored: list[tuple[str, datetime | None]] = []
        self.figures: dict[str, Any] = {"changes_listed": 0, "deletions_listed": 0,
                                        "out_of_scope": 0, "issues_walked": 0,
                                        "revealed_issues_walked": 0}

    def position(self) -> dict[str, Any]:
        return {"updated_since": self.updated_since,
                "updated_boundary_ids": sorted(self.boundary, key=int),
                "deleted_since": self.deleted_since, "dc_issues_since": self.dc_issues_since}

    async def walk(self, client: JiraClient) -> AsyncIterator[dict[str, Any]]:
        self.deployment = client.deployment
        self.figures["deployment"] = client.deployment
        if client.deployment == "datacenter":
            before = self.dc_issues_since
            async for worklog in self._per_issue(client):
                yield worklog
            async for worklog in self._revealed_issues(client, before):
                yield worklog
            return
        newest, boundary = self.updated_since, set(self.boundary)
        async for page in changed_worklogs(client, "updated", self.updated_since):
            # A page starts where the one before ended (inclusive): skip the ids listed there.
            fresh = [wid for wid, ms in page.changes if not (ms == newest and wid in boundary)]
            self.figures["changes_listed"] += len(fresh)
            for wid, ms in page.changes:
                if ms > newest:
                    newest, boundary = ms, set()
                if ms == newest:
                    boundary.add(wid)
            if fresh:
                async for worklogs in worklogs_by_id(client, fresh):
                    for worklog in await self._in_scope(client, worklogs):
                        self.touched.add(str(worklog.get("issueId")))
                        yield worklog
        newest_deleted = self.deleted_since
        async for page in changed_worklogs(client, "deleted", self.deleted_since):
            self.deleted.update(wid for wid, _ in page.changes)
            newest_deleted = max([newest_deleted, *(ms for _, ms in page.changes)])
        self.figures["deletions_listed"] = len(self.deleted)
        async for worklog in self._revealed_issues(client, self.updated_since):
            yield worklog
        # Only once both feeds were read to their last page: the walk got this far.
        self.updated_since, self.boundary = newest, boundary
        self.deleted_since = newest_deleted

    async def _in_scope(self, client: JiraClient, worklogs: list[dict[str, Any]]
                        ) -> list[dict[str, Any]]:
        """The worklogs of issues in JIRA_PROJECTS; issues the store does not know are asked
        for (one request per 100), once per run."""
        if self.scope is None:
            return worklogs
        unknown = sorted({str(w.get("issueId")) for w in worklogs
                          if str(w.get("issueId")) not in self.scope
                          and str(w.get("issueId")).isdigit()})
        if unknown:
            for issue_id in unknown:
                self.scope[issue_id] = False  # Jira does not return it: not ours to store
            async for batch in client.issues_by_id(unknown, fields=("project",)):
                for issue in batch.issues:
                    key = ((issue.get("fields") or {}).get("project") or {}).get("key")
                    self.scope[str(issue.get("id"))] = key in self.projects
        kept = [w for w in worklogs if self.scope.get(str(w.get("issueId")), False)]
        self.figures["out_of_scope"] += len(worklogs) - len(kept)
        return kept

    async def _revealed_issues(self, client: JiraClient, position_ms: int
                               ) -> AsyncIterator[dict[str, Any]]:
        """Every worklog of each issue the census stored whose `updated` is older than the
        position the walk started from (a project restored, a permission granted): the feeds
        list only changes since the position, so their earlier worklogs come from the issue's
        own list, whose completeness is also the evidence for its stored worklogs' deletion.
        An issue Jira created since the position is the feed's (a first run reads it all)."""
        walked = set(self.walked_issues)
        for issue_id, updated in self.census_stored:
            if issue_id in walked or updated is None or to_epoch_ms(updated) >= position_ms:
                continue
            self.figures["revealed_issues_walked"] += 1
            self.walked_issues.append(issue_id)
            self.touched.add(issue_id)
            async for worklog in issue_worklogs(client, issue_id):
                self.listed.add(str(worklog.get("id")))
                yield worklog

    async def _per_issue(self, client: JiraClient) -> AsyncIterator[dict[str, Any]]:
        start = datetime.fromtimestamp(self.dc_issues_since / 1000, UTC)
        window = IssueWindow(start, datetime.now(UTC) + _DC_HORIZON)
        jql = build_issue_jql(window, projects=self.projects or None, order_by="updated ASC")
        newest = self.dc_issues_since
        async for issue in client.search_issues(jql, fields=("updated",),
                                                page_size=DC_ISSUE_PAGE):
            issue_id = str(issue.get("id"))
            self.walked_issues.append(issue_id)
            self.touched.add(issue_id)
            async for worklog in issue_worklogs(client, issue_id):
                self.listed.add(str(worklog.get("id")))
                yield worklog
            updated = parse_jira_datetime((issue.get("fields") or {}).get("updated"))
            if updated is not None:
                newest = max(newest, to_epoch_ms(updated))
        self.figures["issues_walked"] = len(self.walked_issues)
        self.figures["changes_listed"] = len(self.listed)
        self.dc_issues_since = newest

    def tombstones(self, db: Database, connection_id: str,
                   with_their_issue: Callable[[], list[str]]) -> Iterator[Tombstone]:
        """Cloud: the deleted feed's ids. Data Center, and the issues the census revealed: the
        stored live worklogs of the walked issues that their complete lists left out (and no
        other issue listed: a move). Both:
        the stored live worklogs of the issues the run's census proved deleted
        (`with_their_issue`): Jira deletes them with the issue, and its deleted feed need not
        list them."""
        gone = set(self.deleted)
        deleted_issues_worklogs = set(with_their_issue()) - self.listed
        self.figures["deleted_with_their_issue"] = len(deleted_issues_worklogs)
        gone |= deleted_issues_worklogs
        for start in range(0, len(self.walked_issues), 1000):
            chunk = self.walked_issues[start:start + 1000]
            for doc in db[WORKLOGS.collection].find(
                    {"connection_id": connection_id, "issue_id": {"$in": chunk},
                     "is_deleted": {"$ne": True}}, {"worklog_id": 1, "_id": 0}):
                if doc["worklog_id"] not in self.listed:
                    gone.add(doc["worklog_id"])
        self.figures["deletions_listed"] = len(gone)
        if gone:
            yield Tombstone(WORKLOGS.name, ids=frozenset(gone))


def changed_issues(walk: WorklogWalk, db: Database, connection_id: str) -> set[str]:
    """The issues a finished run changed worklogs of: those it stored, and those whose stored
    worklogs it marked deleted (read once written)."""
    found = set(walk.touched)
    gone = sorted(walk.deleted)
    for start in range(0, len(gone), 1000):
        for doc in db[WORKLOGS.collection].find(
                {"connection_id": connection_id, "worklog_id": {"$in": gone[start:start + 1000]}},
                {"issue_id": 1, "_id": 0}):
            if doc.get("issue_id") is not None:
                found.add(str(doc["issue_id"]))
    return found


def issues_in_scope(db: Database, connection_id: str, projects: tuple[str, ...]
                    ) -> dict[str, bool] | None:
    """Stored issue id -> whether its project is among `projects` (None: every project is)."""
    if not projects:
        return None
    wanted = set(projects)
    return {doc["issue_id"]: doc.get("project_key") in wanted
            for doc in db["jira_issues"].find({"connection_id": connection_id},
                                              {"issue_id": 1, "project_key": 1, "_id": 0})}


def worklog_stream(context: dg.AssetExecutionContext, jira: JiraResource, mongo: MongoResource,
                   site: JiraSite, settings: PipelineSettings) -> tuple[WriteStream, WorklogWalk]:
    """The worklogs changed since the stored position, the tombstones of deleted ones, then the
    new position (a `FeedCursor`), which the IO manager stores only after all of them; and the
    walk, which knows afterwards what it read."""
    db = mongo.get_database()
    # No partition: the whole site's; with a census in the run, its proven deletions.
    window = run_window(context, None, settings, site.asset_key("jira_issues"))
    position = read_cursor(db, site.connection_id, FEED)
    walk = WorklogWalk(position, settings,
                       issues_in_scope(db, site.connection_id, tuple(settings.projects)))
    walk.census_stored = issues_the_census_stored(db, site.connection_id, window)
    context.log.info(f"worklog changes since {position or 'the beginning (since=0)'}")
    records = JiraRecordStream(
        jira,
        walk.walk,
        lambda raw: WorklogRecord.from_raw(raw, site.connection_id),
        preview_fields=("worklog_id", "issue_id", "author_account_id", "time_spent_seconds",
                        "updated"),
        deletions=lambda: walk.tombstones(db, site.connection_id, lambda: (
            live_children_of_deleted_issues(db, site.connection_id, window,
                                            WORKLOGS.collection, "worklog_id"))),
        report=lambda: {**walk.figures, "cursor_before": dg.MetadataValue.json(position),
                        "cursor_after": dg.MetadataValue.json(walk.position())},
    )

    def items() -> Iterator[Any]:
        yield from records
        # Reached only when the walk and its deletions were read to the end.
        yield FeedCursor(FEED, walk.position())

    return WriteStream(items(), records.metadata), walk


# --- the check ------------------------------------------------------------------------------


def _in_chunks(selector: dict[str, Any], issues: set[str] | None) -> Iterator[dict[str, Any]]:
    """`selector` as is (`issues` None: every issue), or once per 1,000 of `issues`."""
    if issues is None:
        yield selector
        return
    chosen = sorted(issues)
    for start in range(0, len(chosen), 1000):
        yield {**selector, "issue_id": {"$in": chosen[start:start + 1000]}}


def stored_totals(db: Database, connection_id: str,
                  issues: set[str] | None = None) -> dict[str, int]:
    """Seconds logged per issue id over the stored live worklogs (of `issues`, or all).

    Summed here over a projected find of two top-level fields rather than by a `$group`: the
    embedded store's aggregation (mongomock's) lists the whole collection decoded first, which
    at 100,000 issues held every worklog in memory; the find streams on both stores."""
    sums: dict[str, int | float] = {}
    live = {"connection_id": connection_id, "is_deleted": {"$ne": True}}
    wanted = {"issue_id": 1, "time_spent_seconds": 1, "_id": 0}
    for selector in _in_chunks(live, issues):
        for row in db[WORKLOGS.collection].find(selector, wanted):
            issue_id = row.get("issue_id")
            if issue_id is None:
                continue
            seconds = row.get("time_spent_seconds")
            # $sum's rule: what is not a number adds nothing.
            number = isinstance(seconds, int | float) and not isinstance(seconds, bool)
            sums[str(issue_id)] = sums.get(str(issue_id), 0) + (seconds if number else 0)
    return {issue_id: int(total) for issue_id, total in sums.items()}


def jira_time_spent(issue: Mapping[str, Any]) -> int | None:
    """`timetracking.timeSpentSeconds` of an issue's JSON (0 when the field is `{}`: nothing
    logged); None when the issue carries no `timetracking` (time tracking off, or not asked)."""
    fields = issue.get("fields") if isinstance(issue.get("fields"), dict) else None
    tracking = (fields or {}).get("timetracking")
    if not isinstance(tracking, dict):
        return None
    seconds = tracking.get("timeSpentSeconds", 0)
    return seconds if isinstance(seconds, int) else None


def worklog_totals_result(context: dg.AssetExecutionContext, jira: JiraResource, db: Database,
                          site: JiraSite, issues: set[str] | None = None) -> dg.AssetCheckResult:
    """Per stored issue whose JSON has `timetracking` (among `issues`: the ones a run changed
    worklogs of, so a check costs what the delta does; None: every issue, as when the check runs
    alone): the stored live worklogs' seconds equal its `timeSpentSeconds`. A mismatch is
    asked of Jira before it counts: the stored issue may be an older copy (Jira's answer equals
    our sum: `stale_issue_copies`), or the issue changed after the feed position (`pending`:
    the worklog change is for the next run, such as one of the minute the feeds leave out);
    only the rest fail."""
    connection_id = site.connection_id
    totals = stored_totals(db, connection_id, issues)
    position = read_cursor(db, connection_id, FEED)
    # Up to here the feed (or the per-issue walk) has read every change: a worklog change
    # bumps its issue's `updated`, so an issue updated later may hold changes not read yet.
    covered_ms = max(int(position.get("updated_since", 0)),
                     int(position.get("dc_issues_since", 0)))
    compared = 0
    mismatched: dict[str, int] = {}
    stored_issues = (
        doc for selector in _in_chunks(
            {"connection_id": connection_id, "is_deleted": {"$ne": True}}, issues)
        for doc in db["jira_issues"].find(
            selector, {"issue_id": 1, "raw.fields.timetracking": 1, "_id": 0}))
    for doc in stored_issues:
        spent = jira_time_spent(doc.get("raw") or {})
        if spent is None:
            continue
        compared += 1
        if totals.get(doc["issue_id"], 0) != spent:
            mismatched[doc["issue_id"]] = spent
    asked = sorted(mismatched, key=int)[:CHECK_ASKS_AT_MOST]

    async def current(client: JiraClient) -> dict[str, tuple[int | None, int]]:
        found: dict[str, tuple[int | None, int]] = {}
        async for batch in client.issues_by_id(asked, fields=("timetracking", "updated")):
            for issue in batch.issues:
                updated = parse_jira_datetime((issue.get("fields") or {}).get("updated"))
                found[str(issue.get("id"))] = (jira_time_spent(issue),
                                               to_epoch_ms(updated) if updated else 0)
        return found

    now = jira.run(current) if asked else {}
    stale, pending, gone, failures = [], [], [], []
    for issue_id in sorted(mismatched, key=int):
        if issue_id not in asked:
            failures.append(issue_id)
        elif issue_id not in now or now[issue_id][0] is None:
            gone.append(issue_id)  # deleted or hidden since it was stored: nothing to compare
        elif now[issue_id][0] == totals.get(issue_id, 0):
            stale.append(issue_id)
        elif now[issue_id][1] > covered_ms:
            pending.append(issue_id)
        else:
            failures.append(issue_id)
    if failures:
        context.log.warning(f"{CHECK}: {len(failures)} issue(s) whose stored worklogs do not add "
                            f"up to Jira's timeSpentSeconds: {', '.join(failures[:SAMPLE])}")
    return dg.AssetCheckResult(
        asset_key=site.asset_key(ASSET_NAME),
        check_name=CHECK,
        passed=not failures,
        metadata={
            "issues_compared": compared,
            "scope": "every stored issue" if issues is None else "issues this run changed",
            "mismatched_stored": len(mismatched),
            "stale_issue_copies": len(stale),
            "pending": len(pending),
            "issues_gone": len(gone),
            "failures": len(failures),
            "sample": ", ".join(
                f"{i}: stored {totals.get(i, 0)} s, Jira {mismatched[i]} s"
                for i in failures[:SAMPLE]),
        },
    )


# --- the asset ------------------------------------------------------------------------------


def build_worklogs_asset(
    site: JiraSite, partitions: dg.DailyPartitionsDefinition, settings: PipelineSettings
) -> dg.AssetsDefinition:
    """Not partitioned (the feeds cover the whole site), after `jira_issues` (whose daily
    partitions it joins in the sync and issue jobs: Dagster materializes an unpartitioned asset
    once in each run of a partitioned job)."""
    del partitions  # the feed, not a partition, decides what a run reads
    key = site.asset_key(ASSET_NAME)

    @dg.multi_asset(
        name=key.to_python_identifier(),
        specs=[
            stored_asset_spec(
                site, WORKLOGS.collection,
                "Every worklog (who logged how long, on which issue, started when), from "
                "Jira's worklog feeds since the stored position; deleted worklogs are kept "
                "with is_deleted. Filtered by JIRA_PROJECTS through the issues' projects.",
                deps=[site.asset_key("jira_issues")],
                metadata={"jira/projects": ", ".join(settings.projects)
                          or "all visible projects"},
            )
        ],
        check_specs=[dg.AssetCheckSpec(
            CHECK, asset=key,
            description="Per issue, the stored live worklogs' time_spent_seconds add up to "
            "Jira's timetracking.timeSpentSeconds (from the stored issue; a mismatch is asked "
            "of Jira to tell an older issue copy or a change the feed has not reached yet from "
            "a real difference).",
        )],
        retry_policy=NETWORK_RETRY_POLICY,
        can_subset=True,
    )
    @with_site_resource(site)
    def jira_worklogs(
        context: dg.AssetExecutionContext, jira: JiraResource, mongo: MongoResource
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        walk: WorklogWalk | None = None
        if key in context.selected_asset_keys:
            stream, walk = worklog_stream(context, jira, mongo, site, settings)
            # handle_output writes the stream (and its cursor) before this generator resumes.
            yield dg.Output(
                stream, output_name=context.assets_def.get_output_name_for_asset_key(key))
        if CHECK in selected_checks(context, key):
            # After a materialization: the issues it changed; the check alone: every issue.
            db = mongo.get_database()
            scope = changed_issues(walk, db, site.connection_id) if walk is not None else None
            yield worklog_totals_result(context, jira, db, site, scope)

    return jira_worklogs
