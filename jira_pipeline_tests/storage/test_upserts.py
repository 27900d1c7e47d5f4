"""Version-guarded upserts, indexes and deletion marks, on the embedded store and a server."""

from __future__ import annotations

import gc
import multiprocessing
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pymongo.errors import DuplicateKeyError

from jira_pipeline import heap
from jira_pipeline.jira.models import IssueRecord
from jira_pipeline.storage import upserts
from jira_pipeline.storage.client import get_mongo_client
from jira_pipeline.storage.entities import document_id
from jira_pipeline.storage.indexes import INDEXES, ensure_indexes
from jira_pipeline.storage.upserts import (
    mark_deleted_except,
    older_objects_frozen,
    upsert_records,
)
from jira_pipeline_tests.storage.conftest import T0, Store, issue


def _stored(store: Store, issue_id: str, connection_id: str = "conn-1") -> dict:
    found = store.db.jira_issues.find_one({"_id": document_id(connection_id, "issues", issue_id)})
    assert found is not None, f"issue {issue_id} is not stored"
    return found


def test_first_upsert_inserts_and_an_identical_second_upsert_changes_nothing(store: Store) -> None:
    ensure_indexes(store.db)
    records = [issue(i) for i in range(1, 6)]

    first = upsert_records(store.db, "issues", records)
    before = {doc["_id"]: doc for doc in store.db.jira_issues.find()}
    second = upsert_records(store.db, "issues", [issue(i) for i in range(1, 6)])
    after = {doc["_id"]: doc for doc in store.db.jira_issues.find()}

    assert (first.inserted, first.updated, first.unchanged, first.skipped_stale) == (5, 0, 0, 0)
    assert (second.inserted, second.updated, second.unchanged, second.skipped_stale) == (0, 0, 5, 0)
    assert before.keys() == after.keys()
    for _id, doc in after.items():
        assert {k: v for k, v in doc.items() if k != "synced_at"} == {
            k: v for k, v in before[_id].items() if k != "synced_at"
        }


def test_issue_updated_twice_in_one_batch_is_stored_once_at_its_newest_version(
    store: Store,
) -> None:
    newer = issue(7, T0 + timedelta(hours=1), summary="newer")
    older = issue(7, T0, summary="older")

    counts = upsert_records(store.db, "issues", [newer, older])

    assert store.db.jira_issues.count_documents({"issue_id": "7"}) == 1
    assert _stored(store, "7")["summary"] == "newer"
    assert (counts.inserted, counts.skipped_stale) == (1, 1)


def test_an_older_version_never_overwrites_a_newer_one(store: Store) -> None:
    upsert_records(store.db, "issues", [issue(1, T0 + timedelta(minutes=5), summary="new")])

    counts = upsert_records(store.db, "issues", [issue(1, T0, summary="old")])

    assert counts.skipped_stale == 1 and counts.updated == 0
    stored = _stored(store, "1")
    assert stored["summary"] == "new"
    assert stored["updated"] == T0 + timedelta(minutes=5)


def test_a_newer_version_updates_and_keeps_first_seen_at(store: Store) -> None:
    upsert_records(store.db, "issues", [issue(1, T0, summary="old")])
    first_seen = _stored(store, "1")["first_seen_at"]

    counts = upsert_records(store.db, "issues", [issue(1, T0 + timedelta(hours=2), summary="new")])

    stored = _stored(store, "1")
    assert counts.updated == 1
    assert stored["summary"] == "new"
    assert stored["first_seen_at"] == first_seen
    assert stored["synced_at"] >= first_seen


