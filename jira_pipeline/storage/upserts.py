"""Idempotent, version-guarded bulk upserts of Jira records, and marking vanished rows deleted."""

from __future__ import annotations

import gc
import hashlib
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from bson.errors import InvalidDocument
from pydantic import BaseModel
from pymongo import InsertOne, ReplaceOne, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError, WriteError

from jira_pipeline import heap
from jira_pipeline.storage.copied_names import follow_issue_keys
from jira_pipeline.storage.document_size import (
    JSON_SAFE_BYTES,
    MAX_DOCUMENT_BYTES,
    DocumentTooLargeError,
    bson_size,
    fit_raw,
    mib,
)
from jira_pipeline.storage.entities import ISSUES, EntitySpec, document_id, entity_spec
from jira_pipeline.storage.sync_errors import SyncError, SyncErrorLog, UnstorableRecord
from jira_pipeline.timeutil import parse_jira_datetime, utc_now

# Records per bulk write: the memory a write holds. An issue with its changelog is ~12 KB of
# JSON, ~40 KB as Python objects, and about as much again while it is written (its document,
# its BSON): the run process peaked at 329 MB with 1,000, 289 MB with 250 (memory_bench, N=5,000).
DEFAULT_BATCH_SIZE = 250
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
# Room left under 16 MiB for what the storage layer adds to a record (`_id`, timestamps, flags).
_STORAGE_FIELDS_BYTES = 1024
# Errors BSON encoding raises for a value MongoDB cannot hold (an 8-byte-overflowing integer).
_UNENCODABLE = (InvalidDocument, OverflowError)


_freezing = threading.Lock()
_frozen_depth = 0


@contextmanager
def older_objects_frozen() -> Iterator[None]:
    """While a stream is written, the garbage collector leaves alone the objects that existed
    before (the definitions, the instance, imported modules: most of a run's heap).

    Writing allocates a page's and a batch's objects again and again, and each full collection
    traversed the whole heap: 1.2 s of a 5,000-issue sync's CPU, 0.5 s with the heap frozen
    (sync_bench, in-process). The frozen objects return to the collector afterwards; nested or
    concurrent writes unfreeze once the last ends, and a heap someone else froze is left as is.
    """
    global _frozen_depth
    with _freezing:
        # A loaded code location froze the heap for good (jira_pipeline/heap.py): nothing to
        # freeze, and asking gc would walk the whole frozen heap on every output written.
        if _frozen_depth == 0 and not heap.frozen_after_load() and gc.get_freeze_count() == 0:
            gc.freeze()
            _frozen_depth = 1
        elif _frozen_depth:
            _frozen_depth += 1
    try:
        yield
    finally:
        with _freezing:
            if _frozen_depth:
                _frozen_depth -= 1
                if _frozen_depth == 0:
                    gc.unfreeze()


class RecordError(ValueError):
    """A record that cannot be stored (no connection id, no Jira id, bad timestamp)."""


@dataclass
class UpsertCounts:
    """What an upsert did with each record it received: the four counts in `total` add up to
    the records stored or skipped; `dead_lettered` records went to `jira_sync_errors` instead,
    and `raw_truncated` of the stored ones had their `raw` trimmed to fit 16 MiB."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped_stale: int = 0
    dead_lettered: int = 0
    raw_truncated: int = 0

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.unchanged + self.skipped_stale

    def __add__(self, other: UpsertCounts) -> UpsertCounts:
        return UpsertCounts(
            self.inserted + other.inserted,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
            self.skipped_stale + other.skipped_stale,
            self.dead_lettered + other.dead_lettered,
            self.raw_truncated + other.raw_truncated,
        )

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def add(self, other: UpsertCounts) -> None:
        """Add `other`'s counts to these, in place (no new object per record of a batch)."""
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.skipped_stale += other.skipped_stale
        self.dead_lettered += other.dead_lettered
        self.raw_truncated += other.raw_truncated


def summed(counts: Iterable[UpsertCounts]) -> UpsertCounts:
    """The sum of `counts`, added in place into one new object."""
    total = UpsertCounts()
    for each in counts:
        total.add(each)
    return total


