"""`jira_issue_comments`: one document per comment of the issues a partition holds, from the
stored issue's embedded `comment` block when it is complete, otherwise paged from Jira; comments
a complete listing no longer has are marked deleted.

A partition reads the stored issues whose `updated` falls in its window (widened by the
lookback; the first partition also takes earlier issues, the last later ones), a batch at a
time, projected to the comment block (never the rest of `raw`). Jira embeds at most 20 comments
in an issue (`total > maxResults` says the block is truncated): those issues' threads are paged
from `/issue/{id}/comment`, 100 a request, several issues at once. An issue edited (a comment
added, edited or deleted bumps its `updated`) is re-read with its partition, so its comments
follow. A listing is complete when it holds exactly Jira's `total`, each comment once; one that
is not (a page came back short) is fetched once more, and if still incomplete its comments are
stored but none is marked deleted. In a run whose `jira_issues` takes the census
(`assets/issue_window.py`), the issues the census stored from other days are read too, and the
comments of the issues it proved deleted are marked deleted (Jira deletes them with the issue).
"""

import asyncio
import time
import warnings
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from pymongo.database import Database

from jira_pipeline.assets.dimensions import NETWORK_RETRY_POLICY
from jira_pipeline.assets.issue_window import (
    StoredWindow,
    live_children_of_deleted_issues,
    run_window,
    window_issues,
)
from jira_pipeline.assets.resources import JiraResource, counter_delta
from jira_pipeline.assets.site_resource import with_site_resource
from jira_pipeline.assets.sites import JiraSite
from jira_pipeline.assets.streams import failing_fast, reported_as_itself, stored_asset_spec
from jira_pipeline.jira import JiraClient, JiraNotFound, Submitted
from jira_pipeline.jira.comments import CommentRecord, CommentThread, comment_thread
from jira_pipeline.settings import PipelineSettings
from jira_pipeline.storage.entities import entity_spec
from jira_pipeline.storage.io_manager import (
    Tombstone,
    Upsert,
    WriteItem,
    WriteStream,
)
from jira_pipeline.storage.resources import MongoResource
from jira_pipeline.storage.sync_errors import UnstorableRecord
from jira_pipeline.timeutil import parse_jira_datetime

ASSET_NAME = "jira_issue_comments"
ISSUE_BATCH = 200  # stored issues read (and their truncated threads fetched) per batch
# Batches whose truncated threads are fetched while an earlier batch is written: at most this
# many batches' stored blocks and fetched threads are held beside the one being written.
THREAD_BATCHES_AHEAD = 3
SAMPLE_SIZE = 20  # issues the `comments_complete` check asks Jira about
COMMENTS = entity_spec("comments")


def build_comments_asset(
    site: JiraSite, partitions: dg.DailyPartitionsDefinition, settings: PipelineSettings
) -> dg.AssetsDefinition:
    with warnings.catch_warnings():
        # `backfill_policy` is "beta": a backfill is one run, as for jira_issues.
        warnings.simplefilter("ignore", dg.BetaWarning)
        return _build_comments_asset(site, partitions, settings)


