"""The embedded store's query index, kept in SQLite beside the documents it indexes.

litemongo narrows queries with in-memory hash indexes. Every new client rebuilt them by decoding
the whole collection (about 2.5 s per 20,000 issues, at the start of every run), and they held
about 3 KB per document in each process, so a sync's memory grew with the collection. Here the
same index lives in two tables of the collection's own SQLite file, written in the transaction
that writes the document: opening a store costs nothing, memory does not grow with the
collection, and another process's writes are planned for as soon as they commit.

As in litemongo, the index only narrows the candidates: mongomock still matches each candidate
against the whole filter, so a plan may return too many documents but never leaves a match out.
Plans use equality and `$in` (litemongo's rules, through its own key function), plus what a sync
needs and litemongo scans for: datetime ranges (partition windows) and `$nin` of strings
(deletion reconciliation).
"""

from __future__ import annotations

import datetime
import functools
import json
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import litemongo.sqlite_store as sqlite_store
from bson import ObjectId
from bson import decode as bson_decode
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from litemongo._vendor.mongomock import indexing
from litemongo._vendor.mongomock.filtering import filter_applies
from litemongo._vendor.mongomock.helpers import patch_datetime_awareness_in_document

KEYS_TABLE = "query_keys"
PATHS_TABLE = "query_paths"
# The key row of a document whose value at a path cannot be keyed (say, the path crosses an
# array): it is a candidate for every query on that path. Real keys all contain a colon.
UNKEYED = "*"
# A plan whose first this-many candidates is not exhausted is "large": several large plans are
# intersected rather than one of them used alone.
_PROBE_LIMIT = 1000
# When every source is larger than _PROBE_LIMIT, those within this are intersected on their own.
_WIDE_PROBE_LIMIT = 16 * _PROBE_LIMIT
_BUSY_TIMEOUT_MS = 60_000
# Candidates are read this many at a time: memory holds a chunk of documents, not all of them.
_READ_CHUNK = 500
_RANGE_OPERATORS = {"$gt": "lower", "$gte": "lower", "$lt": "upper", "$lte": "upper"}
# `_id` values whose encoded store key is equal exactly when MongoDB calls the values equal.
_EXACT_ID_TYPES = (str, ObjectId, uuid.UUID, int, float)


def sql_key(index_key: tuple[Any, ...]) -> str:
    """The text form of one of litemongo's index keys (`('s', 'PROJ-1')` -> `s:PROJ-1`).

    Equal keys give equal text. Datetime keys are naive UTC seconds, whose ISO form sorts in
    time order, so a datetime range is a range of this text.
    """
    tag = index_key[0]
    if len(index_key) == 1:
        return str(tag)
    value = index_key[1]
    if isinstance(value, bytes):
        return f"{tag}:{value.hex()}"
    if isinstance(value, datetime.datetime):
        return f"{tag}:{value.isoformat()}"
    return f"{tag}:{value}"


def document_key_texts(doc: Mapping[str, Any], path: str) -> list[str]:
    """The key texts a document is indexed under at `path` (none when the field is missing)."""
    # litemongo's own keying rules (it reads any mapping; its annotation says dict)
    keys = indexing._doc_keys(cast(dict[str, Any], doc), path)
    if keys is None:
        return [UNKEYED]
    texts = [sql_key(key) for key in keys]
    if len(texts) > 1:
        # An array: one element may meet a range's lower bound and another its upper bound,
        # with no element inside the range. Such documents are candidates for every query.
        texts.append(UNKEYED)
    return texts


@dataclass(frozen=True)
class Source:
    """SQL selecting the encoded `_id`s of a superset of the documents matching one condition.

    An `_id` may come more than once (a document holding several of the keys): every use takes
    the rows as a set (`IN`, `INTERSECT`) or their count as an upper bound (a probe), so the
    SQL is a UNION ALL, which a probe's LIMIT stops early, where a UNION would first sort every
    row to drop duplicates. `size` is known for a list of `_id`s, and otherwise found by probing.
    """

    sql: str
    params: tuple[Any, ...]
    size: int | None = None


def _intersection(sources: list[Source]) -> Source:
    return Source(
        " INTERSECT ".join(f"SELECT * FROM ({source.sql})" for source in sources),
        tuple(param for source in sources for param in source.params),
    )


def _json(values: Iterable[Any]) -> str:
    return json.dumps(list(values))


