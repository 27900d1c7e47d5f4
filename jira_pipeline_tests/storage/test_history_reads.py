"""What the history assets read of the store, and the consistency check's comparison."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from jira_pipeline.assets.history import current_field_differences
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
