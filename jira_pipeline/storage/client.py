"""The one place that decides which MongoDB we talk to: a real server or the embedded store."""

from __future__ import annotations

import fcntl
import functools
import itertools
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import litemongo
import litemongo.client
import pymongo
from bson import ObjectId
from bson.errors import InvalidDocument
from bson.raw_bson import RawBSONDocument
from litemongo._vendor.mongomock import collection as mongomock_collection
from litemongo._vendor.mongomock import database as mongomock_database
from litemongo._vendor.mongomock import filtering as mongomock_filtering
from litemongo._vendor.mongomock import helpers as mongomock_helpers
from litemongo._vendor.mongomock.filtering import filter_applies
from litemongo._vendor.mongomock.results import BulkWriteResult
from pymongo.database import Database
from pymongo.errors import (
    ConfigurationError,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
)

from jira_pipeline.settings import check_database_name, load_settings
from jira_pipeline.storage.embedded_index import (
    IndexedServerStore,
    ProjectedPaths,
    included_paths,
    top_level_filter,
    top_level_matches,
    top_level_names,
)

APP_NAME = "jira-pipeline"
DEFAULT_DATABASE = "jira"
SERVER_SCHEMES = ("mongodb://", "mongodb+srv://")

# Both clients expose the same pymongo API; the embedded one is not a pymongo subclass.
MongoClient = Any

_F = TypeVar("_F", bound=Callable[..., Any])


class StoreUnavailableError(RuntimeError):
    """The configured MongoDB cannot be used: unreachable server, bad URI or unwritable folder."""


def database_name(name: str | None = None) -> str:
    """`name`, else MONGODB_DATABASE, else `jira`: checked to be a valid MongoDB database name
    (a bad one, even named in code or on the command line, is a ConfigurationError naming
    MONGODB_DATABASE)."""
    return load_settings().mongodb_database if name is None else check_database_name(name)


def mask_uri(uri: str) -> str:
    """`uri` with any password replaced by `***`, safe to show in a message or a log."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparseable MONGODB_URI>"
    if parts.password is None:
        return uri
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def embedded_store_folder() -> Path:
    """The embedded store's folder: `$DAGSTER_HOME/mongo`, else `./.jira_pipeline/mongo`."""
    dagster_home = load_settings().dagster_home
    base = dagster_home if dagster_home is not None else Path.cwd() / ".jira_pipeline"
    return base / "mongo"


def get_mongo_client(
    uri: str | None = None,
    *,
    folder: str | os.PathLike[str] | None = None,
    max_pool_size: int = 100,
    min_pool_size: int = 0,
    server_selection_timeout_ms: int = 10_000,
) -> MongoClient:
    """A client for `uri` (default: `MONGODB_URI`), or for the embedded store when there is none.

    The client is checked before it is returned, so a wrong URI, an unreachable server or an
    unwritable folder fails here with one message instead of at the first write.
    """
    if uri is None:
        configured = load_settings().mongodb_uri
        uri = configured.get_secret_value() if configured is not None else None
    if uri:
        return _server_client(uri, max_pool_size, min_pool_size, server_selection_timeout_ms)
    return _embedded_client(Path(folder) if folder is not None else embedded_store_folder())


def get_database(
    uri: str | None = None,
    database: str | None = None,
    *,
    folder: str | os.PathLike[str] | None = None,
) -> Database:
    """The database `MONGODB_DATABASE` (default `jira`) on `get_mongo_client`'s store."""
    name = database_name(database)
    return get_mongo_client(uri, folder=folder).get_database(name)


def is_embedded(client_or_db: Any) -> bool:
    """True when talking to the embedded file store rather than a MongoDB server."""
    client = getattr(client_or_db, "client", client_or_db)
    return isinstance(client, EmbeddedMongoClient)


