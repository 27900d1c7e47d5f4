"""The embedded store's SQLite query index: plans return every match, and read few documents.

Every filter here runs twice, through the index and as a full scan (mongomock's own matching
over every document); the two must agree on the documents and their order.
"""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litemongo._vendor.mongomock import collection as mongomock_collection
from litemongo._vendor.mongomock.filtering import filter_applies
from litemongo._vendor.mongomock.helpers import make_datetime_timezone_aware_in_document
from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from jira_pipeline.storage.client import get_mongo_client
from jira_pipeline.storage.embedded_index import (
    IndexedCollectionStore,
    ProjectedPaths,
    _matcher,
    included_paths,
    quick_filter,
)
from jira_pipeline.storage.indexes import ensure_indexes

T0 = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)


def _documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for n in range(60):
        docs.append({
            "_id": uuid.uuid5(uuid.NAMESPACE_OID, str(n)),
            "connection_id": "c1" if n % 3 else "c2",
            "issue_id": str(10_000 + n),
            "key": f"P{n % 4}-{n}",
            "project_key": f"P{n % 4}",
            "updated": T0 + timedelta(hours=n, milliseconds=n),
            "is_deleted": n % 7 == 0,
        })
    # Values the index cannot key or keys coarsely: they must still be found.
    docs.append({"_id": "array", "connection_id": ["c1", "c2"], "issue_id": "array",
                 "key": ["A-1", "A-2"], "updated": [T0, T0 + timedelta(days=30)]})
    docs.append({"_id": "nested", "connection_id": "c1", "issue_id": {"deep": 1},
                 "updated": "2026-03-01T12:00:00Z", "key": None})
    docs.append({"_id": "missing", "connection_id": "c1"})
    docs.append({"_id": 7, "connection_id": "c3", "issue_id": 7, "updated": T0})
    docs.append({"_id": "unkeyed", "connection_id": "c1", "key": [["nested", "list"]],
                 "issue_id": "unkeyed"})
    # Nested documents, left undecoded when a filter reads only the top level.
    docs.append({"_id": "raw", "connection_id": "c1", "issue_id": "raw", "raw": {"a": 1},
                 "mixed": [{"x": 1}, 2, [{"y": 2}]], "is_deleted": False})
    return docs


@pytest.fixture
def issues(tmp_path: Path) -> Iterator[Any]:
    client = get_mongo_client(None, folder=tmp_path / "mongo")
    db = client.get_database("index_test")
    ensure_indexes(db, ["jira_issues"])
    db.jira_issues.insert_many(_documents())
    yield db.jira_issues
    client.close()


def _store(collection: Any) -> IndexedCollectionStore:
    store = collection._store
    assert isinstance(store, IndexedCollectionStore)
    return store


def _scan(collection: Any, filter: dict[str, Any]) -> list[Any]:
    """What a full scan matches: the answer the index must reproduce."""
    # An empty filter is never planned: find({}) reads every document, decoded as find does.
    return [doc["_id"] for doc in collection.find({}) if filter_applies(filter, doc)]


def _copy(projection: Any) -> Any:
    return list(projection) if isinstance(projection, list) else dict(projection)


def _project(doc: dict[str, Any], projection: Any) -> dict[str, Any]:
    """What MongoDB returns for `projection` of a whole document (the cases used here)."""
    if isinstance(projection, list):
        projection = dict.fromkeys(projection, 1)
    kept = {name for name, value in projection.items() if value and name != "_id"}
    if any(not value for name, value in projection.items() if name != "_id"):
        return {name: value for name, value in doc.items() if projection.get(name, 1)}
    out = {}
    for name in kept:
        head, _, rest = name.partition(".")
        if head in doc:
            if rest and isinstance(doc[head], dict):
                if rest in doc[head]:
                    out[head] = {rest: doc[head][rest]}
            elif not rest:
                out[head] = doc[head]
    if projection.get("_id", 1):
        out["_id"] = doc["_id"]
    return out


