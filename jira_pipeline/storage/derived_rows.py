"""Collections computed from stored entities (field history, status transitions, time in status):
what an asset hands the IO manager, and how the IO manager replaces a scope's rows with them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import InsertOne, ReplaceOne
from pymongo.database import Database

from jira_pipeline.storage.entities import DerivedSpec, document_id
from jira_pipeline.timeutil import utc_now


@dataclass(frozen=True)
class RowScope:
    """The rows of one scope, recomputed whole: they replace every stored row the scope's
    filter matches in the connection (an issue's rows, or a range of days); a stored row not
    among them is removed."""

    scope: Mapping[str, Any]
    rows: list[dict[str, Any]]


@dataclass
class DerivedRows:
    """What a derived asset returns: a lazy stream of scopes, written one at a time (memory is
    bounded by a scope: a batch of issues, a week of days), and metadata asked once all is
    written."""

    spec: DerivedSpec
    connection_id: str
    scopes: Iterable[RowScope]
    metadata: Callable[[], Mapping[str, Any]] | None = None


@dataclass
class DerivedWriteCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    scopes: int = 0

    @property
    def rows(self) -> int:
        return self.inserted + self.updated + self.unchanged


def _key_part(value: Any) -> str:
    if isinstance(value, datetime):
        return _aware(value).isoformat()
    return "" if value is None else str(value)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def derived_row_id(spec: DerivedSpec, row: Mapping[str, Any]) -> Any:
    """A row's `_id`: UUID5 of its natural key (`spec.key_fields`, connection first)."""
    connection_id, *rest = spec.key_fields
    return document_id(
        str(row[connection_id]), spec.name, ":".join(_key_part(row.get(name)) for name in rest)
    )


def _comparable(value: Any) -> Any:
    if isinstance(value, datetime):
        return _aware(value)
    if isinstance(value, list | tuple):  # rows may hold lists of sub-documents with dates
        return [_comparable(element) for element in value]
    if isinstance(value, dict):
        return {name: _comparable(element) for name, element in value.items()}
    return value


def _same_row(stored: Mapping[str, Any], doc: Mapping[str, Any]) -> bool:
    return all(
        _comparable(stored.get(name)) == _comparable(value)
        for name, value in doc.items() if name != "synced_at"
    ) and set(stored) - {"_id", "synced_at"} == set(doc) - {"synced_at"}


def write_derived_rows(db: Database, derived: DerivedRows) -> DerivedWriteCounts:
    """Replace each scope's stored rows with its rows: unchanged rows are left alone (their
    `synced_at` too), changed or new ones replaced whole, the scope's other rows removed."""
    collection = db[derived.spec.collection]
    counts = DerivedWriteCounts()
    for scope in derived.scopes:
        counts.scopes += 1
        selector = {**scope.scope, "connection_id": derived.connection_id}
        stored = {doc["_id"]: doc for doc in collection.find(selector)}
        now = utc_now()
        writes: list[InsertOne[dict[str, Any]] | ReplaceOne[dict[str, Any]]] = []
        kept = set()
        for row in scope.rows:
            doc = {**row, "connection_id": derived.connection_id}
            _id = derived_row_id(derived.spec, doc)
            if _id in kept:
                raise ValueError(
                    f"{derived.spec.collection}: two rows of one scope share the key "
                    f"{[doc.get(name) for name in derived.spec.key_fields]}"
                )
            kept.add(_id)
            before = stored.get(_id)
            if before is not None and _same_row(before, doc):
                counts.unchanged += 1
                continue
            replacement = {"_id": _id, **doc, "synced_at": now}
            if before is None:  # an insert: far cheaper than an upsert in the embedded store
                counts.inserted += 1
                writes.append(InsertOne(replacement))
            else:
                counts.updated += 1
                writes.append(ReplaceOne({"_id": _id}, replacement))
        gone = [_id for _id in stored if _id not in kept]
        if gone:
            counts.removed += collection.delete_many({"_id": {"$in": gone}}).deleted_count
        if writes:
            collection.bulk_write(writes, ordered=False)
    return counts
