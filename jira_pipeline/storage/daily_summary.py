"""`jira_issue_daily_summary` in MongoDB: what the summary reads of the stored issues (one
projected query per range of days), of their changelogs and status history (the status each
issue had on each day it changed), and how the IO manager replaces a range's rows."""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
from pymongo import InsertOne, ReplaceOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from jira_pipeline.storage.derived_rows import DerivedWriteCounts
from jira_pipeline.storage.entities import (
    DAILY_SUMMARY,
    ENTITIES,
    ISSUE_CHANGELOGS,
    STATUS_TRANSITIONS,
    document_id,
)
from jira_pipeline.storage.upserts import DUPLICATE_KEY
from jira_pipeline.timeutil import utc_now

# What the summary needs of an issue: nothing else is read (never `raw`).
SUMMARY_ISSUE_FIELDS = ("project_key", "status_name", "created", "updated", "resolution_date")
# The days a summary covers: [start, end), either side open (None) at the partitions' edges.
DayRange = tuple[datetime | None, datetime | None]
# How much of `updated` one query of the summary reads; also the days of changes (history
# entries, last updates) read, and held, at once.
UPDATED_CHUNK = timedelta(days=7)
DAY = timedelta(days=1)
# Issues whose status history one query reads.
HISTORY_BATCH = 500
# What the summary reads of a status interval.
INTERVAL_FIELDS = ("issue_id", "status_id", "status_name", "project_id", "project_key",
                   "entered_at", "left_at")


