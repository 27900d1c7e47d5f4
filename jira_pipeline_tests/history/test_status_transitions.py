"""Status transitions of one issue, and the daily time in status computed from transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jira_pipeline.history.fields import issue_field_intervals
from jira_pipeline.history.time_in_status import time_in_status_rows
from jira_pipeline.history.transitions import Directory, status_transition_rows
from jira_pipeline_tests.history.test_field_history import CREATED, history, issue, item

STATUSES: list[dict[str, Any]] = [
    {"status_id": "10000", "name": "To Do", "status_category": "To Do"},
    {"status_id": "3", "name": "In Progress", "status_category": "In Progress"},
    {"status_id": "10001", "name": "Code Review", "status_category": "In Progress"},
    {"status_id": "10002", "name": "Done", "status_category": "Done"},
    {"status_id": "10103", "name": "QA", "status_category": "In Progress", "is_deleted": True},
]
PROJECTS = [{"project_id": "100", "key": "CORE"}, {"project_id": "200", "key": "WEB"}]
DIRECTORY = Directory.from_documents(STATUSES, PROJECTS)


def transitions(doc: dict[str, Any], changelog: list[dict[str, Any]]) -> list[dict[str, Any]]:
    fields = issue_field_intervals(doc, changelog)
    return status_transition_rows(doc, fields["status"], DIRECTORY, fields.get("project", []))


def test_each_status_interval_is_a_transition_with_its_direction_and_minutes() -> None:
    changelog = [
        history("11", 2, item("status", "10000", "To Do", "3", "In Progress")),
        history("12", 5, item("status", "3", "In Progress", "10001", "In Review")),
        history("13", 6, item("status", "10001", "In Review", "10002", "Done")),
        history("14", 8, item("status", "10002", "Done", "3", "In Progress")),
    ]
    rows = transitions(issue(), changelog)
    assert [(r["status_id"], r["previous_status_id"], r["transition_direction"]) for r in rows] == [
        ("10000", None, None), ("3", "10000", "forward"), ("10001", "3", "lateral"),
        ("10002", "10001", "forward"), ("3", "10002", "backward")]
    assert [r["minutes_in_status"] for r in rows] == [120, 180, 60, 120, None]
    assert [r["is_current"] for r in rows] == [False, False, False, False, True]
    assert rows[0]["entered_at"] == CREATED and rows[-1]["left_at"] is None
    assert {r["project_key"] for r in rows} == {"CORE"}


def test_names_follow_jira_statuses_not_the_changelog() -> None:
    # "In Review" was renamed "Code Review" since: the stored status names the transition.
    changelog = [history("11", 2, item("status", "10000", "To Do", "10001", "In Review"))]
    rows = transitions(issue(status_id="10001", status_name="Code Review"), changelog)
    assert [r["status_name"] for r in rows] == ["To Do", "Code Review"]
    assert [r["status_category"] for r in rows] == ["To Do", "In Progress"]


def test_a_status_gone_from_jira_statuses_keeps_the_changelog_name_and_no_direction() -> None:
    changelog = [
        history("11", 2, item("status", "10000", "To Do", "777", "Legacy Triage")),
        history("12", 3, item("status", "777", "Legacy Triage", "10103", "QA")),
    ]
    rows = transitions(issue(status_id="10103", status_name="QA"), changelog)
    assert [(r["status_name"], r["status_category"]) for r in rows] == [
        ("To Do", "To Do"), ("Legacy Triage", None), ("QA", "In Progress")]
    # Unknown category: no direction either way; a deleted but stored status keeps its name.
    assert [r["transition_direction"] for r in rows] == [None, None, None]


def test_an_issue_moved_between_projects_changes_status_ids_and_project() -> None:
    changelog = [
        history("11", 2, item("status", "10000", "To Do", "3", "In Progress")),
        history("12", 4, item("project", "100", "Core Platform", "200", "Web Storefront"),
                item("issuekey", None, "CORE-1", None, "WEB-9", field="Key"),
                item("status", "3", "In Progress", "10103", "QA")),
    ]
    moved = issue(key="WEB-9", project_id="200", project_key="WEB", status_id="10103",
                  status_name="QA")
    rows = transitions(moved, changelog)
    assert [(r["status_id"], r["project_key"]) for r in rows] == [
        ("10000", "CORE"), ("3", "CORE"), ("10103", "WEB")]
    assert rows[-1]["previous_status_id"] == "3"
    assert rows[-1]["transition_direction"] == "lateral"


def test_equal_timestamps_leave_one_transition_and_the_chain_unbroken() -> None:
    changelog = [
        history("12", 2, item("status", "3", "In Progress", "10002", "Done")),
        history("11", 2, item("status", "10000", "To Do", "3", "In Progress")),
    ]
    rows = transitions(issue(status_id="10002", status_name="Done"), changelog)
    assert [(r["status_id"], r["previous_status_id"]) for r in rows] == [
        ("10000", None), ("10002", "10000")]
    assert len({r["entered_at"] for r in rows}) == 2


DAY0 = datetime(2026, 3, 1, tzinfo=UTC)


def interval(issue_id: str, status: str, entered: datetime, left: datetime | None,
             project: str = "CORE") -> dict[str, Any]:
    minutes = (left - entered).total_seconds() / 60 if left else None
    return {"issue_id": issue_id, "project_key": project, "status_id": status,
            "status_name": {"1": "To Do", "3": "In Progress"}[status], "entered_at": entered,
            "left_at": left, "minutes_in_status": minutes}


def test_time_in_status_counts_issues_present_and_minutes_of_those_that_left() -> None:
    h = timedelta(hours=1)
    intervals = [
        interval("A", "1", DAY0 + 9 * h, DAY0 + 10 * h),          # left day 0 after 60 min
        interval("A", "3", DAY0 + 10 * h, None),                  # still in progress
        interval("B", "1", DAY0 - 2 * timedelta(days=1), DAY0 + 12 * h),  # left after 60 h
        interval("C", "1", DAY0 + 26 * h, DAY0 + 28 * h),         # day 1 only, 120 min
        interval("D", "1", DAY0 + 23 * h, DAY0 + 24 * h),         # in day 0, left at midnight
        interval("E", "3", DAY0 + 2 * h, DAY0 + 3 * h, project="WEB"),
    ]
    rows = time_in_status_rows(intervals, DAY0, DAY0 + timedelta(days=2), now=DAY0 + 30 * h)
    by_key = {(r["day"].day, r["project_key"], r["status_id"]): r for r in rows}
    todo0 = by_key[(1, "CORE", "1")]
    # A, B and D were in To Do on day 0; A and B left it that day, D at the next midnight.
    assert (todo0["issues_in_status"], todo0["transitions"]) == (3, 2)
    assert todo0["mean_minutes"] == pytest.approx((60 + 3600) / 2)
    assert todo0["p50_minutes"] == pytest.approx(1830)
    assert todo0["p90_minutes"] == pytest.approx(60 + 0.9 * (3600 - 60))
    assert todo0["status_name"] == "To Do" and todo0["day"] == DAY0
    assert by_key[(1, "CORE", "3")]["issues_in_status"] == 1
    assert by_key[(1, "CORE", "3")]["transitions"] == 0
    assert by_key[(1, "CORE", "3")]["mean_minutes"] is None
    assert by_key[(2, "CORE", "3")]["issues_in_status"] == 1  # open: runs until now
    todo1 = by_key[(2, "CORE", "1")]
    assert todo1["issues_in_status"] == 1  # C; D's interval ended at the midnight
    assert (todo1["transitions"], todo1["p50_minutes"]) == (2, 90)  # C's 120 and D's 60
    assert todo1["p90_minutes"] == pytest.approx(60 + 0.9 * 60)
    assert by_key[(1, "WEB", "3")]["transitions"] == 1
    assert (2, "WEB", "3") not in by_key
    assert set(by_key) == {(1, "CORE", "1"), (1, "CORE", "3"), (2, "CORE", "1"),
                           (2, "CORE", "3"), (1, "WEB", "3")}


def test_time_in_status_of_days_before_anything_happened_is_empty() -> None:
    intervals = [interval("A", "1", DAY0, None)]
    assert time_in_status_rows(intervals, DAY0 - timedelta(days=3), DAY0, now=DAY0) == []
    assert time_in_status_rows([], DAY0, DAY0 + timedelta(days=1),
                               now=DAY0) == []