def upsert_records(
    db: Database,
    entity: str,
    records: Iterable[Mapping[str, Any] | BaseModel],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    connection_id: str | None = None,
    on_sync_error: Callable[[SyncError], None] | None = None,
) -> UpsertCounts:
    """Write `records` of `entity` ("issues", or its collection name) into its collection.

    Reads lazily, one batch at a time, so memory is bounded by `batch_size`, not by `records`.
    A record that cannot be stored (an `UnstorableRecord` in the stream, no Jira id, a document
    over 16 MiB even with `raw` trimmed, a write the store refuses) goes to `jira_sync_errors`
    (`connection_id` is the default for items that do not name theirs) and `on_sync_error`
    hears of it; the other records are stored. Records stored fine lose their dead letters.
    """
    spec = entity_spec(entity)
    collection = db[spec.collection]
    errors = SyncErrorLog(db, spec.name, connection_id=connection_id, on_error=on_sync_error)
    counts = UpsertCounts()
    for batch in batched(records, batch_size):
        counts += write_batch(collection, spec, batch, errors)
    return counts


def write_batch(
    collection: Collection,
    spec: EntitySpec,
    batch: list[Any],
    errors: SyncErrorLog,
    *,
    per_record: list[UpsertCounts] | None = None,
) -> UpsertCounts:
    """One batch of a record stream: unstorable items become dead letters, the rest upserts.

    `per_record`, when given, is extended with what happened to each item of `batch`, in order
    (their sum is the result): how a batch mixing partitions is counted per partition.
    """
    outcomes = [UpsertCounts() for _ in batch]
    storable: list[Mapping[str, Any] | BaseModel] = []
    positions: list[int] = []
    for position, item in enumerate(batch):
        if isinstance(item, UnstorableRecord):
            errors.record(item, _to_bson_precision(utc_now()))
            outcomes[position].dead_lettered += 1
        else:
            storable.append(item)
            positions.append(position)
    written: list[UpsertCounts] = []
    try:
        upsert_batch(collection, spec, storable, errors, per_record=written)
    except _UNENCODABLE:
        # A value JSON holds and BSON cannot: find its record by writing one at a time
        # (a record the failed batch had already written then counts as unchanged).
        written = []
        for record in storable:
            upsert_batch(collection, spec, [record], errors, measure=True, per_record=written)
    for position, outcome in zip(positions, written, strict=True):
        outcomes[position] = outcome
    if per_record is not None:
        per_record.extend(outcomes)
    return summed(outcomes)


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    if size < 1:
        raise ValueError(f"batch_size must be at least 1, got {size}")
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def upsert_batch(
    collection: Collection,
    spec: EntitySpec,
    records: list[Mapping[str, Any] | BaseModel],
    errors: SyncErrorLog,
    *,
    measure: bool = False,
    per_record: list[UpsertCounts] | None = None,
) -> UpsertCounts:
    """One read of what is stored, then unordered `bulk_write`s of what must change.

    A record that cannot be stored becomes a dead letter in `errors`; `measure` sizes every
    document as BSON, not only those large enough as JSON to possibly exceed 16 MiB.
    `per_record`, when given, is extended once the batch is written with what happened to each
    of `records`, in order (their sum is the result).
    """
    now = _to_bson_precision(utc_now())
    outcomes = [UpsertCounts() for _ in records]
    incoming: dict[UUID, dict[str, Any]] = {}
    owner: dict[UUID, int] = {}  # the position of the record each document comes from
    for position, record in enumerate(records):
        try:
            doc = fitted_record(spec, record, measure=measure)
        except (RecordError, DocumentTooLargeError, *_UNENCODABLE, TypeError) as exc:
            errors.record(_unstorable(spec, record, exc), now)
            outcomes[position].dead_lettered += 1
            continue
        outcomes[position].raw_truncated += bool(doc.get("raw_truncated"))
        _id = document_id(doc["connection_id"], spec.name, doc[spec.id_field])
        earlier = incoming.get(_id)
        if earlier is not None:
            # The same row twice in one batch: only the newest copy is written.
            if _is_older(spec, doc, earlier):
                outcomes[position].skipped_stale += 1
                continue
            if _is_older(spec, earlier, doc):
                outcomes[owner[_id]].skipped_stale += 1
            else:
                outcomes[owner[_id]].unchanged += 1
        incoming[_id] = doc
        owner[_id] = position

    projection = {"content_hash": 1, "is_deleted": 1, "first_seen_at": 1, "key": 1}
    if spec.version_field:
        projection[spec.version_field] = 1
    stored = {
        found["_id"]: found
        for found in collection.find({"_id": {"$in": list(incoming)}}, projection)
    }
    inserts: list[dict[str, Any]] = []
    replaces: list[tuple[UUID, UpdateOne | ReplaceOne]] = []
    touches: list[tuple[UUID, UpdateOne | ReplaceOne]] = []
    rekeyed: list[tuple[str, str, str]] = []  # (connection, old key, new key): a moved issue
    for _id, doc in incoming.items():
        current = stored.get(_id)
        if current is None:
            inserts.append(_new_document(_id, doc, now))
        elif _is_older(spec, doc, current):
            outcomes[owner[_id]].skipped_stale += 1
        elif _same_live_content(current, doc):
            touches.append((_id, UpdateOne({"_id": _id}, {"$set": {"synced_at": now}})))
        else:
            # A whole-document replace is one write on a server and, unlike a $set of every
            # field, cheap in the embedded store. The guard makes it a no-op if a newer version
            # landed since the read above.
            replacement = {
                **_new_document(_id, doc, now),
                "first_seen_at": current.get("first_seen_at") or now,
            }
            replaces.append((_id, ReplaceOne(_version_guard(spec, _id, doc), replacement)))
            if spec is ISSUES and current.get("key") not in (None, doc.get("key")):
                rekeyed.append((doc["connection_id"], current["key"], doc["key"]))

    failed: set[UUID] = set()
    if touches:
        matched, lost = _bulk_write(collection, touches, now, errors, spec, incoming)
        failed |= lost
        done = _matched_ids(collection, touches, matched, lost)
        for _id in done:
            outcomes[owner[_id]].unchanged += 1
    if replaces:
        matched, lost = _bulk_write(collection, replaces, now, errors, spec, incoming)
        failed |= lost
        done = _matched_ids(collection, replaces, matched, lost, incoming)
        for _id, _ in replaces:
            if _id in done:
                outcomes[owner[_id]].updated += 1
            elif _id not in lost:
                outcomes[owner[_id]].skipped_stale += 1  # a newer version landed since the read
    if inserts:
        raced, lost = _insert_new(collection, spec, inserts, now, errors, incoming)
        failed |= lost
        for document in inserts:
            _id = document["_id"]
            if _id in raced:
                outcomes[owner[_id]].add(raced[_id])
            elif _id not in lost:
                outcomes[owner[_id]].inserted += 1
    if rekeyed:
        follow_issue_keys(collection, rekeyed)
    for _id in failed:
        outcomes[owner[_id]].dead_lettered += 1
    written: dict[str, list[str]] = {}
    for _id, doc in incoming.items():
        if _id not in failed:
            written.setdefault(doc["connection_id"], []).append(doc[spec.id_field])
    errors.clear(written)
    if per_record is not None:
        per_record.extend(outcomes)
    return summed(outcomes)