def aware(moment: datetime) -> datetime:
    """A stored datetime as an aware UTC one (a client without tz_aware returns naive UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def day_of(moment: datetime) -> datetime:
    moment = aware(moment)
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)


def in_range(moment: Any, days: DayRange) -> bool:
    if not isinstance(moment, datetime):
        return False
    start, end = days
    moment = aware(moment)
    return (start is None or moment >= start) and (end is None or moment < end)


@dataclass
class StoredIssueDays:
    """The stored live issues a summary of some day ranges needs, read lazily: the issues whose
    `updated`, `created` or `resolution_date` falls in a range, each projected to
    `SUMMARY_ISSUE_FIELDS`. What `MongoUpsertIOManager.load_input` hands an input typed with
    this class; `documents_read` and `queries` say what was read.

    Jira sets `updated` on creating and on resolving an issue, so every issue a range needs was
    updated at or after the range's start: a range is read as the issues updated since its
    start, in queries of `UPDATED_CHUNK` of `updated` each (what the `updated` index answers).
    A query's answer is held whole by the embedded store's cursor, so memory is bounded by the
    issues updated in one chunk, never by the collection; a range of recent days (the daily
    run's) is one query.
    """

    collection: Collection
    connection_id: str | None
    ranges: list[DayRange]
    origin: datetime | None = None  # the first partition's start: an open range's first chunk
    documents_read: int = 0
    queries: int = 0
    change_queries: int = 0  # what reading the changes (`changes`) asked
    _names_read: tuple[dict[str, str], dict[str, str]] | None = field(default=None, repr=False)

    def issues_touching(self, days: DayRange) -> Iterator[dict[str, Any]]:
        for chunk in self.updated_chunks(days):
            self.queries += 1
            for doc in self.collection.find(self.selector(days, chunk), list(SUMMARY_ISSUE_FIELDS)):
                self.documents_read += 1
                yield doc

    def changes(self, days: DayRange) -> Iterator[tuple[datetime, str | None, str | None]]:
        """`(day, project_key, status_name)` once per live issue and UTC day of `days` on which
        the issue changed: a history entry (`jira_issue_changelogs`) or its last update. An
        issue is named by what it was at the end of that day: on the day of its last update,
        its current project and status; on an earlier day, its status interval then
        (`jira_issue_status_transitions`), named as the stored status and project are now (so
        renames show on every day), or its current ones when no interval covers the day (its
        history not derived yet). Read a week of days at a time: memory holds one week's
        changes and their issues' intervals, never the range's.

        History is read from the first partition's start (`origin`) on: the days before it
        (the first partition's open past, the site's whole history before the sync start date)
        count each issue on its last update only, in one query of `updated` (a site's whole
        changelog would be read otherwise)."""
        start, end = days
        if start is None:
            if self.origin is None:
                yield from self._changes_in((None, end), with_history=False)
                return
            yield from self._changes_in((None, self.origin), with_history=False)
            start = self.origin
        last = end if end is not None else utc_now() + DAY
        while start < last:
            yield from self._changes_in((start, min(start + UPDATED_CHUNK, last)))
            start += UPDATED_CHUNK

    def _scope(self) -> dict[str, Any]:
        return {} if self.connection_id is None else {"connection_id": self.connection_id}

    @property
    def _changelogs(self) -> Collection:
        return self.collection.database[ISSUE_CHANGELOGS.collection]

    def _changes_in(
        self, chunk: DayRange, with_history: bool = True
    ) -> Iterator[tuple[datetime, str | None, str | None]]:
        bounds = _bounds(chunk)
        live = {**self._scope(), "is_deleted": {"$ne": True}}
        current: dict[str, tuple[str | None, str | None]] = {}
        last_update: dict[str, datetime] = {}
        changed: set[tuple[datetime, str]] = set()
        self.change_queries += 1
        for doc in self.collection.find({**live, **({"updated": bounds} if bounds else {})},
                                        ["issue_id", "updated", "project_key", "status_name"]):
            issue_id = str(doc["issue_id"])
            current[issue_id] = (doc.get("project_key"), doc.get("status_name"))
            last_update[issue_id] = day_of(doc["updated"])
            changed.add((last_update[issue_id], issue_id))
        if with_history:
            self.change_queries += 1
            for entry in self._changelogs.find({**live, "created": bounds},
                                               ["issue_id", "created"]):
                changed.add((day_of(entry["created"]), str(entry["issue_id"])))
        earlier: dict[str, list[datetime]] = defaultdict(list)
        for day, issue_id in sorted(changed):
            if last_update.get(issue_id) == day:
                yield day, *current[issue_id]
            else:
                earlier[issue_id].append(day)
        del changed
        # An issue changed on an earlier day of the chunk and last updated after it.
        earlier_ids = sorted(earlier)
        unknown = [issue_id for issue_id in earlier_ids if issue_id not in current]
        for offset in range(0, len(unknown), HISTORY_BATCH):
            self.change_queries += 1
            for doc in self.collection.find(
                    {**live, "issue_id": {"$in": unknown[offset:offset + HISTORY_BATCH]}},
                    ["issue_id", "project_key", "status_name"]):
                current[str(doc["issue_id"])] = (doc.get("project_key"), doc.get("status_name"))
        # Deleted, or its changelog outlived it: not counted.
        named = [issue_id for issue_id in earlier_ids if issue_id in current]
        now = utc_now()
        # The status intervals a batch of issues at a time: memory holds a batch's, not the
        # chunk's (at N=100,000 a week's changes named 16,000 issues, 25 MB of intervals).
        for offset in range(0, len(named), HISTORY_BATCH):
            batch = named[offset:offset + HISTORY_BATCH]
            intervals = self._intervals(batch)
            statuses, projects = self._names() if intervals else ({}, {})
            for issue_id in batch:
                for day in earlier[issue_id]:
                    found = _interval_at(intervals.get(issue_id, []), min(day + DAY, now))
                    if found is None:
                        yield day, *current[issue_id]
                        continue
                    yield (day,
                           projects.get(str(found.get("project_id")), found.get("project_key")),
                           statuses.get(str(found.get("status_id")), found.get("status_name")))

    def _intervals(self, issue_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The status intervals of a batch of issues (one query), each issue's by
        `entered_at`."""
        found: dict[str, list[dict[str, Any]]] = defaultdict(list)
        transitions = self.collection.database[STATUS_TRANSITIONS.collection]
        self.change_queries += 1
        for doc in transitions.find({**self._scope(), "issue_id": {"$in": issue_ids}},
                                    list(INTERVAL_FIELDS)):
            if isinstance(doc.get("entered_at"), datetime):
                found[str(doc["issue_id"])].append(doc)
        for docs in found.values():
            docs.sort(key=lambda doc: aware(doc["entered_at"]))
        return found

    def _names(self) -> tuple[dict[str, str], dict[str, str]]:
        """The stored statuses' names and projects' keys by id (what the issues are named by),
        read once per reader."""
        if self._names_read is None:
            self._names_read = self._read_names()
        return self._names_read

    def _read_names(self) -> tuple[dict[str, str], dict[str, str]]:
        db = self.collection.database
        self.change_queries += 2
        statuses = {str(doc["status_id"]): doc["name"] for doc in db[
            ENTITIES["statuses"].collection].find(self._scope(), ["status_id", "name"])
            if doc.get("name")}
        projects = {str(doc["project_id"]): doc["key"] for doc in db[
            ENTITIES["projects"].collection].find(self._scope(), ["project_id", "key"])
            if doc.get("key")}
        return statuses, projects

    def updated_chunks(self, days: DayRange) -> list[DayRange]:
        """Consecutive ranges of `updated` from the range's start on; the last is open."""
        first = days[0] if days[0] is not None else self.origin
        if first is None:
            return [(None, None)]
        now = utc_now()
        chunks: list[DayRange] = []
        lower, upper = days[0], first + UPDATED_CHUNK
        while upper <= now:
            chunks.append((lower, upper))
            lower, upper = upper, upper + UPDATED_CHUNK
        chunks.append((lower, None))
        return chunks

    def selector(self, days: DayRange, chunk: DayRange = (None, None)) -> dict[str, Any]:
        selector: dict[str, Any] = {"is_deleted": {"$ne": True}}
        if self.connection_id is not None:
            selector["connection_id"] = self.connection_id
        updated = _bounds(chunk)
        if updated:
            selector["updated"] = updated
        bounds = _bounds(days)
        if bounds:
            selector["$or"] = [{name: bounds} for name in ("updated", "created", "resolution_date")]
        return selector


def _interval_at(intervals: list[dict[str, Any]], moment: datetime) -> dict[str, Any] | None:
    """The interval holding the instant just before `moment` (an issue's status at the end of
    a day is the one it entered before midnight and had not left by then)."""
    index = bisect_left([aware(doc["entered_at"]) for doc in intervals], moment) - 1
    if index < 0:
        return None
    found = intervals[index]
    left = found.get("left_at")
    return found if left is None or aware(left) >= moment else None


def _bounds(days: DayRange) -> dict[str, datetime]:
    start, end = days
    return {op: value for op, value in (("$gte", start), ("$lt", end)) if value is not None}


@dataclass
class SummaryRange:
    """The rows of one range of days: written, they replace every stored row of the range."""

    days: DayRange
    rows: list[dict[str, Any]]


@dataclass
class DailySummary:
    """What the summary asset returns: ranges of rows for the IO manager to write."""

    connection_id: str
    ranges: Iterable[SummaryRange]
    metadata: dict[str, Any] = field(default_factory=dict)


def summary_row_id(connection_id: str, row: Mapping[str, Any]) -> Any:
    day = aware(row["day"]).strftime("%Y-%m-%d")
    return document_id(
        connection_id, DAILY_SUMMARY.name, f"{day}:{row['project_key']}:{row['status_name']}"
    )


def write_daily_summary(db: Database, summary: DailySummary) -> DerivedWriteCounts:
    """Upsert each range's rows and remove the range's other rows (a day's rows for a project
    or status no issue has there any more): a range is replaced, never merged."""
    collection = db[DAILY_SUMMARY.collection]
    counts = DerivedWriteCounts()
    for summary_range in summary.ranges:
        counts = _replace_range(collection, summary.connection_id, summary_range, counts)
    return counts


def _replace_range(
    collection: Collection, connection_id: str, summary_range: SummaryRange,
    counts: DerivedWriteCounts,
) -> DerivedWriteCounts:
    scope: dict[str, Any] = {"connection_id": connection_id}
    bounds = _bounds(summary_range.days)
    if bounds:
        scope[DAILY_SUMMARY.range_field] = bounds
    stored = {doc["_id"]: doc for doc in collection.find(scope)}
    writes = []
    inserts: list[dict[str, Any]] = []
    kept = set()
    for row in summary_range.rows:
        doc = {**row, "connection_id": connection_id}
        _id = summary_row_id(connection_id, doc)
        kept.add(_id)
        before = stored.get(_id)
        if before is not None and _same_row(before, doc):
            counts.unchanged += 1
            continue
        if before is None:
            counts.inserted += 1
            inserts.append({"_id": _id, **doc})
        else:
            counts.updated += 1
            writes.append(ReplaceOne({"_id": _id}, {"_id": _id, **doc}, upsert=True))
    # New rows (every row of a first run) go in as inserts, which the embedded store writes in
    # one statement, not as upserts (one lookup and write each); a row another run inserted
    # since the read is replaced instead.
    writes.extend(ReplaceOne({"_id": doc["_id"]}, doc, upsert=True)
                  for doc in _inserted_unless_raced(collection, inserts))
    if writes:
        collection.bulk_write(writes, ordered=False)
    gone = [_id for _id in stored if _id not in kept]
    if gone:
        counts.removed += collection.delete_many({"_id": {"$in": gone}}).deleted_count
    return counts


def _inserted_unless_raced(
    collection: Collection, documents: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Insert `documents`; those whose `_id` another writer inserted first are returned."""
    if not documents:
        return []
    try:
        collection.bulk_write([InsertOne(doc) for doc in documents], ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(error.get("code") != DUPLICATE_KEY for error in errors):
            raise
        return [documents[error["index"]] for error in errors]
    return []


def _same_row(stored: Mapping[str, Any], doc: Mapping[str, Any]) -> bool:
    def comparable(value: Any) -> Any:
        return aware(value) if isinstance(value, datetime) else value

    return all(comparable(stored.get(name)) == value for name, value in doc.items())


def partition_ranges(
    partitions: dg.TimeWindowPartitionsDefinition, keys: list[str]
) -> list[DayRange]:
    """The day ranges of partition `keys`, adjacent ones merged; the first partition's range
    opens to the past and the last's to the future (the rows of those days belong to them, as
    the issues of those days belong to the first and last `jira_issues` partitions)."""
    first, last = partitions.get_first_partition_key(), partitions.get_last_partition_key()
    ranges: list[DayRange] = []
    for key in sorted(keys):
        window = partitions.time_window_for_partition_key(key)
        start = None if key == first else aware(window.start)
        end = None if key == last else aware(window.end)
        previous = ranges[-1] if ranges else None
        if previous is not None and previous[1] is not None and start is not None \
                and previous[1] >= start:
            ranges[-1] = (previous[0], end)
        else:
            ranges.append((start, end))
    return ranges


def stored_issue_days(
    db: Database, connection_id: str | None, ranges: list[DayRange],
    origin: datetime | None = None,
) -> StoredIssueDays:
    return StoredIssueDays(
        db[ENTITIES["issues"].collection], connection_id, ranges,
        aware(origin) if origin is not None else None,
    )