FILTERS: list[dict[str, Any]] = [
    {"issue_id": "10005"},
    {"issue_id": {"$eq": "10005"}},
    {"issue_id": {"$in": ["10005", "10006", "nope", 7]}},
    {"issue_id": 7.0},
    {"connection_id": "c2"},
    {"connection_id": "c1", "issue_id": "10004"},
    {"connection_id": "c1", "project_key": "P1"},
    {"key": "A-2"},
    {"key": "nested"},
    {"_id": uuid.uuid5(uuid.NAMESPACE_OID, "3")},
    {"_id": {"$in": [uuid.uuid5(uuid.NAMESPACE_OID, "3"), "array", 7.0, "absent"]}},
    {"_id": 7},
    {"_id": {"$in": ["array", "nested", "missing"], "$ne": "nested"}},
    {"_id": {"$eq": "array", "$exists": True}},
    {"updated": {"$gte": T0 + timedelta(hours=10), "$lt": T0 + timedelta(hours=20)}},
    {"updated": {"$gt": T0 + timedelta(hours=10, milliseconds=10)}},
    {"updated": {"$lte": T0}},
    {"updated": {"$gte": T0 + timedelta(days=29)}},
    {"updated": {"$gte": "2026"}},
    {"connection_id": "c1", "is_deleted": {"$ne": True},
     "updated": {"$gte": T0 + timedelta(hours=5)}},
    {"issue_id": {"$nin": [str(10_000 + n) for n in range(0, 60, 2)]}},
    {"connection_id": "c1", "is_deleted": {"$ne": True},
     "issue_id": {"$nin": [str(10_000 + n) for n in range(60) if n != 4]}},
    {"key": {"$nin": ["A-1"]}},
    {"$and": [{"connection_id": "c1"}, {"issue_id": {"$in": ["10001", "10002"]}}]},
    {"$or": [{"issue_id": "10001"}, {"issue_id": "10002"}]},
    {"issue_id": None},
    {"issue_id": {"$regex": "^1000"}},
    {"raw": {"$exists": True}},
    {"raw": {"$ne": "x"}, "is_deleted": False},
    {"raw": {"$gt": 0}},
    {"raw": {"a": 1}},
    {"raw.a": 1},
    {"mixed": 2},
    {"mixed": {"$gte": 2}},
    {"mixed": {"$in": [1, 2]}},
    {"mixed": {"$nin": [1]}},
    {"is_deleted": {"$ne": True}, "connection_id": "c1"},
    {"$or": [{"raw": {"$exists": True}}, {"is_deleted": True}]},
]


@pytest.mark.parametrize("filter", FILTERS, ids=[str(f)[:60] for f in FILTERS])
def test_plans_find_exactly_what_a_full_scan_finds(issues: Any, filter: dict[str, Any]) -> None:
    expected = _scan(issues, filter)
    found = list(issues.find(filter))
    assert [doc["_id"] for doc in found] == expected
    assert issues.count_documents(filter) == len(expected)
    # Matches come back whole, nested documents included.
    for doc in found:
        if doc["_id"] == "raw":
            assert (doc["raw"], doc["mixed"]) == ({"a": 1}, [{"x": 1}, 2, [{"y": 2}]])
    # Projections keep exactly the fields a projection of the whole documents keeps.
    whole = {doc["_id"]: doc for doc in issues.find({})}
    for projection in ({"issue_id": 1}, {"issue_id": 1, "raw": 1, "_id": 0}, ["mixed", "key"],
                       {"raw.a": 1}, {"raw": 0}):
        projected = list(issues.find(filter, _copy(projection)))
        assert projected == [_project(whole[_id], projection) for _id in expected], projection


