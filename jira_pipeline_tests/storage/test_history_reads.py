"""What the history assets read of the store, and the consistency check's comparison."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jira_pipeline.assets.history import TimeInStatusDays, current_field_differences, day_chunks
from jira_pipeline.history.time_in_status import (
    OpenIntervals,
    time_in_status_rows,
    transitions_frame,
)
from jira_pipeline.storage.history_reads import HistorySource
from jira_pipeline_tests.storage.conftest import Store

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def issue(issue_id: str, hours: int, **fields: Any) -> dict[str, Any]:
    return {"connection_id": "conn-1", "issue_id": issue_id, "key": f"CORE-{issue_id}",
            "status_id": "3", "assignee_account_id": "acc-1", "priority": "High",
            "updated": T0 + timedelta(hours=hours), "created": T0, "is_deleted": False,
            "raw": {"fields": {"priority": {"id": "2"}, "description": "x" * 1000,
                               "customfield_1": "gold"}}, **fields}


def current(issue_id: str, field_id: str, value: Any, value_string: Any = None) -> dict:
    return {"connection_id": "conn-1", "issue_id": issue_id, "field_id": field_id,
            "value": value, "value_string": value_string, "is_current": True,
            "valid_from": T0}


def test_a_window_reads_its_issues_with_their_changelogs_and_only_the_fields_needed(
    store: Store,
) -> None:
    store.db.jira_issues.insert_many([
        issue("1", 1), issue("2", 2), issue("3", 30),
        issue("4", -50, is_deleted=True, deleted_at=T0 + timedelta(hours=3)),
        {**issue("5", 1), "connection_id": "conn-2"},
    ])
    store.db.jira_issue_changelogs.insert_many([
        {"connection_id": "conn-1", "issue_id": "1", "history_id": "11", "created": T0,
         "items": [{"field": "Tier", "field_id": "customfield_1", "to_string": "gold"}]},
        {"connection_id": "conn-1", "issue_id": "1", "history_id": "12", "created": T0,
         "items": [], "is_deleted": True},
        {"connection_id": "conn-2", "issue_id": "1", "history_id": "13", "created": T0,
         "items": []},
    ])
    source = HistorySource(store.db, "conn-1", batch_issues=2)

    ids = source.window_issue_ids(T0, T0 + timedelta(hours=24))
    batches = list(source.batches(ids))

    assert ids == ["1", "2", "4"]  # updated in the window, or marked deleted in it
    assert [batch.ids for batch in batches] == [["1", "2"], ["4"]]
    first = batches[0]
    assert [h["history_id"] for h in first.changelogs["1"]] == ["11"]
    fields = first.issues[0]["raw"]["fields"]
    assert fields["customfield_1"] == "gold" and "description" not in fields
    assert batches[1].deleted == ["4"] and not batches[1].issues
    assert (source.histories_read, source.items_read) == (1, 1)


def test_the_check_names_each_current_value_unlike_the_issue(store: Store) -> None:
    store.db.jira_issues.insert_many([
        issue("1", 1),
        issue("2", 1, status_id="10001"),
        issue("3", 1, assignee_account_id="JIRAUSER10100",
              raw={"fields": {"assignee": {"key": "JIRAUSER10100", "name": "jsmith"}}}),
        issue("4", 1, is_deleted=True),
    ])
    store.db.jira_issue_field_history.insert_many([
        current("1", "status", "3"), current("1", "assignee", "acc-1"),
        current("1", "priority", "2", "High"),
        current("2", "status", "3"), current("2", "assignee", "acc-1"),
        current("3", "status", "3"), current("3", "assignee", "jsmith"),
        current("3", "priority", "2", "High"),
        current("4", "status", "999"),
    ])
    source = HistorySource(store.db, "conn-1")

    differences = current_field_differences(source, ["1", "2", "3", "4"])

    assert differences == ["CORE-2 status: history '3', issue '10001'",
                           "CORE-2 priority: no current row"]


def _random_intervals(rng: random.Random, issues: int, now: datetime) -> list[dict[str, Any]]:
    """Each issue's chain of status intervals, the last one open: re-entries of a status within
    a day, moves between projects, empty intervals and an open one entered after `now`."""
    names = {"1": "To Do", "3": "In Progress", "5": "Done"}
    rows = []
    for number in range(issues):
        entered = T0 + timedelta(minutes=rng.randrange(0, 30 * 24 * 60))
        project = rng.choice(["CORE", "WEB", None])
        for step in range(rng.randrange(1, 6)):
            status = rng.choice(list(names))
            if rng.random() < 0.2:
                project = rng.choice(["CORE", "WEB"])
            last = step == 4 or rng.random() < 0.3
            left = None if last else entered + timedelta(
                minutes=rng.choice([0, 5, 90, 60 * 30, 60 * 24 * 9]))
            rows.append({
                "connection_id": "conn-1", "issue_id": str(number), "project_key": project,
                "status_id": status, "status_name": names[status], "entered_at": entered,
                "left_at": left,
                "minutes_in_status": None if left is None else (left - entered) / timedelta(
                    minutes=1),
            })  # fmt: skip
            if left is None:
                break
            entered = left
    rows.append({**rows[0], "issue_id": "future", "entered_at": now + timedelta(hours=1),
                 "left_at": None, "minutes_in_status": None})
    return rows


def _rounded(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with their minutes rounded: a mean summed in another order differs in its
    last bits."""
    return [{name: round(value, 6) if isinstance(value, float) else value
             for name, value in row.items()} for row in rows]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_time_in_status_from_counted_open_intervals_equals_the_rows_of_every_interval(
    store: Store, seed: int,
) -> None:
    """The step counts open intervals instead of holding them (`OpenIntervals`): its rows equal
    what the whole overlapping intervals give, chunk by chunk."""
    rng = random.Random(seed)
    now = T0 + timedelta(days=26, hours=7)
    rows = _random_intervals(rng, 300, now)
    store.db.jira_issue_status_transitions.insert_many([dict(row) for row in rows])
    start, end = T0 + timedelta(days=2), T0 + timedelta(days=31)
    source = HistorySource(store.db, "conn-1")

    scopes = list(TimeInStatusDays(source, start, end, now).scopes())

    chunks = list(day_chunks(start, end))
    assert [scope.scope for scope in scopes] == [
        {"day": {"$gte": lower, "$lt": upper}} for lower, upper in chunks]
    total = 0
    for scope, (lower, upper) in zip(scopes, chunks, strict=True):
        overlapping = [row for row in rows if row["entered_at"] < upper
                       and (row["left_at"] is None or row["left_at"] > lower)]
        expected = time_in_status_rows(transitions_frame(overlapping), lower, upper, now)
        assert _rounded(scope.rows) == _rounded(expected)
        total += len(expected)
    assert total > 100  # the data reaches every chunk
    assert any(row["issues_in_status"] > 1 and row["transitions"] == 0
               for scope in scopes for row in scope.rows)


