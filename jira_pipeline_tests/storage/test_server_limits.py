"""What a real MongoDB enforces and the embedded store does not: 16 MiB documents, short write
errors, and indexes compared by keys and options (on both stores when MONGODB_TEST_URI is set)."""

from __future__ import annotations

from typing import Any

import bson
import pytest
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions
from pymongo import ASCENDING
from pymongo.errors import BulkWriteError

from jira_pipeline.storage.document_size import MAX_DOCUMENT_BYTES
from jira_pipeline.storage.entities import document_id
from jira_pipeline.storage.indexes import INDEXES, IndexConflictError, ensure_indexes
from jira_pipeline.storage.sync_errors import SyncError
from jira_pipeline.storage.upserts import upsert_records
from jira_pipeline_tests.storage.conftest import Store, issue

MIB = 1024 * 1024
CODEC: CodecOptions[Any] = CodecOptions(uuid_representation=UuidRepresentation.STANDARD)


def bson_size(document: dict) -> int:
    return len(bson.encode(document, codec_options=CODEC))


def oversized_issue(issue_id: int) -> dict:
    """An issue whose raw JSON is about 19 MiB: a 9 MiB description and 9.8 MiB of comments."""
    record = issue(issue_id)
    record["raw"]["fields"].update(
        {
            "description": "d" * (9 * MIB),
            "comment": {"total": 100, "comments": [{"id": str(n), "body": "c" * (100 * 1024)}
                                                   for n in range(100)]},
            "labels": ["kept"],
        }
    )
    return record


def test_an_oversized_issue_is_trimmed_under_16_mib(store: Store) -> None:
    ensure_indexes(store.db)
    big = oversized_issue(1)

    counts = upsert_records(store.db, "issues", [big, issue(2)])

    assert (counts.inserted, counts.dead_lettered, counts.raw_truncated) == (2, 0, 1)
    doc = store.db.jira_issues.find_one({"_id": document_id("conn-1", "issues", "1")})
    assert doc is not None
    assert bson_size(doc) <= MAX_DOCUMENT_BYTES
    assert doc["raw_truncated"] is True
    # The largest part went first; what was left fits, so the rest of raw is kept.
    assert doc["raw_truncated_paths"] == ["fields.comment.comments"]
    assert doc["raw"]["fields"]["description"] == "d" * (9 * MIB)
    assert doc["raw"]["fields"]["comment"]["total"] == 100
    assert doc["raw"]["fields"]["labels"] == ["kept"] and doc["key"] == "ACME-1"
    # The caller's JSON is untouched, and a document that fits is not marked.
    assert len(big["raw"]["fields"]["comment"]["comments"]) == 100
    small = store.db.jira_issues.find_one({"_id": document_id("conn-1", "issues", "2")})
    assert small is not None and "raw_truncated" not in small


def test_an_issue_over_16_mib_in_one_text_field_loses_that_field(store: Store) -> None:
    record = issue(3)
    record["raw"]["fields"]["description"] = "d" * (17 * MIB)
    record["raw"]["renderedFields"] = {"description": "<p>short</p>"}

    upsert_records(store.db, "issues", [record])

    doc = store.db.jira_issues.find_one({"_id": document_id("conn-1", "issues", "3")})
    assert doc is not None and bson_size(doc) <= MAX_DOCUMENT_BYTES
    assert doc["raw_truncated_paths"] == ["fields.description"]
    assert doc["raw"]["renderedFields"] == {"description": "<p>short</p>"}


def test_write_error_message_is_short(store: Store) -> None:
    # Key fields are never trimmed: an issue whose summary alone is over 16 MiB cannot be
    # written. The error names collection, key and size, in a few hundred characters.
    unwritable = issue(4, summary="s" * (17 * MIB))
    heard: list[SyncError] = []

    counts = upsert_records(
        store.db, "issues", [issue(5), unwritable, issue(6)], on_sync_error=heard.append
    )

    assert (counts.inserted, counts.dead_lettered) == (2, 1)
    (error,) = heard
    assert len(error.reason) <= 300
    assert "jira_issues" in error.reason and "ACME-4" in error.reason
    assert "17.0 MiB" in error.reason and "MiB" in error.reason
    (letter,) = store.db.jira_sync_errors.find({})
    assert (letter["key"], letter["jira_id"], letter["entity"]) == ("ACME-4", "4", "issues")
    assert letter["reason"] == error.reason
    assert bson_size(letter) <= MAX_DOCUMENT_BYTES  # its raw kept under the same rule
    assert letter["_id"] == document_id("conn-1", "issues", "4")


def test_a_dead_letter_is_removed_once_its_record_stores(store: Store) -> None:
    ensure_indexes(store.db)
    upsert_records(store.db, "issues", [issue(7, summary="s" * (17 * MIB))])
    first = store.db.jira_sync_errors.find_one({"jira_id": "7"})
    assert first is not None
    upsert_records(store.db, "issues", [issue(7, summary="s" * (17 * MIB))])
    again = store.db.jira_sync_errors.find_one({"jira_id": "7"})
    assert again is not None and again["first_seen"] == first["first_seen"]
    assert again["last_seen"] >= first["last_seen"]
    assert store.db.jira_sync_errors.count_documents({}) == 1

    counts = upsert_records(store.db, "issues", [issue(7, summary="fixed")])

    assert counts.inserted == 1
    assert store.db.jira_sync_errors.count_documents({}) == 0