def test_plans_read_only_their_candidates_and_decode_only_matches_whole(
    issues: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(issues)
    read = decoded = 0
    top_level, decode = store._top_level, store._documents._decode_doc

    def reading(encoded: bytes) -> dict[str, Any]:
        nonlocal read
        read += 1
        return top_level(encoded)

    def decoding(encoded: bytes) -> dict[str, Any]:
        nonlocal decoded
        decoded += 1
        return decode(encoded)

    monkeypatch.setattr(store, "_top_level", reading)
    monkeypatch.setattr(store._documents, "_decode_doc", decoding)
    cases = [  # filter, candidates read, matches
        ({"issue_id": "10005"}, 1, 1),
        ({"connection_id": "c1", "issue_id": "10004"}, 1, 1),
        ({"updated": {"$gte": T0 + timedelta(hours=58)}}, 3, 3),  # 58, 59 and the array
        # The six documents whose issue_id is not one of the 60 strings; `7` is a number.
        ({"issue_id": {"$nin": [str(10_000 + n) for n in range(60)]}}, 6, 6),
        ({"issue_id": {"$nin": [str(10_000 + n) for n in range(60)]}, "raw": {"$ne": None}},
         6, 1),
        # No index on is_deleted: every document is read, only the matches are decoded whole.
        ({"is_deleted": True}, len(_documents()), 9),
    ]
    for filter, candidates, matches in cases:
        read = decoded = 0
        assert len(list(issues.find(filter))) == matches, filter
        assert (read, decoded) == (candidates, matches), filter
        read = decoded = 0
        assert issues.count_documents(filter) == matches
        assert (read, decoded) == (candidates, 0), filter
    # A projection of top-level scalars is served from the top level: nothing decoded whole.
    read = decoded = 0
    assert [d["issue_id"] for d in issues.find({"is_deleted": True}, {"issue_id": 1})] == [
        str(10_000 + n) for n in range(0, 60, 7)
    ]
    assert (read, decoded) == (len(_documents()), 0)
    read = decoded = 0
    assert list(issues.find({"issue_id": "raw"}, {"raw": 1, "_id": 0})) == [{"raw": {"a": 1}}]
    assert (read, decoded) == (1, 1)
    # An _id lookup is answered by the primary key: nothing to match.
    read = decoded = 0
    assert len(list(issues.find({"_id": uuid.uuid5(uuid.NAMESPACE_OID, "3")}))) == 1
    assert (read, decoded) == (0, 1)
    # A nested path cannot be matched on the top level: every document is decoded whole.
    read = decoded = 0
    assert [d["_id"] for d in issues.find({"raw.a": 1})] == ["raw"]
    assert (read, decoded) == (0, len(_documents()))


def test_writes_keep_the_index_exact(issues: Any) -> None:
    first = uuid.uuid5(uuid.NAMESPACE_OID, "1")
    issues.update_one({"_id": first}, {"$set": {"issue_id": "moved", "key": "M-1"}})
    assert [d["_id"] for d in issues.find({"issue_id": "moved"})] == [first]
    assert list(issues.find({"issue_id": "10001"})) == []
    issues.replace_one({"_id": first}, {"connection_id": "c9", "issue_id": "again"})
    assert [d["_id"] for d in issues.find({"connection_id": "c9"})] == [first]
    assert list(issues.find({"key": "M-1"})) == []
    issues.delete_one({"_id": first})
    assert list(issues.find({"issue_id": "again"})) == []
    store = _store(issues)
    rows = store._connection.execute(
        "SELECT count(*) FROM query_keys WHERE doc_id = ?", (store._documents.encode_key(first),)
    ).fetchone()[0]
    assert rows == 0
    issues.delete_many({})
    assert store._connection.execute("SELECT count(*) FROM query_keys").fetchone()[0] == 0


def test_unique_index_still_refuses_duplicates(issues: Any) -> None:
    with pytest.raises(DuplicateKeyError):
        issues.insert_one({"connection_id": "c1", "issue_id": "10001"})
    # A failed insert leaves neither the document nor its key rows behind.
    assert [d["issue_id"] for d in issues.find({"issue_id": "10001"})] == ["10001"]


def test_an_index_created_after_the_documents_indexes_them(tmp_path: Path) -> None:
    client = get_mongo_client(None, folder=tmp_path / "mongo")
    collection = client.get_database("late").things
    collection.insert_many([{"n": n, "tag": f"t{n % 5}"} for n in range(50)])
    collection.create_index([("tag", ASCENDING)])
    assert sorted(d["n"] for d in collection.find({"tag": "t3"})) == list(range(3, 50, 5))
    assert _store(collection).plan({"tag": "t3"}) is not None
    client.close()


def test_the_index_survives_reopening_and_another_client_sees_new_writes(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "mongo"
    writer = get_mongo_client(None, folder=folder)
    ensure_indexes(writer.get_database("shared"), ["jira_issues"])
    collection = writer.get_database("shared").jira_issues
    collection.insert_one({"connection_id": "c1", "issue_id": "1", "updated": T0})
    reader = get_mongo_client(None, folder=folder).get_database("shared").jira_issues
    assert [d["issue_id"] for d in reader.find({"issue_id": "1"})] == ["1"]
    collection.insert_one({"connection_id": "c1", "issue_id": "2", "updated": T0})
    collection.update_one({"issue_id": "1"}, {"$set": {"issue_id": "1b"}})
    assert [d["issue_id"] for d in reader.find({"issue_id": {"$in": ["1", "1b", "2"]}})] == [
        "1b", "2",
    ]
    writer.close()


def _insert_range(folder: str, start: int) -> None:
    collection = get_mongo_client(None, folder=folder).get_database("shared").jira_issues
    for n in range(start, start + 40):
        collection.insert_one({"connection_id": "c1", "issue_id": str(n), "updated": T0})


def test_writes_from_other_processes_are_indexed(tmp_path: Path) -> None:
    folder = tmp_path / "mongo"
    client = get_mongo_client(None, folder=folder)
    ensure_indexes(client.get_database("shared"), ["jira_issues"])
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_insert_range, args=(str(folder), s)) for s in (0, 40)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    collection = client.get_database("shared").jira_issues
    for n in (0, 39, 40, 79):
        assert [d["issue_id"] for d in collection.find({"issue_id": str(n)})] == [str(n)]
    assert collection.count_documents({"issue_id": {"$nin": [str(n) for n in range(79)]}}) == 1
    client.close()


def test_renaming_a_collection_keeps_its_documents_findable(issues: Any) -> None:
    issues.rename("renamed")
    renamed = issues.database.renamed
    assert [d["issue_id"] for d in renamed.find({"issue_id": "10005"})] == ["10005"]
    assert list(issues.find({"issue_id": "10005"})) == []


def _sqlite_steps_inserting(collection: Any, first: int, count: int) -> int:
    """SQLite virtual-machine steps (in thousands) spent inserting `count` new issues in one
    bulk write: a measure of work that, unlike a clock, does not depend on the machine's load."""
    from pymongo import InsertOne

    steps = 0

    def tick() -> int:
        nonlocal steps
        steps += 1
        return 0

    connection = _store(collection)._connection
    connection.set_progress_handler(tick, 1000)
    try:
        collection.bulk_write([
            InsertOne({"_id": f"doc-{n}", "connection_id": "c1", "issue_id": str(n),
                       "key": f"P-{n}", "project_key": "P", "updated": T0})
            for n in range(first, first + count)
        ])
    finally:
        connection.set_progress_handler(None, 1000)
    return steps


def test_checking_a_batch_against_the_unique_index_costs_the_same_at_any_size(
    tmp_path: Path,
) -> None:
    # The unique check of a batch searches the index for each of its keys. Left to SQLite's
    # planner, it scanned every stored key of one field instead, so writing N issues in small
    # batches cost N^2 (the full sync's superlinear insert time).
    client = get_mongo_client(None, folder=tmp_path / "mongo")
    collection = client.get_database("sizes").jira_issues
    ensure_indexes(client.get_database("sizes"), ["jira_issues"])
    small = _sqlite_steps_inserting(collection, 0, 8)
    for start in range(8, 6_000, 1_000):
        _sqlite_steps_inserting(collection, start, 1_000)
    large = _sqlite_steps_inserting(collection, 100_000, 8)
    assert collection.count_documents({}) == 8 + 6 * 1_000 + 8
    assert collection.count_documents({"issue_id": {"$in": ["0", "100007"]}}) == 2
    # Same batch, ~750 times the stored issues: at most a few times the work (B-tree depth).
    assert large <= 3 * max(small, 1) + 5, (small, large)
    client.close()


def test_the_quick_filter_answers_as_mongomock_or_leaves_the_document_to_it() -> None:
    early, late = datetime(2026, 1, 5, 9), datetime(2026, 1, 6, 9)
    values: list[Any] = [
        None, "a", "b", "", True, False, 0, 1, 1.5, early, late,
        ["a"], ["a", "b"], [True], [], {}, {"a": 1}, [early], uuid.UUID(int=1),
    ]
    documents: list[dict[str, Any]] = [{}] + [{"f": value} for value in values]
    filters: list[dict[str, Any]] = [
        {"f": "a"}, {"f": {"$eq": "a"}}, {"f": ""}, {"f": {"$in": ["a", "x"]}}, {"f": {"$in": []}},
        {"f": {"$ne": True}}, {"f": {"$ne": False}},
        {"f": True}, {"f": False}, {"f": {"$eq": True}}, {"f": True, "g": "a"},
        {"f": {"$gte": early, "$lt": late}}, {"f": {"$gt": early}}, {"f": {"$lte": early}},
        {"f": "a", "g": {"$ne": True}},
        {"$or": [{"f": "a"}, {"f": {"$gte": late}}]},
        {"f": None}, {"$or": [{"f": {"$lte": early}}, {"f": None}]},
        {"f": {"$ne": True}, "$or": [{"f": "b"}, {"f": {"$lt": late}}]},
    ]
    for filter in filters:
        quick = quick_filter(filter)
        assert quick is not None, filter
        for document in documents:
            expected = filter_applies(filter, document)
            verdict = quick(document)
            assert verdict in (None, expected), (filter, document)
            assert _matcher(filter)(document) == expected, (filter, document)
            # What the scans meet (a string, a bool, a date, null, nothing) is decided here.
            if type(document.get("f")) in (str, bool, datetime, type(None)):
                assert verdict is not None, (filter, document)
    # Other forms are left to mongomock whole.
    for filter in ({"f": 1}, {"f": {"$exists": True}}, {"f.g": "a"}, {"$and": [{"f": "a"}]},
                   {"f": {"$in": ["a", 1]}}, {"f": {"$ne": "a"}}, {"f": {"$gt": 1}}):
        assert quick_filter(filter) is None, filter


def test_scans_with_quick_filters_return_what_mongomock_matches(tmp_path: Path) -> None:
    db = get_mongo_client(folder=tmp_path / "mongo").get_database("jira")
    collection = db["things"]
    day = datetime(2026, 1, 5, tzinfo=UTC)
    collection.insert_many([
        {"_id": n, "c": "conn" if n % 3 else "other", "gone": [None, True, False, [True]][n % 4],
         "at": day + timedelta(hours=n), "tags": ["x", "y"][: n % 3]}
        for n in range(40)
    ])
    selector = {"c": "conn", "gone": {"$ne": True}, "at": {"$gte": day + timedelta(hours=5)},
                "$or": [{"tags": "x"}, {"c": {"$in": ["conn"]}}]}
    everything = list(collection.find({}))
    expected = sorted(doc["_id"] for doc in everything if filter_applies(selector, doc))

    found = sorted(doc["_id"] for doc in collection.find(selector, {"c": 1}))

    assert found == expected and 0 < len(found) < 40
    assert collection.count_documents(selector) == len(expected)


class WholeDecodes:
    """Counts the store's whole-document decodes until the monkeypatch is undone."""

    def __init__(self, store: IndexedCollectionStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        decode = store._documents._decode_doc

        def decoding(encoded: bytes) -> dict[str, Any]:
            self.count += 1
            return decode(encoded)

        monkeypatch.setattr(store._documents, "_decode_doc", decoding)


# Documents for dotted projections: what MongoDB returns for each, by its inclusion rules (a
# path's end keeps its value whole; through an array each document is projected, other
# elements dropped; a path that meets a scalar keeps nothing of it, its parents stay as `{}`).
PATH_PROJECTION = {"raw.fields.priority.id": 1, "raw.fields.fixVersions.id": 1,
                   "raw.fields.sprint": 1, "connection_id": 1, "_id": 0}
PATH_CASES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"_id": 1, "connection_id": "c1", "raw": {"key": "P-1", "fields": {
        "summary": "s", "priority": {"id": "3", "name": "High"},
        "fixVersions": [{"id": "10", "name": "v1"}, {"id": "11"}, {"name": "no id"}],
        "sprint": [{"id": 7, "startDate": T0}], "description": {"type": "doc"}}}},
     {"connection_id": "c1", "raw": {"fields": {
         "priority": {"id": "3"}, "fixVersions": [{"id": "10"}, {"id": "11"}, {}],
         "sprint": [{"id": 7, "startDate": T0}]}}}),
    ({"_id": 2, "connection_id": "c1", "raw": {"fields": {"priority": None, "fixVersions": [],
                                                           "sprint": None}}},
     {"connection_id": "c1", "raw": {"fields": {"fixVersions": [], "sprint": None}}}),
    ({"_id": 3, "connection_id": "c2", "raw": None}, {"connection_id": "c2"}),
    ({"_id": 4}, {}),
    ({"_id": 5, "raw": {"fields": {"fixVersions": [{"id": "1"}, 5, "x", [{"id": "2"}, 6]]}}},
     {"raw": {"fields": {"fixVersions": [{"id": "1"}, [{"id": "2"}]]}}}),
    ({"_id": 6, "raw": {"fields": [{"priority": {"id": "7"}}, {"other": 1}]}},
     {"raw": {"fields": [{"priority": {"id": "7"}}, {}]}}),
]