def _build_comments_asset(
    site: JiraSite, partitions: dg.DailyPartitionsDefinition, settings: PipelineSettings
) -> dg.AssetsDefinition:
    key = site.asset_key(ASSET_NAME)
    issues_key = site.asset_key("jira_issues")

    @dg.multi_asset(
        name=key.to_python_identifier(),
        specs=[
            stored_asset_spec(
                site, COMMENTS.collection,
                "One document per issue comment (body as Jira sent it, ADF on Cloud, and as "
                "plain text), for the issues a partition of jira_issues holds: from the "
                "embedded comment block when complete, else paged from Jira. Comments a "
                "complete listing no longer has are kept with is_deleted: true.",
                deps=[site.asset_key("jira_issues")],
            )
        ],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=NETWORK_RETRY_POLICY,
        check_specs=[dg.AssetCheckSpec(
            "comments_complete", asset=key,
            description=f"For a sample of up to {SAMPLE_SIZE} of the partitions' issues (the "
            "most recently updated and those with the most comments), the stored live "
            "comments are those Jira's /issue/{id}/comment lists: as many as its total, none "
            "edited since stored.",
        )],
        can_subset=True,
    )
    @with_site_resource(site)
    def jira_issue_comments(
        context: dg.AssetExecutionContext, jira: JiraResource, mongo: MongoResource
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        db = mongo.get_database()
        # With a census in the run, also the issues it stored whatever their `updated`, and the
        # comments of the issues it proved deleted.
        window = run_window(context, partitions, settings, issues_key, key)
        if key in context.selected_asset_keys:
            # handle_output drains and writes the stream before this generator resumes.
            yield dg.Output(
                CommentStream(context, jira, db, site, window),
                output_name=context.assets_def.get_output_name_for_asset_key(key),
            )
        if any(check.name == "comments_complete" for check in context.selected_asset_check_keys):
            yield comments_complete(jira, db, site, window)

    return jira_issue_comments


@dataclass(frozen=True)
class BatchThreads:
    """A batch of stored issues, the threads their comment blocks hold whole, and the fetch of
    the rest (None when every block was whole)."""

    batch: list[dict[str, Any]]
    embedded: dict[str, CommentThread]
    fetching: Submitted[list[CommentThread]] | None

    def cancel(self) -> None:
        if self.fetching is not None:
            self.fetching.cancel_and_wait()


class CommentStream(WriteStream):
    """The comments of the selected stored issues, a batch of issues at a time, then the
    tombstones of the stored comments complete listings no longer hold."""

    def __init__(self, context: dg.AssetExecutionContext, jira: JiraResource, db: Database,
                 site: JiraSite, window: StoredWindow) -> None:
        super().__init__(self._comment_items(), self._report)
        self._log, self._jira, self._db, self._site = context.log, jira, db, site
        self._window = window
        self.figures: Counter[str] = Counter()
        self._started = time.perf_counter()
        with failing_fast():  # the first use of the resource builds its client
            self._before = jira.counters()

    def _comment_items(self) -> Iterator[WriteItem]:
        with reported_as_itself():
            vanished: list[str] = []
            # The truncated threads of the next batches are fetched while this one is written:
            # a batch's fetch waits on Jira (a thread of several pages, page after page) while
            # its write is CPU, so overlapping them keeps both busy.
            ahead: deque[BatchThreads] = deque()
            try:
                for batch in stored_issue_batches(self._db, self._site.connection_id,
                                                  self._window):
                    ahead.append(self._start_threads(batch))
                    if len(ahead) > THREAD_BATCHES_AHEAD:
                        yield from self._batch_items(ahead.popleft(), vanished)
                while ahead:
                    yield from self._batch_items(ahead.popleft(), vanished)
            finally:
                for pending in ahead:  # an error or a closed stream: nobody waits for them
                    pending.cancel()
            with_their_issue = live_children_of_deleted_issues(
                self._db, self._site.connection_id, self._window, COMMENTS.collection,
                "comment_id")
            self.figures["deleted_with_their_issue"] = len(with_their_issue)
            vanished.extend(with_their_issue)
            if vanished:
                yield Tombstone(COMMENTS.name, ids=frozenset(vanished))

    def _batch_items(self, started: BatchThreads, vanished: list[str]) -> Iterator[WriteItem]:
        batch = started.batch
        threads = self._threads(started)
        live = stored_live_comments(self._db, self._site.connection_id,
                                    [issue["issue_id"] for issue in batch])
        for issue in batch:
            thread = threads[issue["issue_id"]]
            listed = set()
            for comment in thread.comments:
                listed.add(str(comment.get("id")))
                yield Upsert(self._record(issue, comment))
            if thread.complete:
                vanished.extend(sorted(live.get(issue["issue_id"], set()) - listed))

    def _record(self, issue: Mapping[str, Any], comment: dict[str, Any]) -> Any:
        raw = {"issue": {"id": issue["issue_id"], "key": issue.get("key")}, "comment": comment}
        self.figures["comments"] += 1
        try:
            return CommentRecord.from_raw(raw, self._site.connection_id)
        except ValueError as error:
            return UnstorableRecord.from_error(raw, error)

    def _start_threads(self, batch: list[dict[str, Any]]) -> BatchThreads:
        """The batch's threads embedded whole in the stored issues, and the fetch of the
        others, started."""
        embedded: dict[str, CommentThread] = {}
        fetch: list[str] = []
        for issue in batch:
            block = ((issue.get("raw") or {}).get("fields") or {}).get("comment")
            thread = CommentThread.embedded(issue["issue_id"], block)
            if thread is None:
                fetch.append(issue["issue_id"])
            else:
                embedded[issue["issue_id"]] = thread
        fetching = self._jira.start(lambda client: fetch_threads(client, fetch)) if fetch else None
        return BatchThreads(batch, embedded, fetching)

    def _threads(self, started: BatchThreads) -> dict[str, CommentThread]:
        batch, threads = started.batch, dict(started.embedded)
        self.figures["issues_read"] += len(batch)
        self.figures["threads_from_embedded_block"] += len(threads)
        fetch = started.fetching
        if fetch is not None:
            fetched = fetch.wait()
            self.figures["threads_fetched"] += len(fetched)
            self.figures["comment_requests"] += sum(t.pages for t in fetched)
            for thread in fetched:
                if thread.total is None:
                    self.figures["listings_incomplete"] += 1
                    self._log.warning(f"issue {thread.issue_id}: Jira did not list its comments "
                                      "(not found, or no total): left as stored")
                elif not thread.complete:
                    self.figures["listings_incomplete"] += 1
                    self._log.warning(
                        f"issue {thread.issue_id}: Jira listed {len(thread.comments)} distinct "
                        f"comment(s) of the {thread.total} it states, twice: stored what came, "
                        "marked none deleted"
                    )
                threads[thread.issue_id] = thread
        return threads

    def _report(self) -> dict[str, Any]:
        with reported_as_itself():
            spent = counter_delta(self._before, self._jira.counters())
        figures = {name: self.figures[name] for name in (
            "issues_read", "threads_from_embedded_block", "threads_fetched", "comment_requests",
            "listings_incomplete", "deleted_with_their_issue")}  # fmt: skip
        return {
            "records_fetched": self.figures["comments"],
            **figures,
            "api_calls": int(spent["api_calls"]),
            "retries": int(spent["retries"]),
            "rate_limit_waits": int(spent["rate_limit_waits"]),
            "fetch_duration_s": dg.MetadataValue.float(
                round(time.perf_counter() - self._started, 3)),
        }


async def fetch_threads(client: JiraClient, issue_ids: list[str]) -> list[CommentThread]:
    """The whole threads of `issue_ids`, several at once (the client's limiter paces them); a
    thread that comes back incomplete is fetched once more."""

    async def one(issue_id: str) -> CommentThread:
        try:
            thread = await comment_thread(client, issue_id)
        except JiraNotFound:
            # Deleted (or hidden) since it was stored: the census marks the issue; its comments
            # are left as stored, none proven gone by this.
            return CommentThread(issue_id, [], None, 1)
        if thread.complete:
            return thread
        again = await comment_thread(client, issue_id)
        return CommentThread(issue_id, again.comments, again.total, thread.pages + again.pages)

    return list(await asyncio.gather(*(one(issue_id) for issue_id in issue_ids)))


def stored_issue_batches(
    db: Database, connection_id: str, window: StoredWindow, size: int = ISSUE_BATCH
) -> Iterator[list[dict[str, Any]]]:
    """The window's stored issues, projected to their ids and comment block, a batch at a
    time. The window's ids are read first and the blocks a batch of ids at a time: the blocks
    of a whole site (20 comments an issue, ADF bodies) are tens of MB, and a batch is what
    `_threads` and the live comments' read take at once."""
    ids = [str(doc["issue_id"]) for doc in window_issues(
        db, connection_id, window, {"issue_id": 1, "_id": 0}) if doc.get("issue_id") is not None]
    projection = {"issue_id": 1, "key": 1, "updated": 1, "raw.fields.comment": 1, "_id": 0}
    for start in range(0, len(ids), size):
        chunk = ids[start:start + size]
        by_id = {str(doc["issue_id"]): doc for doc in db["jira_issues"].find(
            {"connection_id": connection_id, "issue_id": {"$in": chunk},
             "is_deleted": {"$ne": True}}, projection)}
        # In the window's order (a later edit may have moved an issue out: read as stored).
        batch = [by_id[issue_id] for issue_id in chunk if issue_id in by_id]
        if batch:
            yield batch


def stored_live_comments(
    db: Database, connection_id: str, issue_ids: list[str]
) -> dict[str, set[str]]:
    """The ids of the stored, live comments of each of `issue_ids`."""
    found: dict[str, set[str]] = {}
    selector = {"connection_id": connection_id, "issue_id": {"$in": issue_ids},
                "is_deleted": {"$ne": True}}
    for doc in db[COMMENTS.collection].find(selector, {"issue_id": 1, "comment_id": 1, "_id": 0}):
        found.setdefault(str(doc["issue_id"]), set()).add(str(doc["comment_id"]))
    return found


def comments_complete(
    jira: JiraResource, db: Database, site: JiraSite, window: StoredWindow
) -> dg.AssetCheckResult:
    """For a sample of the partitions' issues, the stored live comments against Jira's thread:
    as many as its `total`, the same ids, none edited since it was stored."""
    issues = [
        (doc["issue_id"], doc.get("key"), doc.get("updated"),
         (((doc.get("raw") or {}).get("fields") or {}).get("comment") or {}).get("total") or 0)
        for doc in window_issues(db, site.connection_id, window, {
            "issue_id": 1, "key": 1, "updated": 1, "raw.fields.comment.total": 1, "_id": 0})
    ]
    recent = sorted(issues, key=lambda issue: str(issue[2]), reverse=True)[: SAMPLE_SIZE // 2]
    busiest = sorted(issues, key=lambda issue: issue[3], reverse=True)
    sample = list({issue[0]: issue for issue in [*recent, *busiest][:SAMPLE_SIZE * 2]}.values())
    sample = sample[:SAMPLE_SIZE]
    ids = [issue[0] for issue in sample]
    before = jira.counters()
    threads = {thread.issue_id: thread
               for thread in (jira.run(lambda client: fetch_threads(client, ids)) if ids else [])}
    stored: dict[str, dict[str, Any]] = {}
    for doc in db[COMMENTS.collection].find(
            {"connection_id": site.connection_id, "issue_id": {"$in": ids},
             "is_deleted": {"$ne": True}}, {"issue_id": 1, "comment_id": 1, "updated": 1,
                                            "_id": 0}):
        stored.setdefault(str(doc["issue_id"]), {})[str(doc["comment_id"])] = doc.get("updated")
    keys = {issue[0]: issue[1] or issue[0] for issue in sample}
    mismatched = []
    for issue_id in ids:
        thread, held = threads[issue_id], stored.get(issue_id, {})
        if thread.total is None:
            continue  # not found in Jira (deleted since): the census's to judge
        if len(held) != thread.total:
            mismatched.append(f"{keys[issue_id]}: stored {len(held)}, Jira {thread.total}")
            continue
        edited = [c for c in thread.comments
                  if str(c.get("id")) in held and not _same_moment(held[str(c["id"])],
                                                                  c.get("updated"))]
        unknown = [c for c in thread.comments if str(c.get("id")) not in held]
        if edited or unknown:
            mismatched.append(f"{keys[issue_id]}: {len(edited)} edited and {len(unknown)} "
                              "unknown comment(s) since stored")
    spent = counter_delta(before, jira.counters())
    return dg.AssetCheckResult(
        asset_key=site.asset_key(ASSET_NAME),
        check_name="comments_complete",
        passed=not mismatched,
        description=(f"{len(mismatched)} of {len(ids)} sampled issue(s) store other comments "
                     "than Jira lists" if mismatched
                     else f"all {len(ids)} sampled issue(s) store every comment Jira lists"),
        metadata={
            "issues_sampled": len(ids),
            "mismatched": len(mismatched),
            "mismatched_sample": "; ".join(mismatched[:10]),
            "api_calls": int(spent["api_calls"]),
        },
    )


def _same_moment(stored: Any, sent: Any) -> bool:
    """A stored BSON date (milliseconds, maybe naive UTC) against Jira's timestamp."""
    if not isinstance(stored, datetime) or not isinstance(sent, str):
        return stored is None and sent is None
    moment = _moment_of(sent)
    if moment is None:
        return False
    if stored.tzinfo is None:
        stored = stored.replace(tzinfo=UTC)
    return abs((stored - moment).total_seconds()) < 0.001


def _moment_of(text: str) -> datetime | None:
    try:
        return parse_jira_datetime(text)
    except ValueError:
        return None