def _matched_ids(
    collection: Collection,
    requests: list[tuple[UUID, UpdateOne | ReplaceOne]],
    matched: int,
    lost: set[UUID],
    incoming: Mapping[UUID, Mapping[str, Any]] | None = None,
) -> set[UUID]:
    """The `_id`s whose write of a bulk write's `requests` matched, its result giving only how
    many (`matched`). Every request that did not fail matched, unless another writer changed a
    document since the read (rare): then the stored documents say which writes landed, those
    whose `content_hash` is the one written (`incoming`), or that still exist (a touch)."""
    done = {_id for _id, _ in requests if _id not in lost}
    if matched == len(done):
        return done
    found = collection.find({"_id": {"$in": sorted(done, key=str)}}, {"content_hash": 1})
    return {
        doc["_id"] for doc in found
        if incoming is None or doc.get("content_hash") == incoming[doc["_id"]]["content_hash"]
    }


def fitted_record(
    spec: EntitySpec, record: Mapping[str, Any] | BaseModel, *, measure: bool = False
) -> dict[str, Any]:
    """`normalize_record`, its `raw` trimmed so the stored document fits in 16 MiB."""
    doc, json_size = _normalized(spec, record)
    if json_size <= JSON_SAFE_BYTES and not measure:
        return doc
    try:
        return fit_raw(doc, MAX_DOCUMENT_BYTES - _STORAGE_FIELDS_BYTES)
    except DocumentTooLargeError as exc:
        raise DocumentTooLargeError(
            f"cannot write {spec.collection} {_record_name(spec, doc)}: {exc}"
        ) from None