def _server_client(
    uri: str, max_pool_size: int, min_pool_size: int, server_selection_timeout_ms: int
) -> pymongo.MongoClient:
    shown = mask_uri(uri)
    if not uri.startswith(SERVER_SCHEMES):
        raise StoreUnavailableError(
            f"MONGODB_URI must start with mongodb:// or mongodb+srv:// (got {shown}); "
            "unset it to use the embedded store"
        )
    try:
        client: pymongo.MongoClient = pymongo.MongoClient(
            uri,
            tz_aware=True,
            tzinfo=UTC,
            appname=APP_NAME,
            retryWrites=True,
            serverSelectionTimeoutMS=server_selection_timeout_ms,
            uuidRepresentation="standard",
            maxPoolSize=max_pool_size,
            minPoolSize=min_pool_size,
        )
    except (ConfigurationError, ValueError, TypeError) as exc:
        raise StoreUnavailableError(f"MONGODB_URI {shown} is not valid: {exc}") from None
    try:
        client.admin.command("ping")
    except PyMongoError as exc:
        client.close()
        # pymongo's own text names hosts, never the password; the URI is masked anyway.
        reason = str(exc).split(", Timeout:")[0]
        raise StoreUnavailableError(f"cannot reach MongoDB at {shown}: {reason}") from None
    return client


def _embedded_client(folder: Path) -> EmbeddedMongoClient:
    folder = folder.expanduser().absolute()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StoreUnavailableError(
            f"the embedded MongoDB store folder {folder} is not writable ({exc.strerror}); "
            "set DAGSTER_HOME to a writable folder or MONGODB_URI to a server"
        ) from None
    return EmbeddedMongoClient(folder)


# ---------------------------------------------------------------------------------------------
# The embedded store.
#
# litemongo gives the pymongo API over SQLite files, but its writes are "read, then write" with
# no lock between processes, so two processes could both pass a version check and the older
# write could land last. Its collections here take a per-collection file lock around each write
# call, which makes a filtered update (our version guard, the token compare-and-set) atomic across
# processes exactly as it is on a server. Everything above this layer stays plain pymongo.
# ---------------------------------------------------------------------------------------------


class CollectionWriteLock:
    """Serializes writes to one embedded collection across threads and processes (reentrant)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def _file(self) -> int:
        # Opened on first use and kept: flock locks belong to this open file.
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._fd

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._thread_lock:
            if self._depth == 0:
                fcntl.flock(self._file(), fcntl.LOCK_EX)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    fcntl.flock(self._file(), fcntl.LOCK_UN)


# One lock object per (process, file): flock locks belong to an open file, so two objects for
# the same file in one process would block each other, and a forked child must not share its
# parent's open file.
_LOCKS: dict[tuple[int, Path], CollectionWriteLock] = {}
_LOCKS_GUARD = threading.Lock()


def _write_lock_for(path: Path) -> CollectionWriteLock:
    key = (os.getpid(), path)
    with _LOCKS_GUARD:
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = CollectionWriteLock(path)
        return lock


def _serialized(method: _F) -> _F:
    @functools.wraps(method)
    def locked(self: EmbeddedCollection, *args: Any, **kwargs: Any) -> Any:
        with self.write_lock.held():
            return method(self, *args, **kwargs)

    return locked  # type: ignore[return-value]


def _serialized_batch(method: _F) -> _F:
    """`_serialized`, with the call's document writes committed once (see `batch`)."""

    @functools.wraps(method)
    def locked(self: EmbeddedCollection, *args: Any, **kwargs: Any) -> Any:
        with self.write_lock.held(), self._store.batch():
            return method(self, *args, **kwargs)

    return locked  # type: ignore[return-value]