def test_dotted_projections_are_cut_from_the_stored_bytes_as_mongodb_projects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = get_mongo_client(None, folder=tmp_path / "mongo")
    collection = client.get_database("paths").jira_issues
    collection.insert_many([document for document, _ in PATH_CASES])
    decodes = WholeDecodes(_store(collection), monkeypatch)
    try:
        assert list(collection.find({}, PATH_PROJECTION)) == [
            expected for _, expected in PATH_CASES]
        # Nothing is decoded whole, and a top-level filter still narrows the documents.
        assert decodes.count == 0
        kept = list(collection.find({"connection_id": "c1"}, {"raw.fields.priority.id": 1}))
        assert kept == [{"raw": {"fields": {"priority": {"id": "3"}}}, "_id": 1},
                        {"raw": {"fields": {}}, "_id": 2}]
        assert decodes.count == 0
        # mongomock's own answer, for the documents whose shapes it projects correctly.
        monkeypatch.undo()
        answers = list(collection.find({"_id": 1}, {"raw.fields.priority.id": 1,
                                                    "raw.fields.fixVersions.id": 1}))
        mongomock_answers = mongomock_collection.Collection._get_dataset(
            collection, {"_id": 1}, None,
            {"raw.fields.priority.id": 1, "raw.fields.fixVersions.id": 1}, dict)
        assert answers == list(mongomock_answers)
        # What the path walk does not serve goes to mongomock: a path colliding with its
        # prefix is refused as MongoDB refuses it, a sort takes mongomock's path.
        with pytest.raises(Exception, match=r"[Cc]ollision"):
            list(collection.find({}, {"raw.fields": 1, "raw.fields.priority": 1}))
        assert [d["_id"] for d in collection.find({}, {"raw.fields.priority.id": 1})
                .sort("_id", -1)] == [6, 5, 4, 3, 2, 1]
    finally:
        client.close()


