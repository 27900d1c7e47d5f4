"""Idempotent, version-guarded bulk upserts of Jira records, and marking vanished rows deleted."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from pydantic import BaseModel
from pymongo import InsertOne, ReplaceOne, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from jira_pipeline.storage.entities import EntitySpec, document_id, entity_spec
from jira_pipeline.timeutil import parse_jira_datetime, utc_now

DEFAULT_BATCH_SIZE = 1000
DUPLICATE_KEY = 11000
# Fields the storage layer owns: a record handed back in (say, from load_input) must not set them.
STORAGE_FIELDS = ("_id", "synced_at", "first_seen_at", "is_deleted", "deleted_at", "content_hash")
# A concurrent insert of the same key can make an upsert fail once; after one retry the document
# exists, so a second failure means the stored version is newer.
_DUPLICATE_KEY_RETRIES = 2
_MARK_DELETED_CHUNK = 1000
# Up to this many live ids travel in one `$nin` (about 35 bytes each, far below MongoDB's 16 MB
# command limit); beyond it the stored ids are streamed and compared here.
_NIN_MAX_IDS = 200_000


class RecordError(ValueError):
    """A record that cannot be stored (no connection id, no Jira id, bad timestamp)."""


@dataclass
class UpsertCounts:
    """What an upsert did with each record it received; the four counts add up to the records."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped_stale: int = 0

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.unchanged + self.skipped_stale

    def __add__(self, other: UpsertCounts) -> UpsertCounts:
        return UpsertCounts(
            self.inserted + other.inserted,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
            self.skipped_stale + other.skipped_stale,
        )

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def upsert_records(
    db: Database,
    entity: str,
    records: Iterable[Mapping[str, Any] | BaseModel],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> UpsertCounts:
    """Write `records` of `entity` ("issues", or its collection name) into its collection.

    Reads lazily, one batch at a time, so memory is bounded by `batch_size`, not by `records`.
    """
    spec = entity_spec(entity)
    collection = db[spec.collection]
    counts = UpsertCounts()
    for batch in batched(records, batch_size):
        counts += upsert_batch(collection, spec, batch)
    return counts


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    if size < 1:
        raise ValueError(f"batch_size must be at least 1, got {size}")
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def upsert_batch(
    collection: Collection, spec: EntitySpec, records: list[Mapping[str, Any] | BaseModel]
) -> UpsertCounts:
    """One read of what is stored, then unordered `bulk_write`s of what must change."""
    counts = UpsertCounts()
    now = _to_bson_precision(utc_now())
    incoming: dict[UUID, dict[str, Any]] = {}
    for record in records:
        doc = normalize_record(spec, record)
        _id = document_id(doc["connection_id"], spec.name, doc[spec.id_field])
        earlier = incoming.get(_id)
        if earlier is not None:
            # The same row twice in one batch: only the newest copy is written.
            if _is_older(spec, doc, earlier):
                counts.skipped_stale += 1
                continue
            if _is_older(spec, earlier, doc):
                counts.skipped_stale += 1
            else:
                counts.unchanged += 1
        incoming[_id] = doc

    projection = {"content_hash": 1, "is_deleted": 1, "first_seen_at": 1}
    if spec.version_field:
        projection[spec.version_field] = 1
    stored = {
        found["_id"]: found
        for found in collection.find({"_id": {"$in": list(incoming)}}, projection)
    }
    inserts: list[dict[str, Any]] = []
    replaces: list[ReplaceOne] = []
    touches: list[UpdateOne] = []
    for _id, doc in incoming.items():
        current = stored.get(_id)
        if current is None:
            inserts.append(_new_document(_id, doc, now))
        elif _is_older(spec, doc, current):
            counts.skipped_stale += 1
        elif _same_live_content(current, doc):
            touches.append(UpdateOne({"_id": _id}, {"$set": {"synced_at": now}}))
        else:
            # A whole-document replace is one write on a server and, unlike a $set of every
            # field, cheap in the embedded store. The guard makes it a no-op if a newer version
            # landed since the read above.
            replacement = {
                **_new_document(_id, doc, now),
                "first_seen_at": current.get("first_seen_at") or now,
            }
            replaces.append(ReplaceOne(_version_guard(spec, _id, doc), replacement))

    if touches:
        counts.unchanged += collection.bulk_write(touches, ordered=False).matched_count
    if replaces:
        matched = collection.bulk_write(replaces, ordered=False).matched_count
        counts.updated += matched
        counts.skipped_stale += len(replaces) - matched
    if inserts:
        counts += _insert_new(collection, spec, inserts, now)
    return counts


def normalize_record(spec: EntitySpec, record: Mapping[str, Any] | BaseModel) -> dict[str, Any]:
    """The document fields of `record`: ids as strings, timestamps as aware UTC datetimes."""
    doc = record.model_dump() if isinstance(record, BaseModel) else dict(record)
    for field in STORAGE_FIELDS:
        doc.pop(field, None)
    for field in ("connection_id", spec.id_field):
        value = doc.get(field)
        if value is None or value == "":
            raise RecordError(f"a {spec.name} record has no {field!r}: cannot store it")
        doc[field] = str(value)
    for field in spec.datetime_fields:
        if doc.get(field) is not None:
            try:
                doc[field] = _to_bson_precision(parse_jira_datetime(doc[field]))
            except ValueError as exc:
                raise RecordError(f"{spec.name} {doc[spec.id_field]}: {field}: {exc}") from None
    doc["content_hash"] = content_hash(doc)
    return doc


def content_hash(doc: Mapping[str, Any]) -> str:
    """A digest of a document's content, to tell "unchanged" without reading the stored `raw`."""
    encoded = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    return hashlib.blake2b(encoded, digest_size=16).hexdigest()


def _to_bson_precision(value: datetime) -> datetime:
    # BSON dates hold milliseconds: truncating first makes what we hash equal what we read back.
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _is_older(spec: EntitySpec, doc: Mapping[str, Any], than: Mapping[str, Any]) -> bool:
    if spec.version_field is None:
        return False
    mine, theirs = doc.get(spec.version_field), than.get(spec.version_field)
    if mine is None or theirs is None:
        return False
    return parse_jira_datetime(mine) < parse_jira_datetime(theirs)


def _same_live_content(stored: Mapping[str, Any], doc: Mapping[str, Any]) -> bool:
    # A row marked deleted that reappears unchanged is still a change: it comes back to life.
    return stored.get("content_hash") == doc["content_hash"] and stored.get("is_deleted") is False


def _new_document(_id: UUID, doc: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "_id": _id,
        **doc,
        "synced_at": now,
        "first_seen_at": now,
        "is_deleted": False,
        "deleted_at": None,
    }


def _version_guard(spec: EntitySpec, _id: UUID, doc: Mapping[str, Any]) -> dict[str, Any]:
    """Selects the document only while its stored version is not newer than `doc`'s."""
    selector: dict[str, Any] = {"_id": _id}
    version = doc.get(spec.version_field) if spec.version_field else None
    if version is not None:
        selector["$or"] = [{spec.version_field: {"$lte": version}}, {spec.version_field: None}]
    return selector


def _insert_new(
    collection: Collection, spec: EntitySpec, documents: list[dict[str, Any]], now: datetime
) -> UpsertCounts:
    counts = UpsertCounts()
    try:
        counts.inserted = collection.bulk_write(
            [InsertOne(document) for document in documents], ordered=False
        ).inserted_count
        return counts
    except BulkWriteError as exc:
        raced = []
        for error in exc.details.get("writeErrors", []):
            if not _is_id_conflict(error):
                raise
            raced.append(documents[error["index"]])
        counts.inserted = exc.details.get("nInserted", 0)
    # Another writer inserted these since we looked: fall back to the guarded upsert.
    for document in raced:
        counts += _guarded_upsert(collection, spec, document, now)
    return counts


def _is_id_conflict(error: Mapping[str, Any]) -> bool:
    if error.get("code") != DUPLICATE_KEY:
        return False
    # A server names the index; the embedded store does not (and only conflicts on `_id`).
    key_pattern = error.get("keyPattern")
    return key_pattern is None or "_id" in key_pattern


def _guarded_upsert(
    collection: Collection, spec: EntitySpec, document: dict[str, Any], now: datetime
) -> UpsertCounts:
    """Upsert one document unless a newer version is stored, retrying lost insert races.

    With a guard in the filter, an upsert whose filter misses tries to insert and fails on
    the duplicate `_id`: either a concurrent insert won (MongoDB advises retrying, and the
    retry then matches) or the stored version is newer (the retry fails again: stale).
    """
    fields = {key: value for key, value in document.items() if key not in ("_id", "first_seen_at")}
    update = {"$set": fields, "$setOnInsert": {"first_seen_at": now}}
    selector = _version_guard(spec, document["_id"], document)
    for _attempt in range(_DUPLICATE_KEY_RETRIES):
        try:
            result = collection.update_one(selector, update, upsert=True)
        except DuplicateKeyError as exc:
            if not _is_id_conflict({"code": exc.code, **(exc.details or {})}):
                raise
            continue
        if result.upserted_id is not None:
            return UpsertCounts(inserted=1)
        return UpsertCounts(updated=1)
    return UpsertCounts(skipped_stale=1)


def mark_deleted_except(
    db: Database,
    entity: str,
    connection_id: str,
    live_ids: Iterable[str],
    *,
    scope: Mapping[str, Any] | None = None,
) -> int:
    """Mark the stored, not yet deleted rows of `connection_id` whose Jira id is not in `live_ids`.

    `scope` narrows which stored rows are candidates (say, one project's issues). Rows are kept,
    with `is_deleted: true` and `deleted_at`, so history survives; an upsert brings one back.
    Returns how many rows were marked.
    """
    spec = entity_spec(entity)
    collection = db[spec.collection]
    live = {str(jira_id) for jira_id in live_ids}
    selector = {**(scope or {}), "connection_id": str(connection_id), "is_deleted": {"$ne": True}}
    if len(live) <= _NIN_MAX_IDS and spec.id_field not in selector:
        # The store picks the vanished rows: a server from its unique index, the embedded
        # store from its key index, neither reading the rows that are still live.
        selector[spec.id_field] = {"$nin": sorted(live)}
        vanished = [doc["_id"] for doc in collection.find(selector, {"_id": 1})]
    else:
        vanished = [
            doc["_id"]
            for doc in collection.find(selector, {spec.id_field: 1})
            if doc.get(spec.id_field) not in live
        ]
    now = _to_bson_precision(utc_now())
    marked = 0
    for start in range(0, len(vanished), _MARK_DELETED_CHUNK):
        chunk = vanished[start : start + _MARK_DELETED_CHUNK]
        result = collection.update_many(
            {"_id": {"$in": chunk}, "is_deleted": {"$ne": True}},
            {"$set": {"is_deleted": True, "deleted_at": now}},
        )
        marked += result.modified_count
    return marked


def stored_live_ids(
    db: Database,
    entity: str,
    connection_id: str,
    *,
    scope: Mapping[str, Any] | None = None,
) -> Iterator[str]:
    """The Jira ids of the stored, not deleted rows of `connection_id` (within `scope`), streamed
    from a cursor: what a census compares with the ids Jira walked."""
    spec = entity_spec(entity)
    selector = {**(scope or {}), "connection_id": str(connection_id), "is_deleted": {"$ne": True}}
    for doc in db[spec.collection].find(selector, {spec.id_field: 1, "_id": 0}):
        jira_id = doc.get(spec.id_field)
        if jira_id is not None:
            yield str(jira_id)


def mark_deleted_ids(db: Database, entity: str, connection_id: str, jira_ids: Iterable[str]) -> int:
    """Mark the stored, live rows of `connection_id` with these Jira ids deleted (ids proven gone
    from Jira); returns how many were marked. Like `mark_deleted_except`, rows are kept."""
    spec = entity_spec(entity)
    collection = db[spec.collection]
    ids = [document_id(str(connection_id), spec.name, str(jira_id)) for jira_id in jira_ids]
    now = _to_bson_precision(utc_now())
    marked = 0
    for start in range(0, len(ids), _MARK_DELETED_CHUNK):
        result = collection.update_many(
            {"_id": {"$in": ids[start : start + _MARK_DELETED_CHUNK]}, "is_deleted": {"$ne": True}},
            {"$set": {"is_deleted": True, "deleted_at": now}},
        )
        marked += result.modified_count
    return marked


def live_ids_except(
    db: Database,
    entity: str,
    connection_id: str,
    jira_ids: AbstractSet[str],
    *,
    scope: Mapping[str, Any] | None = None,
) -> list[str]:
    """The Jira ids of the stored live rows of `connection_id` (within `scope`) that are not in
    `jira_ids`: what `mark_deleted_except` would mark, without marking it."""
    spec = entity_spec(entity)
    selector = {**(scope or {}), "connection_id": str(connection_id), "is_deleted": {"$ne": True}}
    if len(jira_ids) <= _NIN_MAX_IDS and spec.id_field not in selector:
        # The store picks them from its key index, reading no row that is still live.
        selector[spec.id_field] = {"$nin": sorted(jira_ids)}
        found = db[spec.collection].find(selector, {spec.id_field: 1, "_id": 0})
        return [str(doc[spec.id_field]) for doc in found if doc.get(spec.id_field) is not None]
    return [
        jira_id
        for jira_id in stored_live_ids(db, entity, connection_id, scope=scope)
        if jira_id not in jira_ids
    ]


def count_live(
    db: Database, entity: str, connection_id: str, *, scope: Mapping[str, Any] | None = None
) -> int:
    """How many stored rows of `connection_id` (within `scope`) are not marked deleted."""
    spec = entity_spec(entity)
    selector = {**(scope or {}), "connection_id": str(connection_id), "is_deleted": {"$ne": True}}
    return db[spec.collection].count_documents(selector)