class EmbeddedCollection(mongomock_collection.Collection):
    """A litemongo collection whose write calls hold the collection's cross-process lock."""

    write_lock: CollectionWriteLock

    insert_one = _serialized(mongomock_collection.Collection.insert_one)
    insert_many = _serialized_batch(mongomock_collection.Collection.insert_many)
    update_one = _serialized(mongomock_collection.Collection.update_one)
    update_many = _serialized_batch(mongomock_collection.Collection.update_many)
    replace_one = _serialized(mongomock_collection.Collection.replace_one)
    delete_one = _serialized(mongomock_collection.Collection.delete_one)
    delete_many = _serialized_batch(mongomock_collection.Collection.delete_many)
    def _bulk_write(
        self,
        requests: Any,
        ordered: bool = True,
        bypass_document_validation: bool = False,
        session: Any = None,
    ) -> Any:
        """mongomock's `bulk_write`, but a batch of new documents only (what a first sync
        writes) goes in with one statement per table when no `_id` or unique key can clash."""
        requests = list(requests)
        inserts = _InsertsOnly()
        for request in requests:
            request._add_to_bulk(inserts)
        if inserts.documents and not inserts.other and not (
            bypass_document_validation or session
        ):
            done = self._insert_batch(inserts.documents)
            if done is not None:
                return done
        return mongomock_collection.Collection.bulk_write(
            self, requests, ordered=ordered,
            bypass_document_validation=bypass_document_validation, session=session,
        )

    bulk_write = _serialized_batch(_bulk_write)

    def _insert_batch(self, documents: list[Any]) -> Any:
        """The result of inserting `documents` at once, or None when they must be written one
        at a time (nothing written): a document mongomock would refuse, one whose `_id` is
        missing or a document, an `_id` or unique key that might clash."""
        store = self._store
        unique = [index for index in store.indexes.values() if index.get("unique")]
        if any(index.get("sparse") or index.get("partialFilterExpression") for index in unique):
            return None
        batch = []
        for document in documents:
            if (
                not isinstance(document, MutableMapping)
                or "_id" not in document
                or type(document["_id"]) not in _EXACT_ID_TYPES
                or not all(isinstance(key, str) and not key.startswith("$") for key in document)
            ):
                return None
            # Refused values (NUL in a field name, what BSON cannot hold) fail one at a time.
            try:
                encoded = store._documents._encode_doc(document)
            except (InvalidDocument, OverflowError, TypeError):
                return None
            batch.append((document["_id"], document, encoded))
        keys = [tuple(field for field, _direction in index["key"]) for index in unique]
        if not store.insert_new(batch, keys):
            return None
        return BulkWriteResult(
            {
                "nModified": 0, "nUpserted": 0, "nMatched": 0, "writeErrors": [],
                "upserted": [], "writeConcernErrors": [], "nRemoved": 0,
                "nInserted": len(batch),
            },
            True,
        )
    find_one_and_update = _serialized(mongomock_collection.Collection.find_one_and_update)
    find_one_and_replace = _serialized(mongomock_collection.Collection.find_one_and_replace)
    find_one_and_delete = _serialized(mongomock_collection.Collection.find_one_and_delete)
    create_index = _serialized(mongomock_collection.Collection.create_index)
    create_indexes = _serialized(mongomock_collection.Collection.create_indexes)
    drop_index = _serialized(mongomock_collection.Collection.drop_index)
    drop = _serialized(mongomock_collection.Collection.drop)

    def find(self, filter: Any = None, *args: Any, **kwargs: Any) -> EmbeddedCursor:
        """mongomock's `find`, returning a cursor that streams its answer (`EmbeddedCursor`)."""
        cursor = super().find(filter, *args, **kwargs)
        return EmbeddedCursor.streaming(cursor)

    def _iter_documents(self, filter: Any) -> Iterator[dict[str, Any]]:
        if top_level_filter(filter):
            return self._store.matching_documents(filter)
        return super()._iter_documents(filter)

    def _get_dataset(self, spec: Any, sort: Any, fields: Any, as_class: Any) -> Iterator[Any]:
        # A projection of top-level fields is served from the documents' top levels: a
        # projected scan (checks, the refresh sensor) never decodes Jira's raw JSON.
        paths = included_paths(fields)
        if paths is None or not top_level_filter(spec):
            return super()._get_dataset(spec, sort, fields, as_class)
        kept = top_level_names(paths)
        if sort:
            return self._sorted_top_levels(spec, sort, fields, paths, kept, as_class)
        if kept is None:
            # Dotted paths (`raw.fields.priority.id`: the checks' and the sensor's reference
            # passes) are cut from the stored bytes without decoding the rest of the document.
            if as_class is not dict:
                return super()._get_dataset(spec, sort, fields, as_class)
            return self._store.projected_documents(spec, paths)
        return (
            _projected(document, kept, paths.keep_id, as_class)
            for document in self._store.matching_documents(spec, kept)
        )

    def _sorted_top_levels(
        self, spec: Any, sort: Any, fields: Any, paths: ProjectedPaths, kept: set[str] | None,
        as_class: Any,
    ) -> Iterator[Any]:
        """A sorted find of top-level fields by top-level keys (`fresh`'s newest `updated`),
        sorted on the documents' top levels as mongomock sorts whole documents."""
        keys = list(sort.items() if isinstance(sort, dict) else sort)
        if kept is None or any(
            not isinstance(key, str) or "." in key or key.startswith("$") for key, _ in keys
        ):
            return super()._get_dataset(spec, sort, fields, as_class)
        # The sort keys are read too: a nested one has the document decoded whole.
        documents: Iterable[dict[str, Any]] = self._store.matching_documents(
            spec, kept | {key for key, _ in keys})
        for key, direction in reversed(keys):  # mongomock's stable sorts, last key first
            documents = sorted(
                documents,
                key=functools.partial(mongomock_filtering.resolve_sort_key, key),
                reverse=direction < 0,
            )
        return (_projected(document, kept, paths.keep_id, as_class) for document in documents)

    def count_documents(self, filter: Any, **kwargs: Any) -> int:
        # Counting needs no document decoded whole (skip and limit take mongomock's own path).
        if set(kwargs) - {"maxTimeMS", "hint"} or not top_level_filter(filter):
            return super().count_documents(filter, **kwargs)
        spec = mongomock_helpers.patch_datetime_awareness_in_document(filter)
        return self._store.count_matching(spec)

    # -- writes without mongomock's copies --------------------------------------------------
    #
    # mongomock validates a document by encoding it, copies it whole to make its datetimes
    # naive, encodes the copy again to store it and then queries for each unique key; an update
    # also deep-copies the stored document to compare it afterwards. For an issue (a few KB of
    # nested raw JSON) that was most of a sync's CPU. These paths encode once, read only the
    # top-level fields the index and the unique keys need, and compare BSON bytes; anything
    # they do not cover (sessions, upserts, operators other than $set, dotted fields) takes
    # mongomock's own path.

    def _insert(self, data: Any, session: Any = None, ordered: bool = True) -> Any:
        if (
            session
            or not isinstance(data, Mapping)
            or "_id" not in data
            or isinstance(data["_id"], dict)
        ):
            return super()._insert(data, session, ordered)
        if not all(isinstance(key, str) for key in data):
            raise ValueError("Document keys must be strings")
        _reject_operator_fields(data)
        store = self._store
        # bson refuses what mongomock's validation refuses (NUL in a field name, at any depth)
        # and what MongoDB cannot hold, before anything is written.
        encoded = store._documents._encode_doc(data)
        object_id = data["_id"]
        if object_id in store:
            raise DuplicateKeyError("E11000 Duplicate Key Error", 11000)
        store.write_encoded(object_id, data, encoded)
        try:
            self._ensure_uniques(data)
        except DuplicateKeyError:
            del store[object_id]
            raise
        return object_id

    def _update(
        self,
        spec: Any,
        document: Any,
        upsert: bool = False,
        manipulate: bool = False,
        multi: bool = False,
        check_keys: bool = False,
        hint: Any = None,
        session: Any = None,
        collation: Any = None,
        let: Any = None,
        array_filters: Any = None,
        **kwargs: Any,
    ) -> Any:
        fast = not (
            upsert or multi or hint or session or collation or let or array_filters
            or any(kwargs.get(name) for name in set(kwargs) - {"remove"})
        ) and _plain_update(document) and top_level_filter(spec)
        if not fast:
            return super()._update(
                spec, document, upsert=upsert, manipulate=manipulate, multi=multi,
                check_keys=check_keys, hint=hint, session=session, collation=collation,
                let=let, array_filters=array_filters, **kwargs,
            )
        spec = mongomock_helpers.patch_datetime_awareness_in_document(spec)
        store = self._store
        result = {
            "connectionId": self.database.client._id, "err": None, "n": 0, "nModified": 0,
            "ok": 1, "upserted": None, "updatedExisting": False,
        }
        if type(spec.get("_id")) in _EXACT_ID_TYPES:
            # The primary key finds the one candidate; the rest of the filter (an upsert's
            # version guard) is matched on its top level, with no query planned per write.
            object_id = spec["_id"]
            before = store.encoded_document(object_id)
            if before is not None and set(spec) != {"_id"} and not top_level_matches(
                spec, store._top_level(before)
            ):
                before = None
        else:
            found = next(iter(store.matching_documents(spec, {"_id"})), None)
            object_id = None if found is None else found["_id"]
            before = None if found is None else store.encoded_document(object_id)
        if before is None:
            return result
        if "$set" in document:
            # Only the top level is decoded: nested documents (Jira's raw JSON) stay BSON and are
            # copied as they are into the new encoding.
            shallow = RawBSONDocument(before, codec_options=store._shallow_codec_options)
            updated = dict(shallow.items())
            for field, value in document["$set"].items():
                updated[field] = mongomock_helpers.patch_datetime_awareness_in_document(value)
        else:
            _id = spec.get("_id", object_id)
            _reject_operator_fields(document, replacing=True)
            updated = {"_id": _id, **document}
            if updated["_id"] != _id:
                raise OperationFailure(
                    f"The _id field cannot be changed from {_id} to {updated['_id']}"
                )
        encoded = store._documents._encode_doc(updated)
        result.update(n=1, updatedExisting=True)
        if encoded == before:
            return result
        store.write_encoded(object_id, updated, encoded)
        try:
            self._ensure_uniques(updated)
        except DuplicateKeyError:
            store.write_encoded(object_id, store._documents._decode_doc(before), before)
            raise
        result["nModified"] = 1
        return result

    def _ensure_uniques(self, new_data: Mapping[str, Any]) -> None:
        """Enforce unique indexes after a write, in time independent of the collection's size.

        litemongo's own check plans on every field of the key and copies each field's candidate
        set; `connection_id` is shared by every document, so each write copied the whole
        collection's keys (per-record cost grew with the collection, see benchmarks/). The last
        field of a compound key is the selective one: plan on it alone, then match the whole key.
        """
        store = self._store
        unique = [index for index in store.indexes.values() if index.get("unique")]
        if any(index.get("sparse") or index.get("partialFilterExpression") for index in unique):
            super()._ensure_uniques(
                mongomock_helpers.patch_datetime_awareness_in_document(new_data)
            )
            return
        for index in unique:
            key = {}
            for field, _direction in index["key"]:
                try:
                    value = mongomock_helpers.get_value_by_dot(new_data, field)
                except KeyError:
                    value = None
                key[field] = mongomock_helpers.patch_datetime_awareness_in_document(value)
            last = next(reversed(key))
            # Most writes: the index shows no other document with this key's last value.
            if not store.may_hold_elsewhere(last, key[last], new_data.get("_id")):
                continue
            narrowed = self._iter_documents({last: key[last]})
            if sum(1 for doc in narrowed if filter_applies(key, doc)) > 1:
                raise DuplicateKeyError("E11000 Duplicate Key Error", 11000)


