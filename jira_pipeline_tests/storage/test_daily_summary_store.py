"""The summary's storage: what `StoredIssueDays` reads of jira_issues for a range of days, and
how `write_daily_summary` replaces a range's rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest

from jira_pipeline.storage import daily_summary
from jira_pipeline.storage.daily_summary import (
    SUMMARY_ISSUE_FIELDS,
    UPDATED_CHUNK,
    DailySummary,
    SummaryRange,
    _inserted_unless_raced,
    partition_ranges,
    stored_issue_days,
    summary_row_id,
    write_daily_summary,
)
from jira_pipeline.storage.upserts import upsert_records
from jira_pipeline_tests.storage.conftest import Store, issue

DAY = datetime(2026, 1, 5, tzinfo=UTC)
NEXT = DAY + timedelta(days=1)
DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_offset=1)


def test_a_range_reads_the_issues_updated_created_or_resolved_in_it_projected(
    store: Store,
) -> None:
    old = DAY - timedelta(days=3)
    upsert_records(store.db, "issues", [
        issue("updated-in", DAY + timedelta(hours=1), created=old),
        issue("created-in", NEXT + timedelta(hours=2), created=DAY + timedelta(hours=3)),
        issue("resolved-in", NEXT + timedelta(days=1), created=old,
              resolution_date=NEXT - timedelta(milliseconds=1)),
        issue("before", DAY - timedelta(milliseconds=1), created=old),
        issue("after", NEXT, created=NEXT),
        issue("other-site", DAY + timedelta(hours=1), connection_id="conn-2"),
    ])  # fmt: skip
    reader = stored_issue_days(store.db, "conn-1", [(DAY, NEXT)])

    docs = list(reader.issues_touching((DAY, NEXT)))

    assert sorted(doc["updated"].replace(tzinfo=UTC) for doc in docs) == [
        DAY + timedelta(hours=1), NEXT + timedelta(hours=2), NEXT + timedelta(days=1)]
    assert {name for doc in docs for name in doc} <= {*SUMMARY_ISSUE_FIELDS, "_id"}
    # Read as the issues updated since the range began, a week of `updated` a query.
    chunks = reader.updated_chunks((DAY, NEXT))
    assert (reader.documents_read, reader.queries) == (3, len(chunks))
    assert chunks[0][0] == DAY and chunks[-1][1] is None
    assert all(lower is not None and upper is not None and upper - lower == UPDATED_CHUNK
               and upper == chunks[n + 1][0] for n, (lower, upper) in enumerate(chunks[:-1]))


def test_a_range_of_recent_days_is_one_query(store: Store) -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    upsert_records(store.db, "issues", [issue("today", today + timedelta(minutes=1))])
    reader = stored_issue_days(store.db, "conn-1", [(today - timedelta(days=1), None)])

    assert len(list(reader.issues_touching(reader.ranges[0]))) == 1
    assert reader.queries == 1


def test_adjacent_partitions_make_one_range_and_the_edges_stay_open() -> None:
    last = DAILY.get_last_partition_key()
    assert last is not None
    ranges = partition_ranges(DAILY, ["2026-01-05", "2026-01-06", "2026-01-08"])
    assert ranges == [(DAY, DAY + timedelta(days=2)),
                      (DAY + timedelta(days=3), DAY + timedelta(days=4))]  # fmt: skip
    assert partition_ranges(DAILY, ["2026-01-01", last]) == [
        (None, datetime(2026, 1, 2, tzinfo=UTC)),
        (datetime.fromisoformat(last).replace(tzinfo=UTC), None),
    ]


def row(day: datetime, project: str, status: str, updated: int) -> dict:
    return {"day": day, "project_key": project, "status_name": status,
            "issues_updated": updated, "created": 0, "resolved": 0}  # fmt: skip


def test_a_written_range_replaces_its_rows_and_leaves_other_days_alone(store: Store) -> None:
    first = DailySummary("conn-1", [SummaryRange((DAY, NEXT + timedelta(days=1)), [
        row(DAY, "A", "To Do", 2), row(DAY, "B", "Done", 1), row(NEXT, "A", "To Do", 4)])])
    write_daily_summary(store.db, first)

    counts = write_daily_summary(store.db, DailySummary("conn-1", [
        SummaryRange((DAY, NEXT), [row(DAY, "A", "To Do", 3)])]))

    assert (counts.inserted, counts.updated, counts.unchanged, counts.removed) == (0, 1, 0, 1)
    stored = {(doc["day"].replace(tzinfo=UTC), doc["project_key"], doc["status_name"]):
              doc["issues_updated"] for doc in store.db.jira_issue_daily_summary.find()}
    assert stored == {(DAY, "A", "To Do"): 3, (NEXT, "A", "To Do"): 4}


def test_a_row_another_run_inserted_since_the_read_is_replaced_not_lost(store: Store) -> None:
    rows = [row(DAY, "A", "To Do", 2), row(DAY, "B", "Done", 1)]
    # Another run of the same day wrote row A between this run's read and its write: the
    # insert of A clashes on `_id` and A is written again as a replacement; B goes in.
    racing = {**row(DAY, "A", "To Do", 9), "connection_id": "conn-1"}
    racing_id = summary_row_id("conn-1", racing)
    documents = [{"_id": summary_row_id("conn-1", doc), **doc}
                 for doc in ({**r, "connection_id": "conn-1"} for r in rows)]
    store.db.jira_issue_daily_summary.insert_one({"_id": racing_id, **racing})

    clashed = _inserted_unless_raced(store.db.jira_issue_daily_summary, documents)

    assert [doc["_id"] for doc in clashed] == [racing_id]
    assert store.db.jira_issue_daily_summary.count_documents({}) == 2

    summary = DailySummary("conn-1", [SummaryRange((DAY, NEXT), rows)])
    counts = write_daily_summary(store.db, summary)

    assert (counts.inserted, counts.updated, counts.removed) == (0, 1, 0)
    stored = {doc["project_key"]: doc["issues_updated"]
              for doc in store.db.jira_issue_daily_summary.find()}
    assert stored == {"A": 2, "B": 1}


@pytest.mark.parametrize("history_batch", [1, daily_summary.HISTORY_BATCH])
def test_changes_name_each_issue_by_its_status_at_the_end_of_each_day_it_changed(
    store: Store, monkeypatch: pytest.MonkeyPatch, history_batch: int,
) -> None:
    """A day of history names the issue by its status interval then (named as the stored
    status is now); the last update's day by its current status; an issue with no intervals
    by its current status; a deleted issue's history counts nowhere. The intervals are read
    (and held) a batch of issues at a time, whatever the batch."""
    monkeypatch.setattr(daily_summary, "HISTORY_BATCH", history_batch)
    asked: list[list[str]] = []
    read_intervals = daily_summary.StoredIssueDays._intervals

    def spied(self: daily_summary.StoredIssueDays,
              issue_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        asked.append(list(issue_ids))
        return read_intervals(self, issue_ids)

    monkeypatch.setattr(daily_summary.StoredIssueDays, "_intervals", spied)
    later = DAY + timedelta(days=2)
    upsert_records(store.db, "issues", [
        issue("moved", later + timedelta(hours=9), status_id="3", status_name="Done"),
        issue("no-history", later + timedelta(hours=1)),
        issue("gone", later),
    ])  # fmt: skip
    store.db.jira_issues.update_one({"issue_id": "gone"}, {"$set": {"is_deleted": True}})
    store.db.jira_statuses.insert_many([
        {"connection_id": "conn-1", "status_id": "2", "name": "Being Worked On"},
        {"connection_id": "conn-1", "status_id": "3", "name": "Done"},
    ])
    entries = [("moved", DAY + timedelta(hours=10)), ("moved", DAY + timedelta(hours=20)),
               ("moved", later + timedelta(hours=9)), ("no-history", DAY + timedelta(hours=4)),
               ("gone", DAY + timedelta(hours=5))]
    store.db.jira_issue_changelogs.insert_many([
        {"connection_id": "conn-1", "issue_id": issue_id, "history_id": str(n), "created": at}
        for n, (issue_id, at) in enumerate(entries)])
    store.db.jira_issue_status_transitions.insert_many([
        {"connection_id": "conn-1", "issue_id": "moved", "status_id": status_id,
         "status_name": name, "project_key": "ACME", "entered_at": entered, "left_at": left}
        for status_id, name, entered, left in [
            ("1", "To Do", DAY - timedelta(days=9), DAY + timedelta(hours=10)),
            ("2", "In Progress", DAY + timedelta(hours=10), later + timedelta(hours=9)),
            ("3", "Done", later + timedelta(hours=9), None)]])  # fmt: skip
    reader = stored_issue_days(store.db, "conn-1", [(DAY, later + timedelta(days=1))])

    changes = sorted(reader.changes(reader.ranges[0]), key=str)

    assert changes == sorted([
        (DAY, "ACME", "Being Worked On"),  # in progress at the day's end, under today's name
        (DAY, "ACME", "To Do"),  # no intervals: its current status
        (later, "ACME", "Done"),  # the last update's day
        (later, "ACME", "To Do"),  # no-history's last update
    ], key=str)  # fmt: skip
    assert reader.change_queries > 0 and reader.queries == 0
    assert sorted(issue_id for batch in asked for issue_id in batch) == ["moved", "no-history"]
    assert max(len(batch) for batch in asked) == min(history_batch, 2)


def test_before_the_first_partition_an_issue_counts_on_its_last_update_only(store: Store) -> None:
    """The first partition's open past is read from `updated` alone: a site's whole changelog
    before the sync start date is never read."""
    origin = DAY
    upsert_records(store.db, "issues", [
        issue("old", DAY - timedelta(days=3, hours=-2)),
        issue("recent", DAY + timedelta(hours=5)),
    ])  # fmt: skip
    store.db.jira_issue_changelogs.insert_many([
        {"connection_id": "conn-1", "issue_id": "old", "history_id": "1",
         "created": DAY - timedelta(days=9)},
        {"connection_id": "conn-1", "issue_id": "recent", "history_id": "2",
         "created": DAY - timedelta(days=1)},
        {"connection_id": "conn-1", "issue_id": "recent", "history_id": "3",
         "created": DAY + timedelta(hours=5)},
    ])
    reader = stored_issue_days(store.db, "conn-1", [(None, NEXT)], origin=origin)

    changes = sorted(reader.changes(reader.ranges[0]), key=str)

    assert changes == sorted([(DAY - timedelta(days=3), "ACME", "To Do"),
                              (DAY, "ACME", "To Do")], key=str)