def _record_name(spec: EntitySpec, doc: Mapping[str, Any]) -> str:
    key = doc.get("key") if spec.name == "issues" else None
    jira_id = doc.get(spec.id_field)
    return f"{key} ({spec.id_field} {jira_id})" if key else f"{spec.id_field} {jira_id}"


def _unstorable(
    spec: EntitySpec, record: Mapping[str, Any] | BaseModel, error: Exception
) -> UnstorableRecord:
    fields = record if isinstance(record, Mapping) else record.__dict__
    key = fields.get("key") if spec.name == "issues" else None
    jira_id = fields.get(spec.id_field)
    reason = str(error)
    if isinstance(error, (*_UNENCODABLE, TypeError)):
        name = _record_name(spec, {"key": key, spec.id_field: jira_id})
        reason = f"cannot write {spec.collection} {name}: BSON cannot hold a value: {reason}"
    elif key and str(key) not in reason:
        reason = f"{key}: {reason}"
    return UnstorableRecord(
        raw=fields.get("raw"),
        reason=reason,
        connection_id=_text_or_none(fields.get("connection_id")),
        jira_id=_text_or_none(jira_id),
        key=_text_or_none(key),
    )


def _text_or_none(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def write_error_reason(
    spec: EntitySpec, doc: Mapping[str, Any], error: Mapping[str, Any]
) -> str:
    """A write error in a few hundred characters: collection, record, size, the store's code
    and the start of its message (a store's message can quote the whole document)."""
    try:
        size = f"{mib(bson_size(doc))} ({bson_size(doc)} bytes)"
    except _UNENCODABLE:
        size = "size unknown"
    message = " ".join(str(error.get("errmsg", "")).split())[:160]
    return (
        f"cannot write {spec.collection} {_record_name(spec, doc)}, {size}: "
        f"error {error.get('code')}: {message}"
    )


def _bulk_write(
    collection: Collection,
    requests: list[tuple[UUID, UpdateOne | ReplaceOne]],
    now: datetime,
    errors: SyncErrorLog,
    spec: EntitySpec,
    incoming: Mapping[UUID, dict[str, Any]],
) -> tuple[int, set[UUID]]:
    """An unordered bulk write of updates: (matched, `_id`s of the documents it failed to write,
    each now a dead letter)."""
    try:
        result = collection.bulk_write([request for _, request in requests], ordered=False)
        return result.matched_count, set()
    except BulkWriteError as exc:
        details = exc.details
    ids = [_id for _id, _ in requests]
    failed = _failed_writes(details, ids, now, errors, spec, incoming, inserts=False)
    return details.get("nMatched", 0), failed


def normalize_record(spec: EntitySpec, record: Mapping[str, Any] | BaseModel) -> dict[str, Any]:
    """The document fields of `record`: ids as strings, timestamps as aware UTC datetimes."""
    return _normalized(spec, record)[0]


def _normalized(
    spec: EntitySpec, record: Mapping[str, Any] | BaseModel
) -> tuple[dict[str, Any], int]:
    """`normalize_record`'s document and its size as JSON (a bound on its size as BSON)."""
    doc = _fields_of(record) if isinstance(record, BaseModel) else dict(record)
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
                name = _record_name(spec, doc)
                raise RecordError(f"{spec.name} {name}: {field}: {exc}") from None
    digest, size = _digest(doc)
    doc["content_hash"] = digest
    return doc, size


def _fields_of(record: BaseModel) -> dict[str, Any]:
    """`record.model_dump()` without its deep copy of `raw` (most of an upsert's own CPU):
    the values are the record's own, and nothing here modifies a document's values in place
    (trimming copies what it drops, see `fit_raw`). Records holding models, computed or extra
    fields are dumped by pydantic."""
    model = type(record)
    if model.model_computed_fields or record.__pydantic_extra__:
        return record.model_dump()
    doc: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        value = getattr(record, name)
        if isinstance(value, BaseModel):
            return record.model_dump()
        doc[name] = value
    return doc


def content_hash(doc: Mapping[str, Any]) -> str:
    """A digest of a document's content, to tell "unchanged" without reading the stored `raw`."""
    return _digest(doc)[0]


def _digest(doc: Mapping[str, Any]) -> tuple[str, int]:
    encoded = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    return hashlib.blake2b(encoded, digest_size=16).hexdigest(), len(encoded)


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
    collection: Collection,
    spec: EntitySpec,
    documents: list[dict[str, Any]],
    now: datetime,
    errors: SyncErrorLog,
    incoming: Mapping[UUID, dict[str, Any]],
) -> tuple[dict[UUID, UpsertCounts], set[UUID]]:
    """Insert new `documents`: (what happened to those another writer inserted first, by
    `_id`; the `_id`s that failed, each now a dead letter). Every other document is inserted."""
    requests = [InsertOne(document) for document in documents]
    ids = [document["_id"] for document in documents]
    try:
        collection.bulk_write(requests, ordered=False)
        return {}, set()
    except BulkWriteError as exc:
        raced = [
            documents[error["index"]]
            for error in exc.details.get("writeErrors", [])
            if _is_id_conflict(error)
        ]
        failed = _failed_writes(exc.details, ids, now, errors, spec, incoming, inserts=True)
    # Another writer inserted these since we looked: fall back to the guarded upsert.
    outcomes: dict[UUID, UpsertCounts] = {}
    for document in raced:
        try:
            outcomes[document["_id"]] = _guarded_upsert(collection, spec, document, now)
        except WriteError as exc:
            error = {"code": exc.code, "errmsg": str(exc)}
            doc = incoming[document["_id"]]
            errors.record(
                _unstorable(spec, doc, RecordError(write_error_reason(spec, doc, error))), now
            )
            failed.add(document["_id"])
    return outcomes, failed


