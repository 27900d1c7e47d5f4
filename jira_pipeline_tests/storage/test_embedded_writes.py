"""The embedded store's own write paths (one BSON encoding per document, unique keys checked
through the query index) answer as mongomock's did: what is stored, what is refused, what a
later query finds."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bson.errors import InvalidDocument
from pymongo import ASCENDING, InsertOne, ReplaceOne, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from jira_pipeline.storage.client import get_mongo_client

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
ID_A, ID_B, ID_C = (uuid.UUID(int=n) for n in (1, 2, 3))


@pytest.fixture
def issues(tmp_path: Path) -> Iterator[Collection]:
    client = get_mongo_client(None, folder=tmp_path / "mongo")
    collection = client.get_database("jira")["jira_issues"]
    collection.create_index([("connection_id", ASCENDING), ("issue_id", ASCENDING)], unique=True)
    collection.create_index([("updated", ASCENDING)])
    collection.create_index([("key", ASCENDING)])
    yield collection
    client.close()


def doc(_id: uuid.UUID, issue_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "_id": _id, "connection_id": "c1", "issue_id": issue_id, "key": f"P-{issue_id}",
        "updated": T0, "raw": {"fields": {"comment": {"comments": [{"body": "x" * 100}]}}},
        **fields,
    }


def test_a_second_document_with_a_stored_unique_key_is_refused_and_not_stored(
    issues: Collection,
) -> None:
    issues.insert_one(doc(ID_A, "1"))
    with pytest.raises(DuplicateKeyError):
        issues.insert_one(doc(ID_B, "1"))
    assert [d["_id"] for d in issues.find({"issue_id": "1"})] == [ID_A]
    assert issues.find_one({"_id": ID_B}) is None


def test_a_bulk_insert_stores_every_document_but_the_duplicate(issues: Collection) -> None:
    with pytest.raises(BulkWriteError) as raised:
        issues.bulk_write(
            [InsertOne(doc(ID_A, "1")), InsertOne(doc(ID_B, "1")), InsertOne(doc(ID_C, "3"))],
            ordered=False,
        )
    assert raised.value.details["nInserted"] == 2
    assert [e["index"] for e in raised.value.details["writeErrors"]] == [1]
    assert sorted(d["issue_id"] for d in issues.find({}, {"issue_id": 1})) == ["1", "3"]


def test_an_inserted_document_reads_back_with_millisecond_utc_datetimes_found_by_range(
    issues: Collection,
) -> None:
    issues.insert_one(doc(ID_A, "1", nested={"at": T0}))
    second = timedelta(seconds=1)
    stored = issues.find_one({"updated": {"$gte": T0 - second, "$lt": T0 + second}})
    assert stored is not None
    assert stored["updated"] == T0.replace(microsecond=123000)
    assert stored["updated"].utcoffset() == timedelta(0)
    assert stored["nested"]["at"] == T0.replace(microsecond=123000)
    assert stored["raw"] == doc(ID_A, "1")["raw"]


def test_a_field_name_with_a_nul_character_is_refused_at_any_depth(issues: Collection) -> None:
    with pytest.raises(InvalidDocument):
        issues.insert_one(doc(ID_A, "1", raw={"fields": {"bad\0name": 1}}))
    with pytest.raises(InvalidDocument):
        issues.insert_one({**doc(ID_B, "2"), "$set": 1})
    assert issues.count_documents({}) == 0


def test_a_replacement_that_would_duplicate_a_unique_key_leaves_the_stored_document(
    issues: Collection,
) -> None:
    issues.insert_many([doc(ID_A, "1"), doc(ID_B, "2")])
    with pytest.raises(DuplicateKeyError):
        issues.replace_one({"_id": ID_B}, doc(ID_B, "1", key="MOVED"))
    assert issues.find_one({"_id": ID_B}, {"issue_id": 1, "key": 1}) == {
        "_id": ID_B, "issue_id": "2", "key": "P-2"
    }
    assert issues.count_documents({"key": "MOVED"}) == 0
    assert [d["_id"] for d in issues.find({"key": "P-2"})] == [ID_B]


def test_a_replacement_is_found_by_its_new_keys_and_not_its_old_ones(issues: Collection) -> None:
    issues.insert_one(doc(ID_A, "1"))
    later = T0 + timedelta(days=2)
    result = issues.replace_one({"_id": ID_A, "updated": {"$lte": later}},
                                doc(ID_A, "1", key="NEW-1", updated=later))
    assert (result.matched_count, result.modified_count) == (1, 1)
    assert issues.count_documents({"key": "P-1"}) == 0
    assert [d["key"] for d in issues.find({"updated": {"$gte": later}})] == ["NEW-1"]


def test_a_guarded_replacement_of_a_newer_document_matches_nothing(issues: Collection) -> None:
    issues.insert_one(doc(ID_A, "1", updated=T0 + timedelta(days=1)))
    guard = {"_id": ID_A, "$or": [{"updated": {"$lte": T0}}, {"updated": None}]}
    result = issues.bulk_write([ReplaceOne(guard, doc(ID_A, "1", key="OLD"))], ordered=False)
    assert (result.matched_count, result.modified_count) == (0, 0)
    assert issues.find_one({"_id": ID_A}, {"key": 1}) == {"_id": ID_A, "key": "P-1"}


def test_a_replacement_cannot_change_the_id(issues: Collection) -> None:
    issues.insert_one(doc(ID_A, "1"))
    with pytest.raises(OperationFailure):
        issues.replace_one({"_id": ID_A}, doc(ID_B, "1"))
    assert issues.find_one({"_id": ID_B}) is None


def test_set_counts_a_document_modified_only_when_a_value_changes(issues: Collection) -> None:
    issues.insert_one(doc(ID_A, "1", synced_at=T0))
    same = issues.bulk_write([UpdateOne({"_id": ID_A}, {"$set": {"synced_at": T0}})])
    later = T0 + timedelta(hours=1)
    moved = issues.bulk_write([UpdateOne({"_id": ID_A}, {"$set": {"synced_at": later,
                                                                  "key": "P-9"}})])
    assert (same.matched_count, same.modified_count) == (1, 0)
    assert (moved.matched_count, moved.modified_count) == (1, 1)
    stored = issues.find_one({"key": "P-9"})
    assert stored is not None
    assert stored["synced_at"] == later.replace(microsecond=123000)
    assert stored["raw"] == doc(ID_A, "1")["raw"]
    assert issues.count_documents({"key": "P-1"}) == 0


def test_set_of_a_missing_document_matches_nothing(issues: Collection) -> None:
    result = issues.update_one({"_id": ID_A}, {"$set": {"key": "P-1"}})
    assert (result.matched_count, result.modified_count) == (0, 0)
    assert issues.count_documents({}) == 0


def test_a_batch_of_new_documents_is_found_by_every_index_and_guards_its_unique_keys(
    issues: Collection,
) -> None:
    batch = [doc(uuid.UUID(int=10 + n), str(n), updated=T0 + timedelta(hours=n))
             for n in range(5)]
    result = issues.bulk_write([InsertOne(d) for d in batch], ordered=False)
    assert result.inserted_count == 5
    assert [d["issue_id"] for d in issues.find({"key": "P-3"})] == ["3"]
    window = {"updated": {"$gte": T0 + timedelta(hours=1), "$lt": T0 + timedelta(hours=3)}}
    assert sorted(d["issue_id"] for d in issues.find(window)) == ["1", "2"]
    with pytest.raises(DuplicateKeyError):
        issues.insert_one(doc(ID_A, "4"))
    assert issues.count_documents({"issue_id": "4"}) == 1


def test_a_batch_clashing_with_a_stored_document_stores_all_but_the_clash(
    issues: Collection,
) -> None:
    issues.insert_one(doc(ID_A, "1"))
    with pytest.raises(BulkWriteError) as raised:
        issues.bulk_write(
            [InsertOne(doc(ID_B, "2")), InsertOne(doc(ID_C, "1")),
             InsertOne(doc(uuid.UUID(int=4), "4"))],
            ordered=False,
        )
    assert raised.value.details["nInserted"] == 2
    assert [e["index"] for e in raised.value.details["writeErrors"]] == [1]
    assert sorted(d["issue_id"] for d in issues.find({}, {"issue_id": 1})) == ["1", "2", "4"]
    assert issues.find_one({"_id": ID_C}) is None


def test_a_batch_repeating_an_id_or_holding_a_taken_id_stores_each_id_once(
    issues: Collection,
) -> None:
    issues.insert_one(doc(ID_A, "1"))
    with pytest.raises(BulkWriteError) as raised:
        issues.bulk_write(
            [InsertOne(doc(ID_B, "2")), InsertOne(doc(ID_B, "3")), InsertOne(doc(ID_A, "4"))],
            ordered=False,
        )
    assert [e["index"] for e in raised.value.details["writeErrors"]] == [1, 2]
    assert sorted(d["issue_id"] for d in issues.find({}, {"issue_id": 1})) == ["1", "2"]


def test_a_projection_of_top_level_fields_returns_those_fields_and_copies(
    issues: Collection,
) -> None:
    issues.insert_one(doc(ID_A, "1", labels=["a", "b"]))
    found = issues.find_one({"issue_id": "1"}, {"labels": 1, "updated": 1})
    assert found == {"_id": ID_A, "labels": ["a", "b"], "updated": T0.replace(microsecond=123000)}
    assert found["updated"].utcoffset() == timedelta(0)
    found["labels"].append("c")
    assert issues.find_one({"issue_id": "1"}, {"labels": 1, "_id": 0}) == {"labels": ["a", "b"]}
    assert list(issues.find({"key": "P-1"}, ["key"])) == [{"_id": ID_A, "key": "P-1"}]


def test_a_batch_of_another_connection_with_the_same_jira_ids_is_stored_beside_it(
    issues: Collection,
) -> None:
    issues.bulk_write([InsertOne(doc(uuid.UUID(int=10 + n), str(n))) for n in range(3)])
    other = [{**doc(uuid.UUID(int=20 + n), str(n)), "connection_id": "c2"} for n in range(3)]
    assert issues.bulk_write([InsertOne(d) for d in other]).inserted_count == 3
    assert issues.count_documents({"issue_id": "1"}) == 2
    with pytest.raises(BulkWriteError) as raised:
        issues.bulk_write([InsertOne({**doc(ID_A, "2"), "connection_id": "c2"}),
                           InsertOne({**doc(ID_B, "7"), "connection_id": "c2"})], ordered=False)
    assert [e["index"] for e in raised.value.details["writeErrors"]] == [0]
    assert issues.count_documents({"connection_id": "c2"}) == 4