def test_the_path_projection_tree_refuses_what_it_cannot_serve() -> None:
    assert included_paths({"a.b": 1, "a.c.d": True, "_id": 0}) == ProjectedPaths(
        {"a": {"b": None, "c": {"d": None}}}, keep_id=False)
    assert included_paths(["x", "y.z"]) == ProjectedPaths({"x": None, "y": {"z": None}}, True)
    assert included_paths({"_id": 1}) == ProjectedPaths({}, keep_id=True)
    # `{"_id": 0}` alone is an exclusion (every other field), not an empty inclusion.
    for refused in ({}, None, {"a": 0}, {"a.b": 1, "a": 1}, {"a": 1, "a.b": 1}, {"_id": 0},
                    {"a.$": 1}, {"a.0.b": 1}, {"a": {"$slice": 1}}, {"a..b": 1}):
        assert included_paths(refused) is None, refused


SORTS = [[("updated", -1)], [("issue_id", 1)], [("connection_id", 1), ("updated", -1)],
         [("key", -1), ("_id", 1)], [("raw", 1)]]


@pytest.mark.parametrize("sort", SORTS, ids=[str(s) for s in SORTS])
def test_sorted_finds_of_top_level_fields_answer_as_mongomock(
    issues: Any, monkeypatch: pytest.MonkeyPatch, sort: list[tuple[str, int]]
) -> None:
    for filter in ({}, {"connection_id": "c1"}, {"is_deleted": {"$ne": True}}):
        for projection in ({"updated": 1, "_id": 0}, {"issue_id": 1, "key": 1}):
            expected = _mongomock_answer(issues, filter, sort, projection)
            decodes = WholeDecodes(_store(issues), monkeypatch)
            found = list(issues.find(filter, projection, sort=sort))
            monkeypatch.undo()
            assert found == expected, (filter, projection)
            # Only a document whose read fields hold a document is decoded whole.
            read = {*projection, *(key for key, _ in sort)} - {"_id"}
            assert decodes.count == sum(
                1 for document in _documents() if filter_applies(filter, document)
                and any(isinstance(document.get(name), dict) for name in read)
            ), (filter, projection)
    newest = issues.find_one({"connection_id": "c1"}, {"updated": 1, "_id": 0},
                             sort=[("updated", -1)])
    assert newest == expected_newest(issues)


