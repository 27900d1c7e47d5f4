"""The issue census: stored issues converge on Jira's ids over the synced range, both ways."""

from __future__ import annotations

import time as clock
from array import array
from bisect import bisect_left
from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Any

import dagster as dg
from pymongo.database import Database

from jira_pipeline.assets.resources import JiraResource, counter_delta
from jira_pipeline.assets.sites import JiraSite
from jira_pipeline.jira import IssueWindow, build_issue_jql
from jira_pipeline.jira._exceptions import JiraPaginationError
from jira_pipeline.settings import PipelineSettings
from jira_pipeline.storage.io_manager import Tombstone
from jira_pipeline.storage.upserts import count_live, live_ids_except, stored_live_ids
from jira_pipeline.timeutil import utc_now

# Set on the runs the daily schedule requests: only they take the census by default (sensor
# runs stay cheap).
CENSUS_TAG = "jira/census"
# Id pages in flight between the loop thread and the census (5,000 ids each on Cloud).
_ID_PAGES_BUFFERED = 2


class CensusIncomplete(JiraPaginationError):
    """Jira's id walk and its count disagreed twice: nothing may be marked deleted."""


def _sorted_ids(ids: Iterator[str]) -> array[int]:
    return array("q", sorted(int(jira_id) for jira_id in ids if jira_id.isdigit()))


def _contains(sorted_ids: array[int], value: int) -> bool:
    at = bisect_left(sorted_ids, value)
    return at < len(sorted_ids) and sorted_ids[at] == value