def test_timestamps_round_trip_as_aware_utc_dates_whatever_offset_jira_wrote(store: Store) -> None:
    # 2026-01-10T09:30:00.123+0100 is 08:30:00.123 UTC; a naive reading would store 09:30.
    record = issue(1, "2026-01-10T09:30:00.123+0100", created="2026-01-09T23:00:00.000-0800")

    upsert_records(store.db, "issues", [record])

    stored = _stored(store, "1")
    assert stored["updated"] == datetime(2026, 1, 10, 8, 30, 0, 123000, tzinfo=UTC)
    assert stored["created"] == datetime(2026, 1, 10, 7, 0, tzinfo=UTC)
    for field in ("updated", "created", "synced_at", "first_seen_at"):
        assert isinstance(stored[field], datetime)
        assert stored[field].utcoffset() == timedelta(0), field
    paris = timezone(timedelta(hours=1))
    same_instant_in_paris = datetime(2026, 1, 10, 9, 30, 0, 123000, tzinfo=paris)
    assert store.db.jira_issues.count_documents({"updated": same_instant_in_paris}) == 1


def test_pydantic_records_are_stored_like_dicts(store: Store) -> None:
    record = IssueRecord(**{k: v for k, v in issue(3).items()})

    counts = upsert_records(store.db, "jira_issues", [record])

    assert counts.inserted == 1
    assert _stored(store, "3")["key"] == "ACME-3"
    assert _stored(store, "3")["_id"] == document_id("conn-1", "issues", "3")


def test_a_record_without_its_jira_id_is_dead_lettered_naming_the_field(store: Store) -> None:
    counts = upsert_records(store.db, "issues", [issue(1) | {"issue_id": None}, issue(2)])

    assert (counts.inserted, counts.dead_lettered) == (1, 1)
    (letter,) = store.db.jira_sync_errors.find({})
    assert "issue_id" in letter["reason"] and letter["key"] == "ACME-1"
    assert store.db.jira_issues.count_documents({}) == 1


def test_the_natural_key_is_unique_even_for_a_document_with_another_id(store: Store) -> None:
    ensure_indexes(store.db)
    upsert_records(store.db, "issues", [issue(1)])

    with pytest.raises(DuplicateKeyError):
        store.db.jira_issues.insert_one({"connection_id": "conn-1", "issue_id": "1"})
    assert store.db.jira_issues.count_documents({}) == 1