def expected_newest(issues: Any) -> Any:
    return _mongomock_answer(issues, {"connection_id": "c1"}, [("updated", -1)],
                             {"updated": 1, "_id": 0})[0]


def _mongomock_answer(issues: Any, filter: Any, sort: Any, projection: Any) -> list[Any]:
    """mongomock's own sorted find, its datetimes made aware as its cursor makes them."""
    return [make_datetime_timezone_aware_in_document(document) for document in
            mongomock_collection.Collection._get_dataset(issues, filter, sort, projection, dict)]


# -- cursors stream ---------------------------------------------------------------------------


def _many(collection: Any, count: int) -> None:
    collection.insert_many([
        {"_id": f"d{n:05}", "connection_id": "c1" if n % 2 else "c2", "issue_id": f"i{n}", "n": n,
         "updated": T0 + timedelta(minutes=n), "raw": {"fields": {"summary": f"issue {n}"}}}
        for n in range(count)
    ])


def _count_pulls(collection: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A one-item list counting the documents the cursors pull from the collection's dataset."""
    pulled = [0]
    dataset = collection._get_dataset

    def counting(*args: Any) -> Iterator[Any]:
        for document in dataset(*args):
            pulled[0] += 1
            yield document

    monkeypatch.setattr(collection, "_get_dataset", counting)
    return pulled


@pytest.mark.parametrize(
    ("filter", "projection"),
    [
        ({}, None),  # a full scan, decoded whole
        ({"connection_id": "c1"}, None),  # planned by the index
        ({"connection_id": "c1"}, {"n": 1, "_id": 0}),  # projected top level
        ({"raw.fields.summary": {"$ne": None}}, None),  # mongomock's own matching
    ],
)
def test_a_find_streams_its_answer_instead_of_listing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filter: dict[str, Any], projection: Any
) -> None:
    collection = get_mongo_client(None, folder=tmp_path / "mongo").get_database("s").issues
    _many(collection, 1_500)
    expected_first = collection.find_one(filter, projection)
    pulled = _count_pulls(collection, monkeypatch)
    cursor = collection.find(filter, projection)
    first = next(cursor)
    # mongomock's cursor listed every match (1,500 or 750) before returning the first.
    assert pulled[0] == 1
    assert first == expected_first
    rest = list(cursor)
    assert pulled[0] == 1 + len(rest)
    assert len(rest) + 1 == (1_500 if "connection_id" not in filter else 750)
    if projection is None:
        assert rest[-1]["updated"].tzinfo is not None  # tz-aware, as the client's codec says


