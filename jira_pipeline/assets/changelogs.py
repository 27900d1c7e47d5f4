"""`jira_issue_changelogs`: every history of the issues a `jira_issues` partition holds, one
document per history entry, fetched complete (Cloud `changelog/bulkfetch`, Data Center one
whole changelog per issue), and the `changelog_complete` check against Jira's own counts.

Which issues a partition covers: the stored issues whose `updated` lies in its window widened
by the lookback (the issues step of the same run wrote them; the first partition also holds
the issues updated before it, the last those after it). Histories are immutable, so an issue
whose `updated` did not move has nothing new, and a rerun upserts the same documents.
"""

import hashlib
import heapq
import time
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from pymongo.database import Database

from jira_pipeline.assets.checks import jira_spent, run_started, selected_checks
from jira_pipeline.assets.dimensions import NETWORK_RETRY_POLICY
from jira_pipeline.assets.issue_window import (
    StoredWindow,
    live_children_of_deleted_issues,
    run_window,
    window_issues,
)
from jira_pipeline.assets.partitions import partition_key_for
from jira_pipeline.assets.resources import JiraResource, counter_delta
from jira_pipeline.assets.site_resource import with_site_resource
from jira_pipeline.assets.sites import JiraSite
from jira_pipeline.assets.streams import (
    PREVIEW_ROWS,
    failing_fast,
    markdown_table,
    reported_as_itself,
    stored_asset_spec,
)
from jira_pipeline.jira import JiraClient
from jira_pipeline.jira.changelogs import (
    BULK_CHANGELOG_ISSUES,
    ChangelogTail,
    changelog_tail,
    history_document,
    issue_history_pages,
)
from jira_pipeline.settings import PipelineSettings
from jira_pipeline.storage.entities import ISSUE_CHANGELOGS
from jira_pipeline.storage.io_manager import (
    Tombstone,
    Upsert,
    WriteItem,
    WriteStream,
)
from jira_pipeline.storage.resources import MongoResource
from jira_pipeline.timeutil import parse_jira_datetime

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CHANGELOG_COMPLETE = "changelog_complete"
CHECK_SAMPLE = 5  # issues per run whose stored histories are counted against Jira's
PREVIEW_FIELDS = ("issue_key", "history_id", "created", "author_account_id")
CHANGELOG_COMPLETE_DESCRIPTION = (
    f"For up to {CHECK_SAMPLE} of the run's issues (those updated last, where a walk that "
    "ended early loses histories first, and a spread of the others), the stored histories "
    "number Jira's `total` from /issue/{id}/changelog (Data Center: the issue's whole "
    "changelog). Histories Jira added after the run started are left to the next run."
)


def build_changelogs_asset(
    site: JiraSite, partitions: dg.DailyPartitionsDefinition, settings: PipelineSettings
) -> dg.AssetsDefinition:
    with warnings.catch_warnings():
        # `backfill_policy` is "beta": a backfill is one run, as of jira_issues.
        warnings.simplefilter("ignore", dg.BetaWarning)
        return _build_changelogs_asset(site, partitions, settings)