class IndexedCollectionStore(sqlite_store.CollectionStore):
    """litemongo's SQLite collection, with its query index stored in the collection's file."""

    _indexed_paths: dict[str, int] | None = None
    _indexed_paths_version: int | None = None
    _batch_depth = 0
    # Inside a batch this connection holds SQLite's write lock, so no other connection can
    # commit: the paths read once in the batch stay right until it ends (see `batch`).
    _batch_paths: dict[str, int] | None = None
    _batch_declared: dict[str, int] | None = None
    _batch_index_cache: object = None
    # litemongo declares it `None` until `open()` sets it.
    _documents: DocumentTable

    def open(self) -> None:
        super().open()
        # A batch (a bulk write of 1,000 issues) or indexing a new path over a large collection
        # holds SQLite's write lock for a while: another process's writer waits for it, as it
        # would for a server, rather than failing after sqlite3's default 5 s.
        self._connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        with self._connection:
            self._connection.execute(
                f"CREATE TABLE IF NOT EXISTS {PATHS_TABLE}"
                "(id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE)"
            )
            # Lookups read (path, key) and return doc_id from the primary key alone.
            self._connection.execute(
                f"CREATE TABLE IF NOT EXISTS {KEYS_TABLE}(path_id INTEGER NOT NULL, "
                "key TEXT NOT NULL, doc_id TEXT NOT NULL, PRIMARY KEY (path_id, key, doc_id)) "
                "WITHOUT ROWID"
            )
            self._connection.execute(
                f"CREATE INDEX IF NOT EXISTS {KEYS_TABLE}_doc ON {KEYS_TABLE}(doc_id)"
            )
        self._indexed_paths = None
        self._indexed_paths_version = None
        self._batch_depth = 0
        # Transactions are the store's (see `batch`), not each document write's.
        self._documents = DocumentTable(
            self.DOCUMENTS,
            self._connection,
            self._cur,
            codec_options=self._codec_options,
            key_format=self._documents.key_format,
        )

    # -- writes: a document and its key rows are written together ------------------------------

    def __setitem__(self, key: Any, val: dict[str, Any]) -> None:
        doc_id = self._documents.encode_key(key)

        def write(paths: dict[str, int]) -> None:
            self._delete_key_rows(doc_id)
            self._connection.executemany(
                f"INSERT OR IGNORE INTO {KEYS_TABLE} VALUES (?, ?, ?)",
                [
                    (path_id, text, doc_id)
                    for path, path_id in paths.items()
                    for text in document_key_texts(val, path)
                ],
            )
            self._documents[key] = val

        self._write(write)

    def write_encoded(self, key: Any, document: Mapping[str, Any], encoded: bytes) -> None:
        """Store `document`, already encoded as BSON (`encoded`), under `key`.

        What `self[key] = document` does without encoding the document a second time nor
        copying it first: only the top-level fields the index reads are looked at, their
        datetimes made naive UTC as mongomock stores them (nested raw JSON is never walked).
        """
        doc_id = self._documents.encode_key(key)

        def write(paths: dict[str, int]) -> None:
            keyed = _keyed_fields(document, paths)
            self._delete_key_rows(doc_id)
            self._connection.executemany(
                f"INSERT OR IGNORE INTO {KEYS_TABLE} VALUES (?, ?, ?)",
                [
                    (path_id, text, doc_id)
                    for path, path_id in paths.items()
                    for text in document_key_texts(keyed, path)
                ],
            )
            self._documents[key] = encoded

        self._write(write)

    def insert_new(
        self,
        documents: list[tuple[Any, Mapping[str, Any], bytes]],
        unique_keys: list[tuple[str, ...]],
    ) -> bool:
        """Insert `(key, document, its BSON)`s in one statement per table, or write nothing and
        return False when that cannot be proven safe: a key already stored or repeated, or the
        values of one of `unique_keys` (each unique index's top-level fields) that another
        document may hold. The caller then writes them one at a time, which names the conflicts.
        """
        if any("." in path for key in unique_keys for path in key):
            return False
        doc_ids = [self._documents.encode_key(key) for key, _, _ in documents]
        if len(set(doc_ids)) != len(doc_ids):
            return False
        self._index_declared_paths()

        def write(paths: dict[str, int]) -> None:
            taken = self._connection.execute(
                f"SELECT 1 FROM {self.DOCUMENTS} WHERE _id IN (SELECT value FROM json_each(?)) "
                "LIMIT 1",
                (_json(doc_ids),),
            ).fetchone()
            if taken is not None or any(path not in paths for key in unique_keys for path in key):
                raise _NotProvenSafe
            rows: list[tuple[int, str, str]] = []
            unique_texts: dict[str, list[str]] = {path: [] for key in unique_keys for path in key}
            for doc_id, (_key, document, _encoded) in zip(doc_ids, documents, strict=True):
                keyed = _keyed_fields(document, paths)
                for path, path_id in paths.items():
                    texts = document_key_texts(keyed, path)
                    rows.extend((path_id, text, doc_id) for text in texts)
                    if path in unique_texts:
                        if len(texts) != 1 or texts[0] == UNKEYED:
                            raise _NotProvenSafe
                        unique_texts[path].append(texts[0])
            for key in unique_keys:
                values = list(zip(*(unique_texts[path] for path in key), strict=True))
                if len(set(values)) != len(values) or self._may_hold_any(paths, key, values):
                    raise _NotProvenSafe
            self._connection.executemany(
                f"INSERT INTO {self.DOCUMENTS} VALUES (?, ?)",
                [(doc_id, encoded) for doc_id, (_, _, encoded) in zip(
                    doc_ids, documents, strict=True)],
            )
            self._connection.executemany(
                f"INSERT OR IGNORE INTO {KEYS_TABLE} VALUES (?, ?, ?)", rows
            )

        try:
            self._write(write)
        except _NotProvenSafe:
            return False
        return True

    def _may_hold_any(
        self, paths: dict[str, int], key: tuple[str, ...], values: list[tuple[str, ...]]
    ) -> bool:
        """True unless the index proves that no stored document holds one of `values` (key
        texts, in `key`'s field order) at `key`'s fields; a document unkeyed at one of them
        could hold anything."""
        path_ids = [paths[path] for path in key]
        unkeyed = self._connection.execute(
            f"SELECT 1 FROM {KEYS_TABLE} WHERE path_id IN (SELECT value FROM json_each(?)) "
            f"AND key = '{UNKEYED}' LIMIT 1",
            (_json(path_ids),),
        ).fetchone()
        if unkeyed is not None:
            return True
        # The last field first: it is the selective one (see EmbeddedCollection._ensure_uniques).
        # CROSS JOIN fixes SQLite's join order to the one written: the batch's values outermost,
        # each an index search. Left to the planner (no ANALYZE statistics), it scanned every
        # key row of the first field and probed the values for each: a batch's check cost grew
        # with the collection (143 ms at 20,000 issues, against 0.03 ms in this order).
        order = [len(key) - 1, *range(len(key) - 1)]
        joins = "".join(
            f" CROSS JOIN {KEYS_TABLE} k{n} ON k{n}.doc_id = k0.doc_id AND k{n}.path_id = ? "
            f"AND k{n}.key = json_extract(w.value, '$[{n}]')"
            for n in range(1, len(key))
        )
        found = self._connection.execute(
            f"SELECT 1 FROM json_each(?) AS w CROSS JOIN {KEYS_TABLE} k0 ON k0.path_id = ? "
            f"AND k0.key = json_extract(w.value, '$[0]'){joins} LIMIT 1",
            (_json([[value[i] for i in order] for value in values]),
             *(path_ids[i] for i in order)),
        ).fetchone()
        return found is not None

    def encoded_document(self, key: Any) -> bytes | None:
        """The stored BSON of the document under `key`, None when there is none."""
        row = self._connection.execute(
            f"SELECT doc FROM {self.DOCUMENTS} WHERE _id = ?", (self._documents.encode_key(key),)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def may_hold_elsewhere(self, path: str, value: Any, key: Any) -> bool:
        """False when the index proves that no document but the one under `key` can hold
        `value` at the top-level `path` (True when it cannot tell: the caller then matches)."""
        if "." in path or isinstance(value, bool) or not isinstance(value, (str, int)):
            return True
        path_id = self._index_declared_paths().get(path)
        texts = document_key_texts({path: value}, path)
        if path_id is None or len(texts) != 1 or texts[0] == UNKEYED:
            return True
        row = self._connection.execute(
            f"SELECT 1 FROM {KEYS_TABLE} WHERE path_id = ? AND key IN (?, '{UNKEYED}') "
            "AND doc_id != ? LIMIT 1",
            (path_id, texts[0], self._documents.encode_key(key)),
        ).fetchone()
        return row is not None

    def __delitem__(self, key: Any) -> None:
        doc_id = self._documents.encode_key(key)

        def delete(_paths: dict[str, int]) -> None:
            self._delete_key_rows(doc_id)
            del self._documents[key]

        self._write(delete)

    def drop(self) -> None:
        super().drop()
        self._clear_index()

    def copy_from(self, source: sqlite_store.CollectionStore) -> None:
        super().copy_from(source)
        # The copied documents are indexed afresh by the next query.
        self._clear_index()

    def _delete_key_rows(self, doc_id: str) -> None:
        self._connection.execute(f"DELETE FROM {KEYS_TABLE} WHERE doc_id = ?", (doc_id,))

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Commit the writes made inside once, at the end, instead of one commit per document.

        A commit writes every page the write touched (the document, its primary key and five
        index entries), and per document that was most of an upsert's cost. Writes stay
        individually atomic (a savepoint each), and the ones that completed are committed even
        when a later one fails, as a server keeps the completed writes of a bulk write.
        """
        if self._batch_depth:
            self._batch_depth += 1
            try:
                yield
            finally:
                self._batch_depth -= 1
            return
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        self._batch_depth = 1
        self._batch_paths = self._batch_declared = None
        try:
            yield
        finally:
            self._batch_depth = 0
            self._batch_paths = self._batch_declared = None
            try:
                connection.commit()
            except BaseException:
                connection.rollback()
                self._indexed_paths = None  # paths this batch added are gone with it
                raise

    def _write(self, write: Callable[[dict[str, int]], None]) -> None:
        """Run `write(indexed paths)` atomically: in the open batch, or in its own transaction.

        The indexed paths are read after SQLite's write lock is taken, so a path another process
        is adding is either complete before this write or sees this write's document.
        """
        with self.batch(), self._rwlock.writer():
            connection = self._connection
            connection.execute("SAVEPOINT document_write")
            try:
                write(self._current_indexed_paths())
            except BaseException:
                connection.execute("ROLLBACK TO document_write")
                raise
            finally:
                connection.execute("RELEASE document_write")

    def _current_indexed_paths(self) -> dict[str, int]:
        # data_version changes only when another connection commits, so the cached paths stay
        # right until then (this connection updates the cache itself when it adds paths). In a
        # batch no other connection can commit: it is read once per batch, not per document.
        if self._batch_depth and self._batch_paths is not None \
                and self._batch_paths is self._indexed_paths:
            return self._batch_paths
        version = self._connection.execute("PRAGMA data_version").fetchone()[0]
        if self._indexed_paths is None or version != self._indexed_paths_version:
            self._indexed_paths = dict(
                self._connection.execute(f"SELECT path, id FROM {PATHS_TABLE}").fetchall()
            )
            self._indexed_paths_version = version
        if self._batch_depth:
            self._batch_paths = self._indexed_paths
        return self._indexed_paths

    def _clear_index(self) -> None:
        with self._rwlock.writer(), self._connection:
            self._connection.execute(f"DELETE FROM {KEYS_TABLE}")
            self._connection.execute(f"DELETE FROM {PATHS_TABLE}")
        self._indexed_paths = None

    def _index_declared_paths(self) -> dict[str, int]:
        """The indexed paths, after indexing any path a declared index uses but no row holds."""
        # As for `_current_indexed_paths`: once per batch, unless this connection changed its
        # indexes since (litemongo then drops the cache of index specifications it read).
        index_cache = getattr(self.indexes, "_cache", None)
        if self._batch_depth and self._batch_declared is not None \
                and self._batch_declared is self._indexed_paths \
                and index_cache is not None and index_cache is self._batch_index_cache:
            return self._batch_declared
        declared = indexing.index_paths(self.indexes.values()) - {indexing.ID}
        paths = self._current_indexed_paths()
        if declared <= set(paths):
            if self._batch_depth:
                self._batch_declared = paths
                self._batch_index_cache = getattr(self.indexes, "_cache", None)
            return paths
        with self.batch(), self._rwlock.writer():
            for path in sorted(declared - set(self._current_indexed_paths())):
                path_id = self._connection.execute(
                    f"INSERT INTO {PATHS_TABLE}(path) VALUES (?)", (path,)
                ).lastrowid
                self._connection.executemany(
                    f"INSERT OR IGNORE INTO {KEYS_TABLE} VALUES (?, ?, ?)",
                    (
                        (path_id, text, doc_id)
                        for doc_id, doc in self._documents.items()
                        for text in document_key_texts(doc, path)
                    ),
                )
            # This connection's own writes do not move data_version: read the paths again.
            self._indexed_paths = None
            return self._current_indexed_paths()

    # -- reads ---------------------------------------------------------------------------------

    def find_candidates(self, filter: Any) -> Iterator[dict[str, Any]]:
        """The documents, in natural order, that could match `filter` (the caller still filters)."""
        return (self._documents._decode_doc(encoded) for encoded in self._candidate_bytes(filter))

    def _ids_in(self, plan: Source) -> list[str]:
        return [
            row[0]
            for row in self._connection.execute(
                f"SELECT _id FROM {self.DOCUMENTS} WHERE _id IN ({plan.sql}) ORDER BY ROWID",
                plan.params,
            )
        ]

    def _exact_id_plan(self, filter: Any) -> Source | None:
        """The plan of a filter on `_id` alone, which the documents' primary key answers exactly:
        its candidates need no matching (mongomock matches `$in` by comparing with every listed
        value: for a batch of 1,000 UUIDs, most of an upsert's read)."""
        if not isinstance(filter, Mapping) or set(filter) != {indexing.ID}:
            return None
        condition = filter[indexing.ID]
        if isinstance(condition, Mapping) and set(condition) not in ({"$eq"}, {"$in"}):
            return None  # another operator beside them still has to be matched
        return self._id_source(condition)

    def _candidate_bytes(self, filter: Any, plan: Source | None = None) -> Iterator[bytes]:
        """The encoded candidates for `filter` (or `plan`'s), in natural order, a chunk at a
        time."""
        self._remove_expired_documents()
        plan = plan or self.plan(filter)
        if plan is None:
            yield from self._all_bytes()
            return
        ids = self._ids_in(plan)
        for start in range(0, len(ids), _READ_CHUNK):
            chunk = ids[start : start + _READ_CHUNK]
            found = dict(
                self._connection.execute(
                    f"SELECT _id, doc FROM {self.DOCUMENTS} "
                    "WHERE _id IN (SELECT value FROM json_each(?))",
                    (_json(chunk),),
                ).fetchall()
            )
            for doc_id in chunk:
                if doc_id in found:
                    yield found[doc_id]

    def _all_bytes(self) -> Iterator[bytes]:
        """Every encoded document in natural order, read a chunk at a time, each chunk its own
        short statement (keyset paging on ROWID).

        The caller may write between two documents (a streaming cursor's loop). One SELECT held
        open across the scan would keep this connection's read snapshot: once another process
        commits, this connection's next write cannot upgrade that stale snapshot and fails at
        once with "database is locked" (busy_timeout does not apply), and the open read keeps
        WAL checkpoints from completing. Between chunks no statement is open. A document updated
        in place keeps its ROWID, so it is never read twice; one inserted later (a higher
        ROWID) may be read, as a server's cursor may return it.
        """
        table = self.DOCUMENTS
        rows = self._connection.execute(
            f"SELECT ROWID, doc FROM {table} ORDER BY ROWID LIMIT ?", (_READ_CHUNK,)
        ).fetchall()
        while rows:
            for _rowid, encoded in rows:
                yield encoded
            if len(rows) < _READ_CHUNK:
                return
            last = rows[-1][0]
            del rows  # one chunk in memory at a time, not two
            rows = self._connection.execute(
                f"SELECT ROWID, doc FROM {table} WHERE ROWID > ? ORDER BY ROWID LIMIT ?",
                (last, _READ_CHUNK),
            ).fetchall()

    def matching_documents(
        self, filter: Any, fields: Collection[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """The documents matching a `top_level_filter`, in natural order.

        Each candidate is matched on its top level alone (nested documents stay undecoded, and
        `raw`, Jira's whole JSON, is most of an issue's bytes); only matches are decoded whole.
        With `fields` (top-level names a projection keeps), a match whose kept fields hold no
        nested document is returned as its top level, not decoded whole.
        """
        self._reject_if_malformed(filter)
        return self._matching(filter, None if fields is None else {*fields, indexing.ID})

    def _matching(self, filter: Any, kept: set[str] | None) -> Iterator[dict[str, Any]]:
        exact = self._exact_id_plan(filter)
        matches = _matcher(filter)
        for encoded in self._candidate_bytes(filter, exact):
            if exact is not None and kept is None:
                yield self._documents._decode_doc(encoded)
                continue
            top = self._top_level(encoded)
            if exact is None and not matches(top):
                continue
            if kept is not None and not any(
                type(top.get(name)) in _OPAQUE_TYPES and _holds_document(top[name])
                for name in kept
            ):
                yield top
            else:
                yield self._documents._decode_doc(encoded)

    def projected_documents(self, filter: Any, paths: ProjectedPaths) -> Iterator[dict[str, Any]]:
        """The documents matching a `top_level_filter`, each cut to `paths` (an inclusion
        projection of dotted paths, see `included_paths`), in natural order.

        Only what the paths reach is decoded: the walk goes down Jira's `raw` a level at a time
        (each level's nested documents left as undecoded bytes), so reading three ids out of an
        issue's fields costs a small part of decoding the issue whole.
        """
        self._reject_if_malformed(filter)
        exact = self._exact_id_plan(filter)
        matches = _matcher(filter)
        for encoded in self._candidate_bytes(filter, exact):
            document = RawBSONDocument(encoded, codec_options=self._shallow_codec_options)
            if exact is None and not matches(_shallow_top_level(document)):
                continue
            projected = self._project(document, paths.tree)
            if paths.keep_id and indexing.ID in document:
                projected[indexing.ID] = self._whole(document[indexing.ID])
            yield projected

    def _project(self, document: Mapping[str, Any], tree: PathTree) -> dict[str, Any]:
        # MongoDB's inclusion projection: the document's own order; a path's end keeps its value
        # whole; a path through an array projects each document in it (arrays within arrays
        # too) and drops the other elements; a path that meets a scalar keeps nothing of it.
        projected: dict[str, Any] = {}
        for name, value in document.items():
            if name == indexing.ID or name not in tree:
                continue
            below = tree[name]
            if below is None:
                projected[name] = self._whole(value)
            else:
                kept = self._project_value(value, below)
                if kept is not _NOTHING:
                    projected[name] = kept
        return projected

    def _project_value(self, value: Any, tree: PathTree) -> Any:
        if isinstance(value, RawBSONDocument):
            return self._project(value, tree)
        if isinstance(value, list):
            return [self._project_value(item, tree) for item in value
                    if isinstance(item, RawBSONDocument | list)]
        return _NOTHING

    def _whole(self, value: Any) -> Any:
        """A shallowly decoded value decoded whole, as the store decodes a document."""
        if isinstance(value, RawBSONDocument):
            return bson_decode(value.raw, codec_options=self._codec_options)
        if isinstance(value, list):
            return [self._whole(item) for item in value]
        return value

    def count_matching(self, filter: Any) -> int:
        """How many documents match a `top_level_filter`, decoding none of them whole."""
        self._reject_if_malformed(filter)
        exact = self._exact_id_plan(filter)
        if exact is not None:
            return len(self._ids_in(exact))
        matches = _matcher(filter)
        return sum(
            1 for encoded in self._candidate_bytes(filter) if matches(self._top_level(encoded))
        )

    def _reject_if_malformed(self, filter: Any) -> None:
        # mongomock validates a filter by matching it even when no document can be returned.
        if self.is_empty:
            filter_applies(filter, {})

    def _top_level(self, encoded: bytes) -> dict[str, Any]:
        return _shallow_top_level(
            RawBSONDocument(encoded, codec_options=self._shallow_codec_options)
        )

    @functools.cached_property
    def _shallow_codec_options(self) -> CodecOptions:
        return self._codec_options.with_options(document_class=RawBSONDocument)

    def plan(self, filter: Any) -> Source | None:
        """The SQL narrowing `filter`'s candidates, or None when every document must be read."""
        if not isinstance(filter, Mapping) or not filter:
            return None
        sources = self._sources(filter, self._index_declared_paths())
        if not sources:
            return None
        sized = [source for source in sources if source.size is not None]
        if sized:
            return min(sized, key=lambda source: source.size or 0)
        probed = sorted(((self._probe(source), index) for index, source in enumerate(sources)))
        smallest, index = probed[0]
        if smallest <= _PROBE_LIMIT or len(sources) == 1:
            return sources[index]
        # Every source is large. Intersecting them all reads each whole, the broadest too (a
        # connection's every document); the sources within a wider count are intersected
        # alone, or the one that is taken as the candidates (the matcher checks the rest).
        narrow = [source for source in sources
                  if self._probe(source, _WIDE_PROBE_LIMIT) <= _WIDE_PROBE_LIMIT]
        if len(narrow) == 1:
            return narrow[0]
        return _intersection(narrow or sources)

    def _probe(self, source: Source, limit: int = _PROBE_LIMIT) -> int:
        """How many rows `source` selects, counted up to `limit + 1` (a document matching
        several of its keys counts once for each: an upper bound)."""
        row = self._connection.execute(
            f"SELECT count(*) FROM ({source.sql} LIMIT {limit + 1})", source.params
        ).fetchone()
        return int(row[0])

    def _sources(self, filter: Mapping[str, Any], paths: dict[str, int]) -> list[Source]:
        sources: list[Source] = []
        for field, condition in filter.items():
            if field == "$and" and isinstance(condition, (list, tuple)):
                for part in condition:
                    if isinstance(part, Mapping):
                        sources.extend(self._sources(part, paths))
            elif field == indexing.ID:
                source = self._id_source(condition)
                if source is not None:
                    sources.append(source)
            elif field in paths:
                source = self._path_source(paths[field], condition)
                if source is not None:
                    sources.append(source)
        return sources

    def _id_source(self, condition: Any) -> Source | None:
        """`_id` equality and `$in` are answered by the documents' own primary key."""
        if self._documents.key_format != sqlite_store.KEY_FORMAT_TYPED:
            return None
        if indexing.query_keys(condition) is None:
            return None
        if isinstance(condition, Mapping):
            values = [condition["$eq"]] if "$eq" in condition else list(condition["$in"])
        else:
            values = [condition]
        if not all(
            isinstance(value, _EXACT_ID_TYPES) and value == value  # NaN is never equal
            for value in values
        ):
            return None
        encoded = {self._documents.encode_key(value) for value in values}
        return Source("SELECT value FROM json_each(?)", (_json(encoded),), size=len(encoded))

    def _path_source(self, path_id: int, condition: Any) -> Source | None:
        unkeyed = f"SELECT doc_id FROM {KEYS_TABLE} WHERE path_id = ? AND key = '{UNKEYED}'"
        keys = indexing.query_keys(condition)
        if keys is not None:
            return Source(
                f"SELECT doc_id FROM {KEYS_TABLE} WHERE path_id = ? AND key IN "
                f"(SELECT value FROM json_each(?)) UNION ALL {unkeyed}",
                (path_id, _json(sql_key(cast(tuple[Any, ...], key)) for key in keys), path_id),
            )
        if not isinstance(condition, Mapping):
            return None
        bounds = _datetime_bounds(condition)
        if bounds is not None:
            lower, upper = bounds
            return Source(
                f"SELECT doc_id FROM {KEYS_TABLE} WHERE path_id = ? AND key >= ? AND key <= ? "
                f"UNION ALL {unkeyed}",
                (path_id, lower, upper, path_id),
            )
        excluded = condition.get("$nin")
        if isinstance(excluded, (list, tuple)):
            # A string's key is the string itself, so a document holding one of them cannot
            # match; every other document (missing field, other types, unkeyed) stays.
            texts = {sql_key(("s", value)) for value in excluded if isinstance(value, str)}
            if texts:
                return Source(
                    f"SELECT _id FROM {self.DOCUMENTS} WHERE _id NOT IN (SELECT doc_id FROM "
                    f"{KEYS_TABLE} WHERE path_id = ? AND key IN (SELECT value FROM json_each(?)))",
                    (path_id, _json(texts)),
                )
        return None


# Operators whose answer on a scalar operand is the same for a nested document and for `{}`:
# none of them looks inside a document it is not asked about.
_TOP_LEVEL_OPERATORS = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists"}
_SCALARS = (str, int, float, type(None), datetime.datetime, uuid.UUID, ObjectId, bytes)


def top_level_filter(filter: Any) -> bool:
    """True when `filter` reads only top-level fields, each compared with scalars.

    Such a filter gives the same answer on a document whose nested documents are replaced by
    `{}` (see `IndexedCollectionStore.matching_documents`) as on the whole document.
    """
    if not isinstance(filter, Mapping):
        return False
    for field, condition in filter.items():
        if field in ("$and", "$or", "$nor"):
            if not isinstance(condition, (list, tuple)) or not condition:
                return False
            if not all(top_level_filter(part) for part in condition):
                return False
        elif not isinstance(field, str) or field.startswith("$") or "." in field:
            return False
        elif isinstance(condition, Mapping):
            if not condition or not all(
                operator in _TOP_LEVEL_OPERATORS and _scalar_operand(operand)
                for operator, operand in condition.items()
            ):
                return False
        elif not _scalar_operand(condition):
            return False
    return True


def _scalar_operand(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(isinstance(item, _SCALARS) for item in value)
    return isinstance(value, _SCALARS)


# -- matching a document's top level -----------------------------------------------------------
#
# mongomock's `filter_applies` walks a filter per document in Python, about a third of a
# projected scan's cost (checks, the summary and the refresh sensor scan the issues). The
# filters those scans use (a connection's live issues, a window of `updated`, ids `$in`) are
# decided here for the common values: a string, a bool, a datetime, null or a missing field.
# Any other value (an array, a number, ...) is left to mongomock, so the answer is always its.

Verdict = bool | None  # None: undecided, mongomock decides
_MISSING = object()
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": lambda value, bound: value > bound,
    "$gte": lambda value, bound: value >= bound,
    "$lt": lambda value, bound: value < bound,
    "$lte": lambda value, bound: value <= bound,
}


def _matcher(filter: Any) -> Callable[[Mapping[str, Any]], bool]:
    """`filter_applies(filter, doc)` as a function of `doc`, deciding the common cases itself."""
    quick = quick_filter(filter)
    if quick is None:
        return lambda doc: filter_applies(filter, doc)

    def matches(doc: Mapping[str, Any]) -> bool:
        verdict = quick(doc)
        return filter_applies(filter, doc) if verdict is None else verdict

    return matches


def top_level_matches(filter: Any, top: Mapping[str, Any]) -> bool:
    """Whether a document whose top level (see `IndexedCollectionStore._top_level`) is `top`
    matches a `top_level_filter`."""
    return _matcher(filter)(top)


def quick_filter(filter: Any) -> Callable[[Mapping[str, Any]], Verdict] | None:
    """A test of a document against `filter` that answers as mongomock does, or None (undecided)
    for values it does not cover; None instead of a test when the filter has other forms.

    Covered: top-level fields equal to a string, a bool or null (`$eq` too), `$in` of strings,
    `$ne` of a bool, datetime ranges (`$gt`, `$gte`, `$lt`, `$lte`), and `$or` of such filters.
    """
    if not isinstance(filter, Mapping):
        return None
    tests: list[Callable[[Mapping[str, Any]], Verdict]] = []
    for field, condition in filter.items():
        if field == "$or" and isinstance(condition, (list, tuple)) and condition:
            parts = [quick_filter(part) for part in condition]
            if not all(part is not None for part in parts):
                return None
            tests.append(_any_of(cast(list[Callable[[Mapping[str, Any]], Verdict]], parts)))
            continue
        if not isinstance(field, str) or field.startswith("$") or "." in field:
            return None
        test = _field_test(field, condition)
        if test is None:
            return None
        tests.append(test)

    def decide(doc: Mapping[str, Any]) -> Verdict:
        undecided = False
        for test in tests:
            verdict = test(doc)
            if verdict is False:
                return False
            undecided = undecided or verdict is None
        return None if undecided else True

    return decide


def _any_of(parts: list[Callable[[Mapping[str, Any]], Verdict]]) -> Callable[..., Verdict]:
    def decide(doc: Mapping[str, Any]) -> Verdict:
        verdicts = [part(doc) for part in parts]
        if True in verdicts:
            return True
        return None if None in verdicts else False

    return decide


def _field_test(field: str, condition: Any) -> Callable[[Mapping[str, Any]], Verdict] | None:
    if isinstance(condition, Mapping) and set(condition) == {"$eq"}:
        condition = condition["$eq"]
    if type(condition) in (str, bool):
        return _equals(field, condition)
    if condition is None:
        return _is_null(field)
    if not isinstance(condition, Mapping) or not condition:
        return None
    operators = set(condition)
    if operators == {"$in"}:
        values = condition["$in"]
        if isinstance(values, (list, tuple)) and all(type(value) is str for value in values):
            return _in_strings(field, frozenset(values))
        return None
    if operators == {"$ne"} and type(condition["$ne"]) is bool:
        return _not_bool(field, condition["$ne"])
    if operators <= set(_COMPARISONS):
        bounds = list(condition.items())
        if all(type(bound) is datetime.datetime for _, bound in bounds):
            aware = {bound.tzinfo is not None for _, bound in bounds}
            if len(aware) == 1:
                return _datetime_range(field, bounds, aware.pop())
    return None


def _equals(field: str, wanted: str | bool) -> Callable[[Mapping[str, Any]], Verdict]:
    """Equality to a string or a bool: a value of another distinct type (or none) is not
    equal; a number, an array or a document is left to mongomock (Python's 1 == True)."""
    kind = type(wanted)

    def test(doc: Mapping[str, Any]) -> Verdict:
        value = doc.get(field, _MISSING)
        if type(value) is kind:
            return value == wanted
        return False if _other_scalar(value, kind) else None

    return test


def _is_null(field: str) -> Callable[[Mapping[str, Any]], Verdict]:
    def test(doc: Mapping[str, Any]) -> Verdict:
        value = doc.get(field, _MISSING)
        if value is None or value is _MISSING:
            return True
        return False if type(value) in _DISTINCT_TYPES else None

    return test


def _in_strings(field: str, wanted: frozenset[str]) -> Callable[[Mapping[str, Any]], Verdict]:
    def test(doc: Mapping[str, Any]) -> Verdict:
        value = doc.get(field, _MISSING)
        if type(value) is str:
            return value in wanted
        return False if _other_scalar(value, str) else None

    return test


def _not_bool(field: str, excluded: bool) -> Callable[[Mapping[str, Any]], Verdict]:
    def test(doc: Mapping[str, Any]) -> Verdict:
        value = doc.get(field, _MISSING)
        if type(value) is bool:
            return value is not excluded
        return True if _other_scalar(value, bool) else None

    return test


def _datetime_range(
    field: str, bounds: list[tuple[str, datetime.datetime]], aware: bool
) -> Callable[[Mapping[str, Any]], Verdict]:
    checks = [(_COMPARISONS[operator], bound) for operator, bound in bounds]

    def test(doc: Mapping[str, Any]) -> Verdict:
        value = doc.get(field, _MISSING)
        if type(value) is datetime.datetime:
            if (value.tzinfo is not None) != aware:
                return None
            return all(compare(value, bound) for compare, bound in checks)
        return False if _other_scalar(value, datetime.datetime) else None

    return test


# Values of these types compare equal only to values of their own type (MongoDB's type
# bracketing: a string is never equal to a bool, nor in a date range); numbers are left out
# (mongomock takes `1` for `True`).
_DISTINCT_TYPES = (str, bool, datetime.datetime)


def _other_scalar(value: Any, than: type) -> bool:
    """True for null, a missing field, or a value of one of `_DISTINCT_TYPES` other than
    `than`: none of them can equal, or fall in a range of, a `than` value."""
    if value is None or value is _MISSING:
        return True
    kind = type(value)
    return kind is not than and kind in _DISTINCT_TYPES


# What a shallow decode gives for a nested document or an array, and what `_opaque` makes of it.
_NESTED_TYPES = (RawBSONDocument, list)
_OPAQUE_TYPES = (dict, list)


def _shallow_top_level(document: RawBSONDocument) -> dict[str, Any]:
    # Most top-level values are scalars: only documents and arrays need `_opaque`.
    return {
        name: _opaque(value) if type(value) in _NESTED_TYPES else value
        for name, value in document.items()
    }


def _opaque(value: Any) -> Any:
    """A shallowly decoded value with each nested document (left undecoded) replaced by `{}`."""
    if isinstance(value, RawBSONDocument):
        return {}
    if isinstance(value, list):
        return [_opaque(item) for item in value]
    return value


class _NotProvenSafe(Exception):
    """A batch insert that might conflict: rolled back, to be written one at a time."""


def _keyed_fields(document: Mapping[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """The top-level fields of `document` that `paths` read, datetimes as mongomock stores
    them (naive UTC, milliseconds)."""
    names = {path.split(".", 1)[0] for path in paths}
    return {
        name: patch_datetime_awareness_in_document(value)
        for name, value in document.items()
        if name in names
    }


def _holds_document(value: Any) -> bool:
    """True for a (possibly undecoded, `{}`) document, or a list holding one."""
    if isinstance(value, dict):
        return True
    return isinstance(value, list) and any(_holds_document(item) for item in value)


# A projection's paths as a tree: each name maps to the names kept below it, or to None where a
# path ends (the value is kept whole).
PathTree = dict[str, "PathTree | None"]
_NOTHING = object()  # what a path that meets a scalar keeps of it


@dataclass(frozen=True)
class ProjectedPaths:
    tree: PathTree
    keep_id: bool


def included_paths(projection: Any) -> ProjectedPaths | None:
    """An inclusion projection of plain paths, dotted or not (`{"raw.fields.priority.id": 1}`),
    as a tree, else None (no projection, an exclusion, operators, `$` or numeric path parts,
    or a path that is another's prefix, which MongoDB rejects as a collision)."""
    if isinstance(projection, (list, tuple)):
        projection = dict.fromkeys(projection, 1)
    if not isinstance(projection, Mapping) or not projection:
        return None
    tree: PathTree = {}
    keep_id = True
    id_included = False
    for name, value in projection.items():
        if value is not True and (isinstance(value, bool) or value != 1):
            if name == indexing.ID and value in (0, False):
                keep_id = False
                continue
            return None
        if name == indexing.ID:
            id_included = True
            continue
        if not isinstance(name, str):
            return None
        parts = name.split(".")
        if any(not part or part.startswith("$") or part.isdigit() for part in parts):
            return None
        node = tree
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if part in node and (last or node[part] is None):
                return None  # a collision: one path is the other's prefix
            if last:
                node[part] = None
            else:
                below = node.setdefault(part, {})
                assert below is not None
                node = below
    if not tree:
        # `{"_id": 1}` keeps the ids alone (served from the top levels, as any top-level
        # projection); `{"_id": 0}` alone is an exclusion, which this does not serve.
        return ProjectedPaths(tree, keep_id) if id_included and keep_id else None
    return ProjectedPaths(tree, keep_id)


def top_level_names(paths: ProjectedPaths | None) -> set[str] | None:
    """The fields `paths` (see `included_paths`) keeps when each is a top-level field kept
    whole (`_id` aside), else None: dotted paths need more than the documents' top levels."""
    if paths is None or any(below is not None for below in paths.tree.values()):
        return None
    return set(paths.tree)


def _datetime_bounds(condition: Mapping[str, Any]) -> tuple[str, str] | None:
    """The key range holding every datetime that `$gt`/`$gte`/`$lt`/`$lte` can match.

    Only datetimes match a datetime bound (MongoDB's type bracketing, which mongomock follows).
    Keys are truncated to the second, so both ends are inclusive: a superset, never less.
    """
    lower, upper = "t:", "t:~"  # every datetime key sorts between these
    bounded = False
    for operator, value in condition.items():
        side = _RANGE_OPERATORS.get(operator)
        if side is None:
            continue
        if not isinstance(value, datetime.datetime):
            return None
        text = sql_key(indexing._key_for(value))  # litemongo's keying rules
        if side == "lower":
            lower = max(lower, text)
        else:
            upper = min(upper, text)
        bounded = True
    return (lower, upper) if bounded else None


class DocumentTable(sqlite_store.TableDict):
    """litemongo's documents table, writing inside the caller's transaction, not its own."""

    def __setitem__(self, key: Any, val: Any) -> None:
        encoded = val if isinstance(val, bytes) else self._encode_doc(val)
        self._cur.execute(
            f"INSERT INTO {self._table_name} VALUES (?, ?) "
            f"ON CONFLICT({self.ID}) DO UPDATE SET {self.DOC} = excluded.{self.DOC}",
            (self.encode_key(key), encoded),
        )

    def __delitem__(self, key: Any) -> None:
        encoded = self.encode_key(key)
        deleted = self._cur.execute(
            f"DELETE FROM {self._table_name} WHERE {self.ID} = ?", (encoded,)
        )
        if deleted.rowcount <= 0:
            raise KeyError(encoded)


class IndexedDatabaseStore(sqlite_store.DatabaseStore):
    """A database folder whose collections are `IndexedCollectionStore`s."""

    def __getitem__(self, col_name: str) -> IndexedCollectionStore:
        if col_name not in self._collections:
            self._collections[col_name] = IndexedCollectionStore(
                self._dirpath / col_name, codec_options=self._codec_options
            )
        return self._collections[col_name]


class IndexedServerStore(sqlite_store.ServerStore):
    """A folder of database folders, each an `IndexedDatabaseStore`."""

    def __getitem__(self, db_name: str) -> IndexedDatabaseStore:
        if db_name not in self._databases:
            self._databases[db_name] = IndexedDatabaseStore(self._dirpath / db_name)
        return self._databases[db_name]


__all__ = ["IndexedCollectionStore", "IndexedDatabaseStore", "IndexedServerStore", "sql_key"]
