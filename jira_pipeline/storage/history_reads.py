"""What the history assets read of the store: a window's issues in batches with their changelogs
and the raw fields the derivation needs, the field catalog, statuses and projects, and the
status transitions overlapping a range of days. Reads only: the IO manager writes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo.database import Database

from jira_pipeline.history.fields import FieldCatalog
from jira_pipeline.history.time_in_status import TRANSITION_FIELDS
from jira_pipeline.history.transitions import Directory
from jira_pipeline.storage.entities import ENTITIES, STATUS_TRANSITIONS

CHANGELOGS_COLLECTION = "jira_issue_changelogs"
FIELDS_COLLECTION = "jira_fields"
# Issues per batch: a batch's issues, changelogs (10-300 histories an issue) and rows are what
# memory holds.
DEFAULT_BATCH_ISSUES = 50
# What the derivation reads of an issue besides the raw fields of the fields it derives.
ISSUE_KEY_FIELDS = (
    "issue_id", "key", "project_id", "project_key", "status_id", "status_name", "priority",
    "assignee_account_id", "reporter_account_id", "labels", "created", "updated", "is_deleted",
)  # fmt: skip
# Raw fields every batch reads: the current ids and names the issue's key fields lack.
BASE_RAW_FIELDS = ("priority", "assignee", "creator", "project")
CHANGELOG_FIELDS = ("issue_id", "history_id", "author_account_id", "created", "items")


@dataclass
class IssueBatch:
    """Some of a window's issues (`raw.fields` holding only what their derivation needs), the
    live ones' changelog entries by issue id, and the ids of the issues marked deleted."""

    issues: list[dict[str, Any]]
    changelogs: Mapping[str, list[dict[str, Any]]]
    deleted: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [str(issue["issue_id"]) for issue in self.issues] + self.deleted


@dataclass
class HistorySource:
    """The stored data one connection's history assets read; `reads` counts the queries."""

    db: Database
    connection_id: str
    batch_issues: int = DEFAULT_BATCH_ISSUES
    reads: int = 0
    histories_read: int = 0
    items_read: int = 0

    def _find(self, collection: str, selector: dict[str, Any],
              projection: Sequence[str] | dict[str, Any] | None = None) -> Any:
        self.reads += 1
        return self.db[collection].find({"connection_id": self.connection_id, **selector},
                                        projection)

    def catalog(self) -> FieldCatalog:
        return FieldCatalog.from_documents(
            self._find(FIELDS_COLLECTION, {}, ["field_id", "name", "schema_type"]))

    def directory(self) -> Directory:
        return Directory.from_documents(
            self._find(ENTITIES["statuses"].collection, {},
                       ["status_id", "name", "status_category"]),
            self._find(ENTITIES["projects"].collection, {}, ["project_id", "key"]),
        )

    def window_issue_ids(self, start: datetime | None, end: datetime | None) -> list[str]:
        """The issues updated in [start, end), or marked deleted then (their rows must go);
        None leaves that side open (both: every stored issue)."""
        bounds = {op: value for op, value in (("$gte", start), ("$lt", end)) if value is not None}
        selector = {"$or": [{"updated": bounds}, {"deleted_at": bounds}]} if bounds else {}
        docs = self._find(ENTITIES["issues"].collection, selector, {"issue_id": 1, "_id": 0})
        return sorted({str(doc["issue_id"]) for doc in docs})

    def live_issue_ids(self) -> list[str]:
        """Every live issue of the connection (what the consistency check alone reads)."""
        docs = self._find(ENTITIES["issues"].collection, {"is_deleted": {"$ne": True}},
                          {"issue_id": 1, "_id": 0})
        return sorted({str(doc["issue_id"]) for doc in docs})

    def batches(
        self, issue_ids: Sequence[str], raw_fields: Sequence[str] | None = None
    ) -> Iterator[IssueBatch]:
        """The issues in batches; `raw_fields`: the raw fields to read besides the base ones
        (None: each changed field, found in the batch's changelogs)."""
        for offset in range(0, len(issue_ids), self.batch_issues):
            yield self._batch(list(issue_ids[offset:offset + self.batch_issues]), raw_fields)

    def _batch(self, ids: list[str], raw_fields: Sequence[str] | None) -> IssueBatch:
        changelogs: dict[str, list[dict[str, Any]]] = defaultdict(list)
        changed: set[str] = set()
        for entry in self._find(CHANGELOGS_COLLECTION,
                                {"issue_id": {"$in": ids}, "is_deleted": {"$ne": True}},
                                list(CHANGELOG_FIELDS)):
            changelogs[str(entry["issue_id"])].append(entry)
            self.histories_read += 1
            for item in entry.get("items") or ():
                self.items_read += 1
                if raw_fields is None and isinstance(item, Mapping) and item.get("field_id"):
                    changed.add(str(item["field_id"]))
        wanted = {*BASE_RAW_FIELDS, *(raw_fields if raw_fields is not None else changed),
                  "labels", "components", "fixVersions"}
        # Field ids become projection paths: only plain ids (never a `$` or a dotted path).
        projection = {name: 1 for name in ISSUE_KEY_FIELDS} | {
            f"raw.fields.{name}": 1 for name in wanted if name.replace("_", "").isalnum()
        } | {"_id": 0}
        issues, deleted = [], []
        for doc in self._find(ENTITIES["issues"].collection, {"issue_id": {"$in": ids}},
                              projection):
            if doc.get("is_deleted"):
                deleted.append(str(doc["issue_id"]))
            else:
                issues.append(doc)
        found = {str(doc["issue_id"]) for doc in issues} | set(deleted)
        deleted.extend(issue_id for issue_id in ids if issue_id not in found)
        return IssueBatch(issues, changelogs, deleted)

    def transitions_overlapping(self, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        """The status intervals that touch [start, end): entered before its end and left at or
        after its start (an interval left at the start is a transition of its first day), or
        not left at all."""
        return self._find(STATUS_TRANSITIONS.collection, {
            "entered_at": {"$lt": end},
            "$or": [{"left_at": {"$gte": start}}, {"left_at": None}],
        }, list(TRANSITION_FIELDS))