def _build_changelogs_asset(
    site: JiraSite, partitions: dg.DailyPartitionsDefinition, settings: PipelineSettings
) -> dg.AssetsDefinition:
    key = site.asset_key(ISSUE_CHANGELOGS.collection)
    issues_key = site.asset_key("jira_issues")

    @dg.multi_asset(
        name=key.to_python_identifier(),
        specs=[
            stored_asset_spec(
                site, ISSUE_CHANGELOGS.collection,
                "Every history entry of the partition's issues (one document each: who "
                "changed which fields when, from and to what), complete however long the "
                "changelog: Cloud changelog/bulkfetch, 1,000 issues a call; Data Center "
                "one request per issue.",
                deps=[dg.AssetDep(issues_key, partition_mapping=dg.IdentityPartitionMapping())],
            )
        ],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=NETWORK_RETRY_POLICY,
        check_specs=[
            dg.AssetCheckSpec(CHANGELOG_COMPLETE, asset=key, blocking=True,
                              description=CHANGELOG_COMPLETE_DESCRIPTION),
        ],
        can_subset=True,
    )
    @with_site_resource(site)
    def jira_issue_changelogs(
        context: dg.AssetExecutionContext, jira: JiraResource, mongo: MongoResource
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        # With a census in the run, also the issues it stored whatever their `updated`.
        window = run_window(context, partitions, settings, issues_key, key)
        db = mongo.get_database()
        if key in context.selected_asset_keys:
            context.log.info(f"fetching the changelogs of the issues updated in {window}")
            # The IO manager drains and writes the stream before this generator resumes.
            keys = list(context.partition_keys)

            def per_partition(stream: ChangelogStream) -> None:
                # Each partition shows its own issues' figures (the output's are the run's);
                # set while the IO manager still writes, before the materializations exist.
                for partition_key, figures in stream.by_partition(partitions, keys).items():
                    context.add_asset_metadata(figures, asset_key=key,
                                               partition_key=partition_key)

            stream = ChangelogStream(jira, db, site.connection_id, window, context.log,
                                     per_partition if len(keys) > 1 else None)
            yield dg.Output(stream,
                            output_name=context.assets_def.get_output_name_for_asset_key(key))
        if CHANGELOG_COMPLETE in selected_checks(context, key):
            started = run_started(context.instance, context.run.run_id)
            yield changelog_complete(jira, db, site, window, started)

    return jira_issue_changelogs


def window_issue_chunks(
    db: Database, connection_id: str, window: StoredWindow, size: int = BULK_CHANGELOG_ISSUES
) -> Iterator[dict[str, tuple[str | None, datetime | None]]]:
    """The window's stored issues, `size` at a time, as {issue id: (key, updated)}: read from
    one projected cursor (the `updated` index narrows it), so memory holds a chunk."""
    projection = {"issue_id": 1, "key": 1, "updated": 1, "_id": 0}
    docs = window_issues(db, connection_id, window, projection)
    chunk: dict[str, tuple[str | None, datetime | None]] = {}
    for doc in docs:
        issue_id = doc.get("issue_id")
        if issue_id is None:
            continue
        chunk[str(issue_id)] = (doc.get("key"), parse_jira_datetime(doc.get("updated")))
        if len(chunk) >= size:
            yield chunk
            chunk = {}
    if chunk:
        yield chunk


class ChangelogStream(WriteStream):
    """The window's issues' histories, fetched 1,000 issues a call while the IO manager writes
    them: nothing is held beyond a chunk of issue ids, a page of histories and a few preview
    rows. `metadata()` reports the issues, histories and what fetching them cost."""

    def __init__(self, jira: JiraResource, db: Database, connection_id: str,
                 window: StoredWindow, log: Any,
                 per_partition: Callable[["ChangelogStream"], None] | None = None) -> None:
        super().__init__(self._stream(), self._report)
        self._jira, self._db, self._connection_id = jira, db, connection_id
        self._window, self._log, self._per_partition = window, log, per_partition
        self.issues = 0
        self.histories = 0
        # By the issues' `updated` day (what a partition holds): issues and histories fetched.
        self._days: Counter[str] = Counter()
        self._day_histories: Counter[str] = Counter()
        self._preview: list[dict[str, Any]] = []
        self._started = time.perf_counter()
        with failing_fast():  # the first use of the resource builds its client
            self._counters_before = jira.counters()

    def _stream(self) -> Iterator[WriteItem]:
        self._started = time.perf_counter()
        with reported_as_itself():
            for chunk in window_issue_chunks(self._db, self._connection_id, self._window):
                self.issues += len(chunk)
                days = {issue_id: _day(updated) for issue_id, (_, updated) in chunk.items()}
                self._days.update(days.values())
                # Pages cross from the client's loop thread, not histories one by one.
                pages = self._jira.iterate(history_pages_of(list(chunk)), max_buffered=1)
                for issue_id, history in (pair for page in pages for pair in page):
                    self.histories += 1
                    self._day_histories[days.get(issue_id, "")] += 1
                    issue_key = chunk[issue_id][0] if issue_id in chunk else None
                    doc = history_document(self._connection_id, issue_id, issue_key, history)
                    if len(self._preview) < PREVIEW_ROWS:
                        self._preview.append({name: doc.get(name) for name in PREVIEW_FIELDS})
                    yield Upsert(doc)
            gone = live_children_of_deleted_issues(
                self._db, self._connection_id, self._window, ISSUE_CHANGELOGS.collection,
                "history_id")
            if gone:
                yield Tombstone(ISSUE_CHANGELOGS.name, frozenset(gone))

    def by_partition(self, partitions: dg.DailyPartitionsDefinition,
                     keys: list[str]) -> dict[str, dict[str, Any]]:
        """Each of `keys`' own `issues` and `records_fetched` (issues outside the keys, in the
        lookback, count in the nearest)."""
        figures = {key: {"issues": 0, "records_fetched": 0} for key in keys}
        for day in {*self._days, *self._day_histories}:
            key = partition_key_for(partitions, datetime.fromisoformat(day)) if day else keys[-1]
            key = min(max(key, keys[0]), keys[-1])
            figures[key]["issues"] += self._days[day]
            figures[key]["records_fetched"] += self._day_histories[day]
        return figures

    def _report(self) -> dict[str, Any]:
        with reported_as_itself():
            spent = counter_delta(self._counters_before, self._jira.counters())
        elapsed = time.perf_counter() - self._started
        if self._per_partition is not None:
            self._per_partition(self)
        self._log.info(f"{self.histories:,} histories of {self.issues:,} issues fetched in "
                       f"{int(spent['api_calls'])} request(s), {elapsed:.1f} s")
        return {
            "issues": self.issues,
            "records_fetched": self.histories,
            "api_calls": int(spent["api_calls"]),
            "retries": int(spent["retries"]),
            "rate_limit_waits": int(spent["rate_limit_waits"]),
            "rate_limit_wait_s": dg.MetadataValue.float(spent["wait_seconds"]),
            "bytes_received": int(spent["bytes_received"]),
            "fetch_duration_s": dg.MetadataValue.float(round(elapsed, 3)),
            "records_per_s": dg.MetadataValue.float(
                round(self.histories / max(elapsed, 1e-9), 1)),
            "preview": dg.MetadataValue.md(markdown_table(self._preview, PREVIEW_FIELDS)),
        }


def _day(updated: datetime | None) -> str:
    return updated.astimezone(UTC).date().isoformat() if updated else ""


def history_pages_of(
    ids: list[str],
) -> Callable[[JiraClient], AsyncIterator[list[tuple[str, dict[str, Any]]]]]:
    return lambda client: issue_history_pages(client, ids)


def tail_of(
    issue_id: str, start: int
) -> Callable[[JiraClient], Coroutine[Any, Any, ChangelogTail | None]]:
    return lambda client: changelog_tail(client, issue_id, start)


def check_sample(db: Database, connection_id: str, window: StoredWindow,
                 size: int = CHECK_SAMPLE) -> list[str]:
    """Up to `size` of the window's issues: the ones updated last (a bulkfetch walk that ended
    early lost the newest histories, which the issues updated last hold) and a spread of the
    others (the smallest hashes of their ids: fixed for the data, not for the id order). One
    projected pass; memory holds the sample."""
    wanted_newest = size - size // 2
    newest: list[tuple[datetime, str]] = []  # a min-heap of the newest `updated`
    spread: list[tuple[str, str]] = []  # (hash, issue id), the smallest
    for doc in db["jira_issues"].find(window.selector(connection_id),
                                      {"issue_id": 1, "updated": 1, "_id": 0}):
        if doc.get("issue_id") is None:
            continue
        item = (parse_jira_datetime(doc.get("updated")) or _EPOCH, str(doc["issue_id"]))
        if len(newest) < wanted_newest:
            heapq.heappush(newest, item)
            continue
        if item > newest[0]:
            item = heapq.heapreplace(newest, item)
        digest = hashlib.blake2b(item[1].encode(), digest_size=8).hexdigest()
        spread = sorted([*spread, (digest, item[1])])[: size - wanted_newest]
    return [issue_id for _, issue_id in sorted(newest, reverse=True)] + [
        issue_id for _, issue_id in spread]


def changelog_complete(
    jira: JiraResource, db: Database, site: JiraSite, window: StoredWindow, started: datetime
) -> dg.AssetCheckResult:
    """`changelog_complete`: the sample's stored history counts against Jira's."""
    key = site.asset_key(ISSUE_CHANGELOGS.collection)
    sample = check_sample(db, site.connection_id, window)
    before = jira.counters()
    incomplete: list[str] = []
    changed_since = 0
    gone = 0
    for issue_id in sample:
        stored = db[ISSUE_CHANGELOGS.collection].count_documents(
            {"connection_id": site.connection_id, "issue_id": issue_id,
             "is_deleted": {"$ne": True}})
        tail = jira.run(tail_of(issue_id, stored))
        if tail is None:
            gone += 1  # deleted in Jira since: the issues' census will mark it
            continue
        verdict = judge(tail, stored, started)
        if verdict == "changed":
            changed_since += 1
        elif verdict != "complete":
            incomplete.append(f"{issue_id}: {verdict}")
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=CHANGELOG_COMPLETE,
        passed=not incomplete,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"{len(incomplete)} of {len(sample)} sampled issue(s) have an incomplete stored "
            f"changelog: {'; '.join(incomplete)}" if incomplete
            else f"the {len(sample)} sampled issue(s) hold every history Jira has"
        ),
        metadata={
            "sampled_issues": ", ".join(sample),
            "incomplete": len(incomplete),
            "changed_since_run_started": changed_since,
            "gone_from_jira": gone,
            **jira_spent(jira, before),
        },
    )


def judge(tail: ChangelogTail, stored: int, started: datetime) -> str:
    """"complete", "changed" (every history beyond the stored ones was made after the run
    started: the next run's), or what is wrong."""
    if tail.total == stored:
        return "complete"
    if tail.total < stored:
        return f"{stored} histories stored, Jira has {tail.total}"
    beyond = tail.histories[: tail.total - stored]
    if len(beyond) == tail.total - stored and all(
        (parse_jira_datetime(history.get("created")) or started) >= started for history in beyond
    ):
        return "changed"
    return f"{stored} of Jira's {tail.total} histories stored"


__all__ = ["CHANGELOG_COMPLETE", "ChangelogStream", "build_changelogs_asset"]
