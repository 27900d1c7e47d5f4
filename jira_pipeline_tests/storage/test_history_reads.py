"""What the history assets read of the store, and the consistency check's comparison."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jira_pipeline.assets.history import TimeInStatusDays, current_field_differences, day_chunks
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



def _issue_id(number: int) -> str:
    if number % 11 == 0:
        return f"ID-{number}"
    return f"0{number // 13}" if number % 13 == 0 else str(number)


def _random_intervals(rng: random.Random, issues: int, now: datetime) -> list[dict[str, Any]]:
    """Each issue's chain of status intervals, the last one open: re-entries of a status within
    a day, moves between projects, empty intervals, ends at midnight (a chunk's first one
    among them) and an open one entered after `now`; ids are Jira's decimal strings but for
    some that are not ("ID-11", and "01" beside "1": distinct issues)."""
    names = {"1": "To Do", "3": "In Progress", "5": "Done"}
    rows = []
    for number in range(issues):
        entered = T0 + timedelta(minutes=rng.randrange(0, 30 * 24 * 60))
        if number % 50 == 0:
            entered = T0 + timedelta(days=rng.randrange(0, 30))
        project = rng.choice(["CORE", "WEB", None])
        for step in range(rng.randrange(1, 6)):
            status = rng.choice(list(names))
            if rng.random() < 0.2:
                project = rng.choice(["CORE", "WEB"])
            last = step == 4 or rng.random() < 0.3
            left = None if last else entered + timedelta(
                minutes=rng.choice([0, 5, 90, 60 * 30, 60 * 24 * 9]))
            if number % 7 == 0 and left is not None:
                left = T0 + timedelta(days=(left - T0).days + 1)  # the next midnight
            rows.append({
                "connection_id": "conn-1", "issue_id": _issue_id(number), "project_key": project,
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
    rows.append({**rows[0], "issue_id": "at-a-chunk", "entered_at": T0,
                 "left_at": T0 + timedelta(days=9), "minutes_in_status": 9 * 24 * 60.0})
    return rows


def _days_by_definition(intervals: list[dict[str, Any]], start: datetime, end: datetime,
                        now: datetime) -> list[dict[str, Any]]:
    """The daily rows computed from their definition, day by day over every interval."""
    rows = []
    day = start
    while day < end:
        present: dict[tuple[str, str], set[str]] = {}
        minutes: dict[tuple[str, str], list[float]] = {}
        for row in intervals:
            key = (row["project_key"] or "(none)", row["status_id"])
            ends = row["left_at"] or now
            if row["entered_at"] < min(day + timedelta(days=1), ends) and ends > day \
                    and day <= now:
                present.setdefault(key, set()).add(row["issue_id"])
            left = row["left_at"]
            if left is not None and day <= left < min(day + timedelta(days=1), end,
                                                       now + timedelta(days=1)):
                minutes.setdefault(key, []).append(row["minutes_in_status"])
        for key in sorted({*present, *minutes}):
            values = sorted(minutes.get(key, []))
            p90 = (statistics.quantiles(values, n=10, method="inclusive")[8]
                   if len(values) > 1 else values[0] if values else None)
            rows.append({
                "day": day, "project_key": key[0], "status_id": key[1],
                "status_name": {"1": "To Do", "3": "In Progress", "5": "Done"}[key[1]],
                "issues_in_status": len(present.get(key, ())), "transitions": len(values),
                "mean_minutes": statistics.fmean(values) if values else None,
                "p50_minutes": statistics.median(values) if values else None,
                "p90_minutes": p90,
            })  # fmt: skip
        day += timedelta(days=1)
    return rows


def _rounded(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with their minutes rounded: a mean summed in another order differs in its
    last bits."""
    return [{name: round(value, 6) if isinstance(value, float) else value
             for name, value in row.items()} for row in rows]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_time_in_status_chunk_by_chunk_equals_the_days_by_definition(
    store: Store, seed: int,
) -> None:
    """The step streams each chunk's intervals into compact spans (`DailyTimeInStatus`): its
    rows, chunk after chunk, equal the rows counted from the definition over every interval,
    the transitions at a chunk's first midnight included."""
    rng = random.Random(seed)
    now = T0 + timedelta(days=26, hours=7)
    rows = _random_intervals(rng, 300, now)
    store.db.jira_issue_status_transitions.insert_many([dict(row) for row in rows])
    start, end = T0 + timedelta(days=2), T0 + timedelta(days=31)
    source = HistorySource(store.db, "conn-1")

    scopes = list(TimeInStatusDays(source, start, end, now).scopes())

    assert [scope.scope for scope in scopes] == [
        {"day": {"$gte": lower, "$lt": upper}} for lower, upper in day_chunks(start, end)]
    computed = [row for scope in scopes for row in scope.rows]
    expected = _days_by_definition(rows, start, end, now)
    assert _rounded(computed) == _rounded(expected)
    assert len(expected) > 100  # the data reaches every chunk
    assert any(row["issues_in_status"] > 1 and row["transitions"] == 0 for row in computed)
    assert any(row["day"] == start + timedelta(days=7) and row["transitions"]
               for row in computed)  # a chunk's first day has its transitions