def test_ensure_indexes_creates_exactly_the_design_indexes_and_is_idempotent(store: Store) -> None:
    ensure_indexes(store.db)
    first = {name: store.db[name].index_information() for name in INDEXES}
    ensure_indexes(store.db)
    second = {name: store.db[name].index_information() for name in INDEXES}

    assert first == second
    keys = {
        name: sorted((tuple(tuple(k) for k in info["key"]), bool(info.get("unique")))
                     for index, info in indexes.items() if index != "_id_")
        for name, indexes in second.items()
    }  # fmt: skip
    assert keys == {
        "jira_connections": [((("cloud_id", 1),), False), ((("id", 1),), True)],
        "jira_projects": [((("connection_id", 1), ("project_id", 1)), True)],
        "jira_statuses": [((("connection_id", 1), ("status_id", 1)), True)],
        "jira_users": [((("connection_id", 1), ("account_id", 1)), True)],
        "jira_issues": sorted([
            ((("connection_id", 1), ("issue_id", 1)), True),
            ((("updated", 1),), False),
            ((("connection_id", 1), ("project_key", 1), ("updated", 1)), False),
            ((("key", 1),), False),
            ((("synced_at", 1),), False),
        ]),
        "jira_sync_errors": [
            ((("connection_id", 1), ("entity", 1), ("jira_id", 1)), True),
            ((("last_seen", 1),), False),
        ],
        "jira_issue_daily_summary": [
            ((("connection_id", 1), ("project_key", 1), ("status_name", 1), ("day", 1)), True),
        ],
        "jira_fields": [((("connection_id", 1), ("field_id", 1)), True)],
        "jira_issue_types": [((("connection_id", 1), ("issue_type_id", 1)), True)],
        "jira_priorities": [((("connection_id", 1), ("priority_id", 1)), True)],
        "jira_resolutions": [((("connection_id", 1), ("resolution_id", 1)), True)],
        "jira_status_categories": [((("connection_id", 1), ("status_category_id", 1)), True)],
        "jira_boards": [((("connection_id", 1), ("board_id", 1)), True)],
        "jira_sprints": [((("connection_id", 1), ("sprint_id", 1)), True)],
        "jira_project_versions": [((("connection_id", 1), ("version_id", 1)), True)],
        "jira_project_components": [((("connection_id", 1), ("component_id", 1)), True)],
        "jira_issue_links": [
            ((("connection_id", 1), ("issue_id", 1), ("link_id", 1)), True),
            ((("connection_id", 1), ("other_issue_id", 1)), False),
        ],
        "jira_sprint_issues": sorted([
            ((("connection_id", 1), ("sprint_id", 1), ("issue_id", 1)), True),
            ((("connection_id", 1), ("issue_id", 1)), False),
        ]),
        "jira_sprint_report": [
            ((("connection_id", 1), ("sprint_id", 1), ("project_key", 1)), True),
        ],
        "jira_issue_comments": [
            ((("connection_id", 1), ("comment_id", 1)), True),
            ((("connection_id", 1), ("issue_id", 1)), False),
        ],
        "jira_issue_changelogs": [
            ((("connection_id", 1), ("created", 1)), False),
            ((("connection_id", 1), ("issue_id", 1), ("history_id", 1)), True),
        ],
        "jira_worklogs": sorted([
            ((("connection_id", 1), ("worklog_id", 1)), True),
            ((("connection_id", 1), ("issue_id", 1)), False),
            ((("started", 1),), False),
        ]),
        "jira_sync_cursors": [((("connection_id", 1), ("feed", 1)), True)],
        "jira_issue_field_history": sorted([
            ((("connection_id", 1), ("issue_id", 1), ("field_id", 1), ("valid_from", 1)), True),
            ((("connection_id", 1), ("field_id", 1), ("valid_from", 1)), False),
        ]),
        "jira_issue_status_transitions": sorted([
            ((("connection_id", 1), ("issue_id", 1), ("entered_at", 1)), True),
            ((("connection_id", 1), ("status_id", 1), ("entered_at", 1)), False),
        ]),
        "jira_time_in_status_daily": [
            ((("connection_id", 1), ("project_key", 1), ("status_id", 1), ("day", 1)), True),
        ],
    }  # fmt: skip