_NOTHING: Any = object()


class EmbeddedCursor(mongomock_collection.Cursor):
    """mongomock's cursor, but plain iteration streams: documents come from the store's lazy
    dataset one at a time instead of a list of the whole answer.

    mongomock's cursor builds `list(dataset)` at the first `next()`: a pass over every issue
    held all of them (100,000 projected issues, ~100 MB) although the store reads them a chunk
    at a time. A server's cursor streams in batches; code written for pymongo expects that.

    What needs the whole answer keeps mongomock's own materializing path, exactly as before:
    `cursor[i]`, `alive` once a skip or limit is set, `distinct`, and any `next()` after a
    change mongomock tolerates mid-iteration (a new sort, skip or limit, `close`): that path
    counts from the same `_emitted`, so it continues where the stream stopped. `rewind()`
    queries again, as pymongo's does (mongomock replayed its list), unless the answer was
    materialized.
    """

    # Class defaults: mongomock's `__init__` calls `rewind()` before ours could set them.
    _stream: Iterator[Any] | None = None
    # What the open stream was started for: a sort, skip or limit changed since means mongomock's
    # path decides what comes next.
    _stream_for: tuple[Any, Any, Any] | None = None
    _peeked: Any = _NOTHING

    @classmethod
    def streaming(cls, cursor: mongomock_collection.Cursor) -> EmbeddedCursor:
        """`cursor` (mongomock's, fresh from `find` or `clone`) as an `EmbeddedCursor`.

        Retyping the cursor mongomock built keeps its argument checks and options (`find`
        validates the filter and refuses unknown options; `clone` copies the query) without
        repeating them here; the class adds no state of its own beyond class defaults."""
        cursor.__class__ = cls
        return cursor  # type: ignore[return-value]

    def _materialized(self) -> bool:
        # mongomock's own test for "the list is the current query's" (partials compare by id).
        return bool(self._results) and self._factory_last_generated_results is self._factory

    def _options(self) -> tuple[Any, Any, Any]:
        return (self._factory, self._skip, self._limit)

    def _open_stream(self) -> Iterator[Any]:
        dataset: Iterator[Any] = self._factory()
        if self.collection.codec_options.tz_aware:
            aware = mongomock_helpers.make_datetime_timezone_aware_in_document
            dataset = (aware(document) for document in dataset)
        # mongomock: skip, then `abs(limit)` documents (a negative limit is a positive one).
        stop = self._skip + abs(self._limit) if self._limit else None
        return itertools.islice(dataset, self._skip, stop)

    def _streams(self) -> bool:
        """Whether `next()` reads the stream: open (or to be opened) for the current options."""
        if self._materialized():
            self._drop_stream()
            return False  # mongomock's list of this query: it decides what comes next
        if self._stream is not None and self._stream_for == self._options():
            return True
        self._drop_stream()
        if self._emitted:
            return False  # mongomock's path, from where the stream stopped
        self._stream = self._open_stream()
        self._stream_for = self._options()
        return True

    def _drop_stream(self) -> None:
        stream, self._stream, self._stream_for = self._stream, None, None
        self._peeked = _NOTHING
        close = getattr(stream, "close", None)
        if close is not None:
            close()

    def __next__(self) -> Any:
        if not self._streams():
            return super().__next__()
        document, self._peeked = self._peeked, _NOTHING
        if document is _NOTHING:
            assert self._stream is not None
            document = next(self._stream)  # StopIteration ends the iteration
        self._emitted += 1
        return document

    next = __next__

    def rewind(self) -> EmbeddedCursor:
        self._drop_stream()
        super().rewind()
        return self

    def clone(self) -> EmbeddedCursor:
        return EmbeddedCursor.streaming(super().clone())

    def close(self) -> None:
        # The dataset's SQLite reads end now, not when the cursor is collected.
        self._drop_stream()
        super().close()

    @property
    def alive(self) -> bool:
        if self._skip or self._limit or not self._streams():
            # mongomock counts emitted documents against the whole answer, skip and limit aside.
            return bool(mongomock_collection.Cursor.alive.fget(self))  # type: ignore[attr-defined]
        # Without skip or limit that is "another document is coming": peek at it.
        if self._peeked is _NOTHING:
            assert self._stream is not None
            self._peeked = next(self._stream, _NOTHING)
        return self._peeked is not _NOTHING

    def to_list(self, length: int | None = None) -> list[Any]:
        """pymongo 4.9's `Cursor.to_list`: the remaining documents, at most `length`."""
        if length is not None and length < 1:
            raise ValueError("to_list() length must be greater than 0")
        return list(itertools.islice(self, length))