def test_open_intervals_count_each_day_from_their_first_until_now() -> None:
    now = T0 + timedelta(days=3, hours=5)
    counts = OpenIntervals(T0 + timedelta(days=1), now)
    counts.add({"project_key": "CORE", "status_id": "3", "status_name": "In Progress",
                "entered_at": T0 + timedelta(hours=20)})  # before `since`: folded into it
    counts.add({"project_key": None, "status_id": "3", "entered_at": T0 + timedelta(days=2)})
    counts.add({"project_key": "CORE", "status_id": "3", "entered_at": now})  # covers nothing
    counts.add({"project_key": "CORE", "status_id": "3"})  # no date: covers nothing

    present = counts.present(T0 + timedelta(days=1), T0 + timedelta(days=10))
    rest = counts.subtract([{"project_key": "CORE", "status_id": "3",
                             "entered_at": T0 + timedelta(hours=21)}])

    day = [T0 + timedelta(days=n) for n in range(5)]
    assert present == {(day[1], "CORE", "3"): 1, (day[2], "CORE", "3"): 1,
                       (day[3], "CORE", "3"): 1, (day[2], "(none)", "3"): 1,
                       (day[3], "(none)", "3"): 1}
    assert rest.present(day[1], day[4]) == {(day[2], "(none)", "3"): 1,
                                            (day[3], "(none)", "3"): 1}
    assert counts.names == {("CORE", "3"): "In Progress"}
    with pytest.raises(ValueError, match="folded"):
        counts.present(T0, day[2])