def _recipes() -> dict[str, Any]:
    """Ways to use a cursor, each returning what it observed (documents' `n`, flags)."""

    def ns(documents: Any) -> list[Any]:
        return [d["n"] for d in documents]

    def nexts(cursor: Any, count: int) -> list[Any]:
        return [next(cursor)["n"] for _ in range(count)]

    def hint_after_next(cursor: Any) -> Any:
        next(cursor)
        try:
            cursor.hint("n")
        except Exception as exc:  # the exception's type is the observation
            return type(exc).__name__
        return "no error"

    def closed_in_with(cursor: Any) -> Any:
        with cursor as inside:
            seen = nexts(inside, 2)
        return seen, ns(cursor)  # mongomock's close ends nothing: iteration goes on

    def rewound(cursor: Any) -> Any:
        seen = nexts(cursor, 3)
        cursor.rewind()  # pymongo returns the cursor, mongomock None
        everything = ns(cursor)
        cursor.rewind()
        return seen, everything, nexts(cursor, 2)

    def cloned(cursor: Any) -> Any:
        seen = nexts(cursor.skip(3).limit(5), 2)
        return seen, ns(cursor.clone()), ns(cursor)

    return {
        "plain": lambda c: ns(c),
        "sort": lambda c: ns(c.sort("n", -1)),
        "skip": lambda c: ns(c.skip(7)),
        "limit": lambda c: ns(c.limit(4)),
        "negative limit": lambda c: ns(c.limit(-4)),
        "skip and limit": lambda c: ns(c.sort("updated", -1).skip(2).limit(3)),
        "slice": lambda c: ns(c[2:5]),
        "open slice": lambda c: ns(c[38:]),
        "index": lambda c: (c[3]["n"], nexts(c, 2)),
        "alive": lambda c: (c.alive, nexts(c, 39), c.alive, nexts(c, 1), c.alive, ns(c),
                            c.alive),
        "alive with limit": lambda c: (c.limit(2).alive, ns(c), c.alive),
        "alive with skip": lambda c: (nexts(c.skip(35), 2), c.alive, ns(c), c.alive),
        "next then list": lambda c: (nexts(c, 3), ns(c), ns(c)),
        "rewind": rewound,
        "limit changed midway": lambda c: (nexts(c, 2), ns(c.limit(5))),
        "sort changed midway": lambda c: (nexts(c, 2), ns(c.sort("n", -1))),
        "clone": cloned,
        "distinct": lambda c: sorted(c.distinct("connection_id")),
        "with": closed_in_with,
        "batch size": lambda c: ns(c.batch_size(3)),
        "hint after next": hint_after_next,
        "collection": lambda c: c.collection.name,
        "empty": lambda c: (ns(c.skip(100)), c.alive),
    }


@pytest.mark.parametrize("recipe", list(_recipes()))
def test_cursor_options_give_mongomock_cursors_answers(tmp_path: Path, recipe: str) -> None:
    collection = get_mongo_client(None, folder=tmp_path / "mongo").get_database("s").issues
    _many(collection, 40)
    use = _recipes()[recipe]
    ours = collection.find({}, {"raw": 0})
    assert type(ours).__name__ == "EmbeddedCursor"
    theirs = mongomock_collection.Cursor(collection, {}, None, {"raw": 0})
    assert use(ours) == use(theirs)


def test_to_list_reads_what_is_left(tmp_path: Path) -> None:
    collection = get_mongo_client(None, folder=tmp_path / "mongo").get_database("s").issues
    _many(collection, 10)
    cursor = collection.find({}, {"n": 1, "_id": 0}).sort("n", 1)
    next(cursor)
    assert cursor.to_list(3) == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert cursor.to_list() == [{"n": n} for n in range(4, 10)]
    assert cursor.to_list() == []
    with pytest.raises(ValueError, match="greater than 0"):
        cursor.to_list(0)


def _write_while_iterating(collection: Any, other: Any, folder: str) -> list[Any]:
    seen = []
    for position, doc in enumerate(collection.find({}, {"n": 1})):
        seen.append(doc["_id"])
        collection.update_one({"_id": doc["_id"]}, {"$set": {"seen": True}})
        if position == 10:
            # Another connection commits while ours streams, then ours writes: one open SELECT
            # kept a stale snapshot, and this connection's next write failed at once with
            # "database is locked".
            other.insert_one({"_id": "other", "issue_id": "other", "n": -1})
        if position == 600:
            worker = multiprocessing.get_context("spawn").Process(
                target=_insert_range, args=(folder, 1_000)
            )
            worker.start()
            worker.join(120)
            assert worker.exitcode == 0
        if position % 100 == 0 and position < 1_200:
            collection.insert_one({"_id": f"new{position}", "issue_id": f"new{position}"})
    return seen


def test_writing_to_a_collection_while_a_cursor_streams_it_is_safe(tmp_path: Path) -> None:
    folder = tmp_path / "mongo"
    db = get_mongo_client(None, folder=folder).get_database("shared")
    ensure_indexes(db, ["jira_issues"])
    collection = db.jira_issues
    _many(collection, 1_200)
    other = get_mongo_client(None, folder=folder).get_database("shared").jira_issues
    seen = _write_while_iterating(collection, other, str(folder))
    assert len(seen) == len(set(seen))  # no document twice
    assert {f"d{n:05}" for n in range(1_200)} <= set(seen)  # none left out
    # Every write landed: the updates of every document seen, the inserts of both sides.
    assert collection.count_documents({"seen": True}) == len(seen)
    assert collection.count_documents({"_id": {"$regex": "^new"}}) == 12
    from_the_process = [str(n) for n in range(1_000, 1_040)]
    assert collection.count_documents({"issue_id": {"$in": from_the_process}}) == 40
    assert other.find_one({"_id": "other"}, {"n": 1}) == {"_id": "other", "n": -1}