def test_equivalent_index_under_another_name_is_adopted(store: Store) -> None:
    # Someone created our indexes by hand, under their own names.
    store.db.jira_issues.create_index([("key", ASCENDING)], name="by_issue_key")
    store.db.jira_issues.create_index(
        [("connection_id", ASCENDING), ("issue_id", ASCENDING)], name="natural_key", unique=True
    )

    ensure_indexes(store.db)
    ensure_indexes(store.db)

    indexes = store.db.jira_issues.index_information()
    assert {"by_issue_key", "natural_key"} <= set(indexes)
    assert "key" not in indexes and "connection_issue_unique" not in indexes
    on_key = [name for name, info in indexes.items() if list(info["key"]) == [("key", 1)]]
    assert on_key == ["by_issue_key"]
    # Every other index is there under our name.
    ours = {model.document["name"] for model in INDEXES["jira_issues"]}
    assert ours - {"key", "connection_issue_unique"} <= set(indexes)


def test_conflicting_index_fails_naming_both(store: Store) -> None:
    # Same keys as our unique natural key, but not unique.
    store.db.jira_issues.create_index(
        [("connection_id", ASCENDING), ("issue_id", ASCENDING)], name="legacy_issue_lookup"
    )

    with pytest.raises(IndexConflictError) as raised:
        ensure_indexes(store.db)

    message = str(raised.value)
    assert "legacy_issue_lookup" in message and "connection_issue_unique" in message
    assert "drop index 'legacy_issue_lookup'" in message
    assert "\n" not in message and len(message) < 600


def test_an_index_holding_our_name_on_other_keys_fails_naming_both(store: Store) -> None:
    store.db.jira_issues.create_index([("summary", ASCENDING)], name="key")

    with pytest.raises(IndexConflictError) as raised:
        ensure_indexes(store.db, ["jira_issues"])

    message = str(raised.value)
    assert "'key' {summary: 1}" in message and "'key' {key: 1}" in message
    assert "drop index 'key'" in message


def test_a_write_the_server_refuses_is_dead_lettered_with_a_short_message(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server's bulk-write error quotes the document it refused; the embedded store raises
    none, so the server's answer is reproduced at the pymongo edge: the other writes of the
    batch are applied and the refused one reported by index, as an unordered bulk write does."""
    if store.uri is not None:
        pytest.skip("reproduces a server's answer on the embedded store")
    collection_type = type(store.db.jira_issues)
    real_bulk_write = collection_type.bulk_write

    def refusing(self: Any, requests: list[Any], ordered: bool = True) -> Any:
        refused = [n for n, r in enumerate(requests) if r._doc.get("key") == "ACME-2"]
        if self.name != "jira_issues" or not refused:
            return real_bulk_write(self, requests, ordered=ordered)
        kept = [r for n, r in enumerate(requests) if n not in refused]
        result = real_bulk_write(self, kept, ordered=ordered)
        quoted = repr(requests[refused[0]]._doc)
        raise BulkWriteError({
            "writeErrors": [{"index": refused[0], "code": 2,
                             "errmsg": f"document is invalid: {quoted}"}],
            "nInserted": result.inserted_count, "nMatched": 0, "nModified": 0,
            "nUpserted": 0, "nRemoved": 0, "upserted": [], "writeConcernErrors": [],
        })

    monkeypatch.setattr(collection_type, "bulk_write", refusing)
    refused = issue(2, summary="x" * 100_000)
    heard: list[SyncError] = []

    counts = upsert_records(
        store.db, "issues", [issue(1), refused, issue(3)], on_sync_error=heard.append
    )

    assert (counts.inserted, counts.dead_lettered) == (2, 1)
    assert {doc["issue_id"] for doc in store.db.jira_issues.find({})} == {"1", "3"}
    (error,) = heard
    assert len(error.reason) <= 300 and "x" * 200 not in error.reason
    assert "jira_issues" in error.reason and "ACME-2" in error.reason and "bytes" in error.reason
    assert "error 2" in error.reason
    (letter,) = store.db.jira_sync_errors.find({})
    assert letter["key"] == "ACME-2" and letter["raw"] == refused["raw"]


def test_a_value_bson_cannot_hold_dead_letters_only_its_record(store: Store) -> None:
    ensure_indexes(store.db)
    unencodable = issue(2)
    unencodable["raw"]["fields"]["customfield_10050"] = 2**63 + 5  # valid JSON, not an int64
    heard: list[SyncError] = []

    counts = upsert_records(
        store.db, "issues", [issue(1), unencodable, issue(3)], on_sync_error=heard.append
    )

    assert counts.dead_lettered == 1
    assert {doc["issue_id"] for doc in store.db.jira_issues.find({})} == {"1", "3"}
    (error,) = heard
    assert "ACME-2" in error.reason and "8-byte ints" in error.reason
    (letter,) = store.db.jira_sync_errors.find({})
    # Its raw cannot be stored either: the dead letter says so instead of failing.
    assert letter["raw"] is None and letter["raw_truncated_paths"] == ["raw"]
