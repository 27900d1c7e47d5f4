"""`jira_sync_errors`: the dead letters of records a run could not store, so the rest is stored.

One document per (connection_id, entity, jira_id), its `_id` the UUID5 of that natural key (the
same `_id` the entity's own document would have). It holds the issue key, why the record could
not be stored, its raw JSON (trimmed under the 16 MiB rule), and when the problem was first and
last seen. A later run that stores the record removes its dead letter.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from bson.errors import InvalidDocument
from pymongo.database import Database

from jira_pipeline.storage.document_size import DocumentTooLargeError, fit_raw
from jira_pipeline.storage.entities import document_id

SYNC_ERRORS_COLLECTION = "jira_sync_errors"
# A reason is a sentence for a person, never a document: errors can quote whole documents.
REASON_MAX_CHARS = 300
_CLEAR_CHUNK = 1000


@dataclass(frozen=True)
class UnstorableRecord:
    """A record from Jira that cannot become an entity document; stored as a dead letter.

    An asset's record stream yields one in place of the record it could not build.
    """

    raw: Any
    reason: str
    connection_id: str | None = None
    jira_id: str | None = None
    key: str | None = None

    @classmethod
    def from_error(cls, raw: Any, error: Exception) -> UnstorableRecord:
        """From the error building a record raised (a RecordRejected carries the ids)."""
        fields = raw if isinstance(raw, dict) else {}
        jira_id = getattr(error, "jira_id", None) or _text(fields.get("id"))
        key = getattr(error, "key", None) or _text(fields.get("key"))
        reason = str(error)
        if key and key not in reason:
            reason = f"{key}: {reason}"
        return cls(
            raw=raw,
            reason=reason,
            connection_id=getattr(error, "connection_id", None),
            jira_id=jira_id,
            key=key,
        )


@dataclass(frozen=True)
class SyncError:
    """A dead letter as written: what a log line or a check reports."""

    connection_id: str
    entity: str
    jira_id: str
    key: str | None
    reason: str

    def describe(self) -> str:
        return f"{self.entity} {self.key or self.jira_id}: {self.reason}"


def _text(value: Any) -> str | None:
    if value is None or value == "" or isinstance(value, dict | list | bool):
        return None
    return str(value)


def short_reason(reason: str) -> str:
    reason = " ".join(reason.split())
    if len(reason) <= REASON_MAX_CHARS:
        return reason
    return reason[: REASON_MAX_CHARS - 1] + "…"


def dead_letter_jira_id(jira_id: str | None, key: str | None, raw: Any) -> str:
    """The Jira id, else `key:<key>`, else a digest of the raw JSON: a stable natural key even
    for a record without an id."""
    if jira_id:
        return jira_id
    if key:
        return f"key:{key}"
    encoded = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    return f"raw:{hashlib.blake2b(encoded, digest_size=16).hexdigest()}"


class SyncErrorLog:
    """Writes and clears one entity's dead letters during one `upsert_records` call."""

    def __init__(
        self,
        db: Database,
        entity: str,
        *,
        connection_id: str | None = None,
        on_error: Callable[[SyncError], None] | None = None,
    ) -> None:
        self.collection = db[SYNC_ERRORS_COLLECTION]
        self.entity = entity
        self.connection_id = connection_id
        self.on_error = on_error
        self.recorded = 0
        # Connections known to hold dead letters of this entity: only theirs are cleared.
        self._holding: dict[str, bool] = {}

    def record(self, item: UnstorableRecord, now: datetime) -> SyncError:
        connection_id = item.connection_id or self.connection_id or "unknown"
        jira_id = dead_letter_jira_id(item.jira_id, item.key, item.raw)
        error = SyncError(connection_id, self.entity, jira_id, item.key, short_reason(item.reason))
        fields: dict[str, Any] = {
            "connection_id": connection_id,
            "entity": self.entity,
            "jira_id": jira_id,
            "key": item.key,
            "reason": error.reason,
            "raw": item.raw,
            "last_seen": now,
        }
        _id = document_id(connection_id, self.entity, jira_id)
        try:
            fitted = fit_raw({"_id": _id, **fields, "first_seen": now})
        except (DocumentTooLargeError, InvalidDocument, OverflowError):
            fitted = {**fields, "raw": None, "raw_truncated": True, "raw_truncated_paths": ["raw"]}
        fitted.pop("_id", None)
        fitted.pop("first_seen", None)
        fitted.setdefault("raw_truncated", False)
        fitted.setdefault("raw_truncated_paths", [])
        self.collection.update_one(
            {"_id": _id}, {"$set": fitted, "$setOnInsert": {"first_seen": now}}, upsert=True
        )
        self._holding[connection_id] = True
        self.recorded += 1
        if self.on_error is not None:
            self.on_error(error)
        return error

    def clear(self, stored: Mapping[str, Iterable[str]]) -> int:
        """Remove the dead letters of records just stored fine ({connection_id: jira ids})."""
        removed = 0
        for connection_id, jira_ids in stored.items():
            holding = self._holding.get(connection_id)
            if holding is None:
                holding = self._holding[connection_id] = (
                    self.collection.find_one(
                        {"connection_id": connection_id, "entity": self.entity}, {"_id": 1}
                    )
                    is not None
                )
            if not holding:
                continue
            ids = [document_id(connection_id, self.entity, jira_id) for jira_id in jira_ids]
            for start in range(0, len(ids), _CLEAR_CHUNK):
                chunk = ids[start : start + _CLEAR_CHUNK]
                removed += self.collection.delete_many({"_id": {"$in": chunk}}).deleted_count
        return removed


def sync_errors(db: Database, connection_id: str, limit: int = 10) -> tuple[int, list[SyncError]]:
    """How many dead letters a connection holds, and the most recently seen `limit` of them."""
    collection = db[SYNC_ERRORS_COLLECTION]
    selector = {"connection_id": connection_id}
    count = collection.count_documents(selector)
    if not count:
        return 0, []
    projection = {"entity": 1, "jira_id": 1, "key": 1, "reason": 1, "_id": 0}
    newest = collection.find(selector, projection).sort("last_seen", -1).limit(limit)
    return count, [
        SyncError(connection_id, doc["entity"], doc["jira_id"], doc.get("key"), doc["reason"])
        for doc in newest
    ]


def dead_lettered_ids(
    db: Database, connection_id: str, entity: str, jira_ids: Iterable[str]
) -> set[str]:
    """Those of `jira_ids` that are in `jira_sync_errors`: known to Jira, not storable here."""
    ids = {str(jira_id) for jira_id in jira_ids}
    if not ids:
        return set()
    collection = db[SYNC_ERRORS_COLLECTION]
    selector = {"_id": {"$in": [document_id(connection_id, entity, jira_id) for jira_id in ids]}}
    return {doc["jira_id"] for doc in collection.find(selector, {"jira_id": 1, "_id": 0})}