@pytest.mark.parametrize("live_ids_sent", ["in_the_query", "streamed_and_compared_here"])
def test_vanished_rows_are_marked_deleted_and_come_back_when_they_reappear(
    store: Store, live_ids_sent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if live_ids_sent == "streamed_and_compared_here":
        # More live ids than one `$nin` may carry.
        monkeypatch.setattr(upserts, "_NIN_MAX_IDS", 1)
    upsert_records(store.db, "issues", [issue(i) for i in (1, 2, 3)])
    upsert_records(store.db, "issues", [issue(2, connection_id="other")])

    marked = mark_deleted_except(store.db, "issues", "conn-1", ["1", "3"])

    assert marked == 1
    gone = _stored(store, "2")
    assert gone["is_deleted"] is True and gone["deleted_at"] is not None
    assert _stored(store, "1")["is_deleted"] is False
    assert _stored(store, "2", connection_id="other")["is_deleted"] is False
    assert mark_deleted_except(store.db, "issues", "conn-1", ["1", "3"]) == 0

    counts = upsert_records(store.db, "issues", [issue(2)])

    back = _stored(store, "2")
    assert counts.updated == 1
    assert back["is_deleted"] is False and back["deleted_at"] is None


def test_marking_deleted_within_a_scope_leaves_other_rows_alone(store: Store) -> None:
    upsert_records(store.db, "issues", [issue(1, project_key="A"), issue(2, project_key="B")])

    marked = mark_deleted_except(store.db, "issues", "conn-1", [], scope={"project_key": "A"})

    assert marked == 1
    assert _stored(store, "1")["is_deleted"] is True
    assert _stored(store, "2")["is_deleted"] is False


def test_dimension_rows_are_last_write_wins(store: Store) -> None:
    project = {"connection_id": "c", "project_id": "10", "key": "A", "name": "Alpha", "raw": {}}

    upsert_records(store.db, "projects", [project])
    counts = upsert_records(store.db, "projects", [project | {"name": "Renamed"}])

    assert counts.updated == 1
    assert store.db.jira_projects.find_one({"project_id": "10"})["name"] == "Renamed"


# --- two real OS processes writing the same keys at once --------------------------------------

KEYS = 300
ROUNDS = 4


def _version(process: int, round_: int, key: int) -> datetime:
    # Interleaved so that each process holds the newest version of half the keys in every round,
    # and the overall newest version of key k belongs to process k % 2 in the last round.
    offset = round_ * 10 + (5 if (key + process) % 2 == 0 else 0)
    return T0 + timedelta(minutes=offset)


def _writer(uri: str | None, folder: str | None, database: str, process: int, barrier) -> None:
    db = get_mongo_client(uri, folder=folder).get_database(database)
    ensure_indexes(db)
    barrier.wait()
    for round_ in range(ROUNDS):
        records = [
            issue(k, _version(process, round_, k), summary=f"p{process} r{round_}")
            for k in range(KEYS)
        ]
        upsert_records(db, "issues", records, batch_size=25)


def test_two_processes_upserting_the_same_keys_keep_one_row_each_at_the_newest_version(
    store: Store,
) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    folder = str(store.folder) if store.folder else None
    workers = [
        context.Process(target=_writer, args=(store.uri, folder, store.name, p, barrier))
        for p in (0, 1)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0]

    assert store.db.jira_issues.count_documents({}) == KEYS
    assert len(store.db.jira_issues.distinct("_id")) == KEYS
    last = ROUNDS - 1
    for doc in store.db.jira_issues.find({}, {"issue_id": 1, "updated": 1, "summary": 1}):
        k = int(doc["issue_id"])
        newest = max(_version(p, last, k) for p in (0, 1))
        winner = next(p for p in (0, 1) if _version(p, last, k) == newest)
        assert doc["updated"] == newest, doc
        assert doc["summary"] == f"p{winner} r{last}", doc


def test_writing_freezes_the_older_heap_once_and_gives_it_back_after_the_last_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A code location loaded earlier in this test process froze its heap for good
    # (jira_pipeline.heap): start from an unfrozen heap, and give that freeze back at the end.
    frozen_by_load = gc.get_freeze_count()
    monkeypatch.setattr(heap, "_frozen_after_load", False)
    gc.unfreeze()
    try:
        _writing_freezes_the_older_heap_once_and_gives_it_back()
    finally:
        if frozen_by_load:
            gc.freeze()


def _writing_freezes_the_older_heap_once_and_gives_it_back() -> None:
    assert gc.get_freeze_count() == 0
    with older_objects_frozen():
        frozen = gc.get_freeze_count()
        assert frozen > 0  # what existed before the write is left out of collections
        with older_objects_frozen():  # a nested write neither refreezes nor unfreezes
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen
    assert gc.get_freeze_count() == 0

    gc.freeze()  # a heap frozen by someone else stays frozen
    try:
        before = gc.get_freeze_count()
        with older_objects_frozen():
            pass
        assert gc.get_freeze_count() == before
    finally:
        gc.unfreeze()


def test_writing_after_a_code_location_froze_the_heap_neither_counts_nor_refreezes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Counting the frozen objects walks them all: once per output written, 15-25 ms each.
    monkeypatch.setattr(heap, "_frozen_after_load", True)
    counted: list[int] = []

    def count() -> int:
        counted.append(1)
        return 1

    monkeypatch.setattr(gc, "get_freeze_count", count)
    frozen: list[int] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(1))
    monkeypatch.setattr(gc, "unfreeze", lambda: frozen.append(-1))
    with older_objects_frozen(), older_objects_frozen():
        pass
    assert counted == [] and frozen == []