# `_id` types whose stored key is equal exactly when the values are (bool, an int subclass and
# equal to 0 and 1, is not among them).
_EXACT_ID_TYPES = (str, uuid.UUID, int, ObjectId)


def _projected(
    document: Mapping[str, Any], kept: set[str], keep_id: bool, as_class: Any
) -> Any:
    """mongomock's inclusion projection of top-level fields (`_copy_only_fields`): the kept
    fields in the document's order, then `_id` unless excluded; nested values copied."""
    projected = as_class()
    for name, value in document.items():
        if name in kept and name != "_id":
            projected[name] = (
                mongomock_collection._copy_field(value, as_class)
                if isinstance(value, (dict, list)) else value
            )
    if keep_id and "_id" in document:
        projected["_id"] = document["_id"]
    return projected


class _InsertsOnly:
    """Collects the documents of a bulk write's `InsertOne`s (what pymongo's requests hand a
    bulk builder); any other request marks the bulk write `other`."""

    def __init__(self) -> None:
        self.documents: list[Any] = []
        self.other = False

    def add_insert(self, document: Any) -> None:
        self.documents.append(document)

    def __getattr__(self, name: str) -> Callable[..., None]:
        self.other = True
        return lambda *args, **kwargs: None


def _reject_operator_fields(document: Mapping[str, Any], *, replacing: bool = False) -> None:
    """mongomock's refusal of top-level field names starting with `$`."""
    for key in document:
        if key.startswith("$"):
            if replacing:
                raise ValueError(f"field names cannot start with $ [{key}]")
            raise InvalidDocument(
                f'Top-level field names cannot start with the "$" sign (found: {key})'
            )