def test_a_find_of_the_ids_alone_decodes_no_document_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`{"_id": 1}` (a dead letter's or a connection's existence, say) was mongomock's path:
    every match decoded whole, raw and all, 3.5x a projected pass over the same issues."""
    collection = get_mongo_client(None, folder=tmp_path / "mongo").get_database("s").issues
    _many(collection, 300)
    expected = [document["_id"] for document in collection.find({"connection_id": "c2"})]
    mongomock_answer = list(mongomock_collection.Collection._get_dataset(
        collection, {"connection_id": "c2"}, None, {"_id": 1}, dict))
    decodes = WholeDecodes(_store(collection), monkeypatch)
    found = list(collection.find({"connection_id": "c2"}, {"_id": 1}))
    assert found == mongomock_answer == [{"_id": _id} for _id in expected]
    assert decodes.count == 0
    # An exclusion of `_id` alone still keeps every other field (mongomock's path).
    monkeypatch.undo()
    whole = collection.find_one({"connection_id": "c2"}, {"_id": 0})
    assert whole is not None and "_id" not in whole and "raw" in whole


def test_a_sorted_projected_find_decodes_only_top_levels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collection = get_mongo_client(None, folder=tmp_path / "mongo").get_database("s").issues
    _many(collection, 300)
    expected = [{"n": n} for n in range(298, -1, -2)]  # mongomock's answer: c2 is even n
    decodes = WholeDecodes(_store(collection), monkeypatch)
    found = list(collection.find({"connection_id": "c2"}, {"n": 1, "_id": 0}).sort("updated", -1))
    assert found == expected
    assert decodes.count == 0  # raw (a nested document) never decoded: top levels were sorted
    newest = collection.find_one({"connection_id": "c2"}, {"updated": 1, "_id": 0},
                                 sort=[("updated", -1), ("n", 1)])
    assert newest == {"updated": T0 + timedelta(minutes=298)}
    # A sort on a nested field still takes mongomock's path, and gives its answer.
    nested = collection.find({"connection_id": "c2"}, {"n": 1, "_id": 0}).sort(
        "raw.fields.summary", 1).limit(2)
    assert list(nested) == [{"n": 0}, {"n": 10}]


def test_when_every_condition_is_large_the_broadest_is_left_to_the_matcher(
    tmp_path: Path,
) -> None:
    """A connection's field-history rows of 200 issues: every condition selects over a
    thousand rows, `connection_id` all 21,000. The plan intersects the others (within the wide
    count) and leaves `connection_id` out (intersecting it reads the whole collection); the
    answer is mongomock's, each document once, arrays holding several listed keys included."""
    client = get_mongo_client(None, folder=tmp_path / "mongo")
    collection = client.get_database("plans").rows
    for path in ("connection_id", "issue_id", "is_current", "field_id"):
        collection.create_index([(path, ASCENDING)])
    fields = ["status", "assignee", "priority", "labels", "summary"]
    docs: list[dict[str, Any]] = [
        {"_id": n, "connection_id": "c1", "issue_id": str(n // 7),
         "is_current": n % 2 == 0, "field_id": fields[n % len(fields)]}
        for n in range(21_000)
    ]
    # Documents a listed key selects twice (an array holding two of them), or under no key.
    docs += [{"_id": -1, "connection_id": "c1", "issue_id": ["3", "4"], "is_current": True,
              "field_id": "status"},
             {"_id": -2, "connection_id": "c1", "issue_id": [], "is_current": True,
              "field_id": "status"}]
    collection.insert_many(docs)
    ids = [str(n) for n in range(200)]
    selector = {"connection_id": "c1", "issue_id": {"$in": ids}, "is_current": True,
                "field_id": {"$in": ["status", "assignee", "priority"]}}

    plan = _store(collection).plan(selector)
    found = [doc["_id"] for doc in collection.find(selector)]

    paths = _store(collection)._index_declared_paths()
    assert plan is not None and plan.sql.count("INTERSECT") == 2
    assert paths["connection_id"] not in plan.params
    assert {paths[name] for name in ("issue_id", "is_current", "field_id")} <= set(plan.params)
    expected = [doc["_id"] for doc in docs if filter_applies(selector, doc)]
    assert sorted(found) == sorted(expected) and len(found) == len(set(found))
    assert -1 in found and 400 < len(found) < 1_000
    client.close()