def _failed_writes(
    details: Mapping[str, Any],
    ids: list[UUID],
    now: datetime,
    errors: SyncErrorLog,
    spec: EntitySpec,
    incoming: Mapping[UUID, dict[str, Any]],
    *,
    inserts: bool,
) -> set[UUID]:
    """Dead-letter the documents of a bulk write's errors (but insert races on `_id`, which the
    caller retries); returns their `_id`s."""
    failed: set[UUID] = set()
    for error in details.get("writeErrors", []):
        if inserts and _is_id_conflict(error):
            continue
        _id = ids[error["index"]]
        doc = incoming[_id]
        reason = RecordError(write_error_reason(spec, doc, error))
        errors.record(_unstorable(spec, doc, reason), now)
        failed.add(_id)
    return failed


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
    live = {str(jira_id) for jira_id in live_ids}
    vanished = live_ids_except(db, entity, connection_id, live, scope=scope)
    return mark_deleted_ids(db, entity, connection_id, vanished)


def _live_selector(connection_id: str, scope: Mapping[str, Any] | None) -> dict[str, Any]:
    """The stored, not deleted rows of `connection_id` within `scope`."""
    return {**(scope or {}), "connection_id": str(connection_id), "is_deleted": {"$ne": True}}


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
    selector = _live_selector(connection_id, scope)
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
    selector = _live_selector(connection_id, scope)
    if len(jira_ids) <= _NIN_MAX_IDS and spec.id_field not in selector:
        # The store picks them, a server from its unique index, the embedded store from its key
        # index, neither reading the rows that are still live.
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
    selector = _live_selector(connection_id, scope)
    return db[spec.collection].count_documents(selector)