def _plain_update(document: Any) -> bool:
    """A replacement document, or a `$set` of top-level fields other than `_id`."""
    if not isinstance(document, Mapping) or not document:
        return False
    if set(document) == {"$set"}:
        fields = document["$set"]
        return isinstance(fields, Mapping) and bool(fields) and all(
            isinstance(field, str) and field and "." not in field and not field.startswith("$")
            and field != "_id"
            for field in fields
        )
    return not any(isinstance(key, str) and key.startswith("$") for key in document)


class EmbeddedDatabase(mongomock_database.Database):
    """A litemongo database handing out `EmbeddedCollection`s."""

    def get_collection(
        self,
        name: str,
        codec_options: Any = None,
        read_preference: Any = None,
        write_concern: Any = None,
        read_concern: Any = None,
    ) -> EmbeddedCollection:
        if name not in self._collection_accesses:
            self._ensure_valid_collection_name(name)
            collection = EmbeddedCollection(
                self,
                name=name,
                read_preference=self.read_preference,
                codec_options=self._codec_options,
                _db_store=self._store,
            )
            # Lock files sit beside the database folders: litemongo treats every file inside a
            # database folder as a collection, but ignores plain files at the top.
            root: Path = self.client.folder
            collection.write_lock = _write_lock_for(root / f"{self.name}.{name}.lock")
            # Opening a collection's file switches it to WAL, which takes SQLite's exclusive
            # lock without waiting: two processes opening the same file at once made one fail
            # with "database is locked". Open it under the collection's cross-process lock.
            with collection.write_lock.held():
                collection._store  # noqa: B018 - the property opens the file
            self._collection_accesses[name] = collection
        return super().get_collection(
            name, codec_options, read_preference, write_concern, read_concern
        )