class IssueCensus:
    """Two-way reconciliation of one site's stored issues with the ids Jira has.

    1. `missing_issues()` (read while the run's records are written): counts Jira's issues in
       the synced range, walks their ids (`fields=id`, keyset paging: one request per 5,000 on
       Cloud, 1,000 on Data Center), and re-walks once when the walked number differs from the
       count; a second difference raises CensusIncomplete, naming the endpoint. It then yields
       the issues Jira has that MongoDB lacks or holds as deleted (100 per request), so they are
       stored through the IO manager like any other record: a restored project's issues come
       back, and a project that becomes visible brings its whole history.
    2. `vanished()` (the stream's end, once every record was handed to the IO manager): stored
       live issues the complete walk did not list are candidates; those that a direct fetch by
       id also does not return are the tombstone the IO manager marks deleted (it reports
       `marked_deleted`). Nothing is marked unless the walk completed.

    Held in memory: the walked ids as one sorted array of 8-byte ints, and the ids of the run's
    own records.
    """

    def __init__(
        self,
        jira: JiraResource,
        db: Database,
        site: JiraSite,
        settings: PipelineSettings,
        lookback: timedelta,
        log: Any,
        *,
        fields: tuple[str, ...],
        expand: tuple[str, ...],
    ) -> None:
        self.jira = jira
        self.db = db
        self.connection_id = site.connection_id
        self.log = log
        self.fields, self.expand = fields, expand
        start = datetime.combine(settings.sync_start_date, time(0), tzinfo=UTC) - lookback
        # Bounded on both sides like every query we send; the future end covers clock skew.
        self.jql = build_issue_jql(
            IssueWindow(start, utc_now() + timedelta(days=1)), projects=settings.projects or None
        )
        self.scope: dict[str, Any] = {"updated": {"$gte": start}}
        if settings.projects:
            self.scope["project_key"] = {"$in": list(settings.projects)}
        self.walked: array[int] | None = None
        self.walks = 0
        self.fetched = 0
        self.still_in_jira = 0
        self._counters_before = jira.counters()
        self._started: float | None = None
        self._ended: float | None = None

    # --- 1: walk, and fetch what is missing -----------------------------------------------

    def walk(self) -> array[int]:
        """Every id Jira has in the synced range, proven complete by Jira's own count."""
        for attempt in (1, 2):
            count = self.jira.run(lambda client: client.count_issues(self.jql))
            ids: array[int] = array("q")
            for page in self.jira.iterate(
                lambda client: client.issue_id_pages(self.jql), max_buffered=_ID_PAGES_BUFFERED,
                progress=self.jira.walk_progress(self.log, "issue census: ids", total=count),
                size=len,
            ):
                ids.extend(page)
            self.walks += 1
            if len(ids) == count:
                return ids
            self.log.warning(
                f"issue census, walk {attempt}: {len(ids)} id(s) walked but Jira counts {count}"
                + (": walking again" if attempt == 1 else "")
            )
        raise CensusIncomplete(
            f"POST {self._search_path()}: walked {len(ids)} issue id(s) but POST "
            f"{self._count_path()} counts {count}, twice: the walk is not proven complete, so "
            "no issue was marked deleted"
        )

    def missing_issues(self, written: Collection[int]) -> Iterator[dict[str, Any]]:
        """Jira's raw issues that MongoDB lacks or holds deleted (`written`: ids this run already
        stores)."""
        self._counters_before = self.jira.counters()  # the census's cost, not the window's
        self._started = clock.perf_counter()
        walked = self.walked = self.walk()
        missing = self._missing(walked, written)
        if not missing:
            return
        self.log.info(f"issue census: fetching {len(missing)} issue(s) Jira has and MongoDB lacks")
        for batch in self.jira.iterate(
            lambda client: client.issues_by_id(missing, self.fields, self.expand), max_buffered=2,
            progress=self.jira.walk_progress(self.log, "issue census: missing issues",
                                             total=len(missing)),
            size=lambda batch: len(batch.issues),
        ):
            if batch.unavailable:
                self.log.warning(
                    f"issue census: Jira could not serve {len(batch.unavailable)} issue(s) now "
                    f"({', '.join(batch.unavailable[:5])}...): the next census fetches them"
                )
            for raw in batch.issues:
                self.fetched += 1
                yield raw

    def _missing(self, walked: array[int], written: Collection[int]) -> list[str]:
        # Every stored live issue in range that Jira also has is one of the walked ids, so when
        # their number equals the walked number none is missing: two index reads (a count and
        # the live ids outside the walk) instead of reading every stored id.
        # This run's own records may still wait in the IO manager's last batch: they count too.
        vanished = self._live_outside(walked)
        in_range = count_live(self.db, "issues", self.connection_id, scope=self.scope)
        pending = [str(i) for i in written if _contains(walked, i)]
        if pending:
            stored_pending = count_live(self.db, "issues", self.connection_id,
                                        scope={**self.scope, "issue_id": {"$in": pending}})
            in_range += len(pending) - stored_pending
        if in_range - len(vanished) == len(walked):
            return []
        stored = _sorted_ids(stored_live_ids(self.db, "issues", self.connection_id))
        return [
            str(issue_id)
            for issue_id in walked
            if issue_id not in written and not _contains(stored, issue_id)
        ]

    def _live_outside(self, walked: array[int]) -> list[str]:
        """Stored live issues in range whose ids the walk did not list."""
        return live_ids_except(
            self.db, "issues", self.connection_id, {str(i) for i in walked}, scope=self.scope
        )

    # --- 2: what Jira provably lacks ------------------------------------------------------

    def vanished(self) -> Iterator[Tombstone]:
        """The tombstone of the stored live issues that the complete walk did not list and that
        Jira, asked by id, does not return either (the IO manager marks them deleted)."""
        walked = self.walked
        if walked is None:
            return  # the walk did not complete: nothing is proven
        try:
            gone = self._vanished(walked)
        finally:
            self._ended = clock.perf_counter()
        if gone:
            yield Tombstone("issues", frozenset(gone))

    def _vanished(self, walked: array[int]) -> list[str]:
        candidates = self._live_outside(walked)
        if not candidates:
            return []
        present: set[str] = set()
        for batch in self.jira.iterate(
            lambda client: client.issues_by_id(candidates, ("id",)), max_buffered=2
        ):
            present.update(str(issue.get("id")) for issue in batch.issues)
            present.update(batch.unavailable)
        if present:
            self.still_in_jira = len(present)
            self.log.warning(
                f"issue census: {len(present)} stored issue(s) the walk did not list are still "
                "served by id: not marked deleted"
            )
        return [jira_id for jira_id in candidates if jira_id not in present]

    def metadata(self) -> dict[str, Any]:
        spent = counter_delta(self._counters_before, self.jira.counters())
        return {
            "reconciled": self.walked is not None,
            "census_issue_ids": len(self.walked) if self.walked is not None else 0,
            "census_walks": self.walks,
            "census_fetched": self.fetched,
            "census_still_in_jira": self.still_in_jira,
            "census_api_calls": int(spent["api_calls"]),
            # From the walk's first request to the last mark, writing the fetched issues included.
            "census_duration_s": dg.MetadataValue.float(
                round((self._ended or clock.perf_counter()) - (self._started or 0.0), 3)
                if self._started is not None else 0.0
            ),
        }

    def _search_path(self) -> str:
        return "/rest/api/2/search" if self._datacenter else "/rest/api/3/search/jql"

    def _count_path(self) -> str:
        return "/rest/api/2/search" if self._datacenter else "/rest/api/3/search/approximate-count"

    @property
    def _datacenter(self) -> bool:
        return self.jira.run(_deployment) == "datacenter"


async def _deployment(client: Any) -> str:
    return str(client.deployment)


def census_enabled(option: bool | None, run_tags: Mapping[str, str]) -> bool:
    """The run config's `reconcile_deletions` when given, else whether the daily schedule
    requested this run."""
    if option is not None:
        return option
    return run_tags.get(CENSUS_TAG) == "true"