class EmbeddedMongoClient(litemongo.client.MongoClient):
    """litemongo over SQLite files in `folder`, set up to behave like our server client.

    Matches the server client's codec: aware datetimes (litemongo's UTC tzinfo is a zero
    `FixedOffset`; it refuses a custom tzinfo) and standard-representation UUIDs.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        super().__init__(
            IndexedServerStore(folder), tz_aware=True, uuidRepresentation="standard"
        )

    def get_database(
        self,
        name: str | None = None,
        codec_options: Any = None,
        read_preference: Any = None,
        write_concern: Any = None,
        read_concern: Any = None,
    ) -> EmbeddedDatabase:
        name = name or DEFAULT_DATABASE
        if name not in self._database_accesses:
            # litemongo creates the database folder without `exist_ok`: another process creating
            # it at the same moment made this one fail. Creating it first is idempotent.
            (self.folder / name).mkdir(parents=True, exist_ok=True)
            self._database_accesses[name] = EmbeddedDatabase(
                self,
                name,
                read_preference=read_preference or self.read_preference,
                codec_options=codec_options or self._codec_options,
                _store=self._store[name],
                read_concern=read_concern,
            )
        return self._database_accesses[name]

    def __repr__(self) -> str:
        return f"EmbeddedMongoClient({str(self.folder)!r})"
