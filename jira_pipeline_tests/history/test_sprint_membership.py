"""Sprint membership of one issue from its sprint field and changelog, and the sprint report."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jira_pipeline.history.fields import FieldCatalog, issue_field_intervals
from jira_pipeline.history.sprints import (
    SprintFields,
    SprintWindow,
    sprint_issue_rows,
    sprint_report_rows,
    stale_issue_ids,
)
from jira_pipeline_tests.history.test_field_history import at, history, issue, item
from jira_pipeline_tests.history.test_status_transitions import DIRECTORY

SPRINT, POINTS = "customfield_10020", "customfield_10016"
CATALOG = FieldCatalog.from_documents([
    {"field_id": SPRINT, "name": "Sprint", "schema": {"type": "array", "items": "json"}},
    {"field_id": POINTS, "name": "Story point estimate", "schema": {"type": "number"}},
])
FIELDS = SprintFields(SPRINT, POINTS)
# Sprint 1 runs from hour 10 to hour 100; sprint 2 starts when sprint 1 closes.
WINDOWS = {"1": SprintWindow(at(10), at(100)), "2": SprintWindow(at(100), None)}


def sprint_item(before: str | None, after: str | None) -> dict[str, Any]:
    def names(ids: str | None) -> str | None:
        return ", ".join(f"Sprint {i}" for i in ids.split(", ")) if ids else None

    return {**item(SPRINT, before, names(before), after, names(after), field="Sprint"),
            "field_type": "custom"}


def points_item(before: str | None, after: str | None) -> dict[str, Any]:
    # A number field's change carries the numbers as text only.
    return {**item(POINTS, None, before, None, after, field="Story point estimate"),
            "field_type": "custom"}


def status_item(before: str, after: str) -> dict[str, Any]:
    names = {"10000": "To Do", "3": "In Progress", "10002": "Done"}
    return item("status", before, names[before], after, names[after])


def sprint_issue(sprints: list[int], points: float | None, status: str = "3") -> dict[str, Any]:
    doc = issue(status_id=status)
    doc["raw"]["fields"][SPRINT] = [{"id": s, "name": f"Sprint {s}", "state": "closed"}
                                    for s in sprints] or None
    doc["raw"]["fields"][POINTS] = points
    return doc


def rows(doc: dict[str, Any], changelog: list[dict[str, Any]],
         windows: dict[str, SprintWindow] = WINDOWS) -> dict[str, dict[str, Any]]:
    only = FIELDS.derived
    intervals = issue_field_intervals(doc, changelog, CATALOG, tracked=only, only=only)
    return {row["sprint_id"]: row for row in sprint_issue_rows(doc, intervals, FIELDS, windows,
                                                              DIRECTORY)}


def test_an_issue_committed_and_done_inside_the_sprint_is_completed_with_its_points() -> None:
    changelog = [
        history("11", 2, sprint_item(None, "1"), points_item(None, "3")),
        history("12", 50, points_item("3", "5")),  # re-estimated mid-sprint
        history("13", 60, status_item("3", "10002")),
    ]
    (row,) = rows(sprint_issue([1], 5, status="10002"), changelog).values()
    assert row["intervals"] == [{"added_at": at(2), "removed_at": None}]
    assert (row["in_sprint_at_start"], row["added_during_sprint"],
            row["removed_during_sprint"], row["in_sprint_at_end"]) == (True, False, False, True)
    assert (row["completed_in_sprint"], row["carried_over"]) == (True, False)
    assert (row["story_points_at_start"], row["story_points_at_end"]) == (3.0, 5.0)
    assert row["status_category_at_end"] == "Done" and row["is_member"] is True
    assert (row["sprint_started_at"], row["sprint_completed_at"]) == (at(10), at(100))


def test_an_unfinished_issue_is_carried_over_and_stays_in_the_closed_sprint() -> None:
    # At the close Jira keeps sprint 1 in the field and adds sprint 2: "1" -> "1, 2".
    changelog = [history("11", 2, sprint_item(None, "1")),
                 history("12", 100, sprint_item("1", "1, 2"))]
    by_sprint = rows(sprint_issue([1, 2], None), changelog)
    first, second = by_sprint["1"], by_sprint["2"]
    assert first["intervals"] == [{"added_at": at(2), "removed_at": None}]
    assert (first["in_sprint_at_end"], first["completed_in_sprint"], first["carried_over"]) == (
        True, False, True)
    # Sprint 2 started at the close it was added at: it was committed to it.
    assert second["added_at"] == at(100) and second["in_sprint_at_start"] is True
    assert second["carried_over"] is False  # sprint 2 is not closed
    assert first["story_points_at_start"] is None  # no estimate: no points


def test_added_after_the_start_and_removed_before_the_end_are_told_apart() -> None:
    added = rows(sprint_issue([1], None), [history("11", 20, sprint_item(None, "1"))])["1"]
    assert (added["in_sprint_at_start"], added["added_during_sprint"]) == (False, True)
    assert added["story_points_at_start"] is None
    removed = rows(sprint_issue([], None), [history("11", 2, sprint_item(None, "1")),
                                           history("12", 30, sprint_item("1", None))])["1"]
    assert removed["intervals"] == [{"added_at": at(2), "removed_at": at(30)}]
    assert (removed["in_sprint_at_start"], removed["removed_during_sprint"],
            removed["in_sprint_at_end"], removed["is_member"]) == (True, True, False, False)
    assert removed["removed_at"] == at(30)


def test_an_issue_taken_out_and_put_back_has_two_intervals_and_ends_in_the_sprint() -> None:
    changelog = [history("11", 2, sprint_item(None, "1")),
                 history("12", 30, sprint_item("1", None)),
                 history("13", 40, sprint_item(None, "1"))]
    row = rows(sprint_issue([1], None), changelog)["1"]
    assert row["intervals"] == [{"added_at": at(2), "removed_at": at(30)},
                                {"added_at": at(40), "removed_at": None}]
    assert row["in_sprint_at_end"] and not row["removed_during_sprint"]
    assert not row["added_during_sprint"]  # it was committed at the start


def test_an_issue_in_a_sprint_since_creation_without_a_change_is_a_member() -> None:
    row = rows(sprint_issue([1], 8), [])["1"]
    assert row["intervals"][0]["removed_at"] is None and row["in_sprint_at_start"]
    assert row["story_points_at_start"] == 8.0


def test_a_future_or_unknown_sprint_has_membership_but_no_sprint_figures() -> None:
    row = rows(sprint_issue([7], 2), [history("11", 2, sprint_item(None, "7"))])["7"]
    assert row["is_member"] and row["sprint_started_at"] is None
    assert not any(row[name] for name in ("in_sprint_at_start", "added_during_sprint",
                                          "in_sprint_at_end", "carried_over"))


def test_no_sprint_field_means_no_rows() -> None:
    doc = sprint_issue([1], 3)
    intervals = issue_field_intervals(doc, [], CATALOG, tracked=("status",), only=("status",))
    assert sprint_issue_rows(doc, intervals, SprintFields(None, None), WINDOWS, DIRECTORY) == []


def test_fields_are_found_by_type_then_by_name() -> None:
    docs: list[dict[str, Any]] = [
        {"field_id": "customfield_10100", "name": "Story Points", "schema_custom": None},
        {"field_id": SPRINT, "name": "Sprint",
         "schema_custom": "com.pyxis.greenhopper.jira:gh-sprint"},
    ]
    assert SprintFields.from_documents(docs) == SprintFields(SPRINT, "customfield_10100")
    typed = {"field_id": POINTS, "name": "Estimate",
             "schema_custom": "com.pyxis.greenhopper.jira:jsw-story-points"}
    assert SprintFields.from_documents([*docs, typed]).story_points == POINTS


def test_a_sprint_started_or_closed_since_its_rows_were_written_makes_them_stale() -> None:
    written = rows(sprint_issue([1], None), [history("11", 2, sprint_item(None, "1"))],
                   windows={"1": SprintWindow(at(10), None)})["1"]
    stored = [{**written, "issue_id": "10001"}]
    assert stale_issue_ids(stored, {"1": SprintWindow(at(10), None)}) == set()
    # The sprint closed: the rows computed with it open must be recomputed.
    assert stale_issue_ids(stored, WINDOWS) == {"10001"}
    # A naive stored date (how some stores hand them back) is the same moment.
    naive = [{**stored[0], "sprint_started_at": at(10).replace(tzinfo=None)}]
    assert stale_issue_ids(naive, {"1": SprintWindow(at(10), None)}) == set()


def test_the_window_counts_only_dates_of_started_and_closed_sprints() -> None:
    start, end = at(10), at(100)
    closed = {"state": "closed", "start_date": at(9), "activated_date": start,
              "complete_date": end}
    assert SprintWindow.from_document(closed) == SprintWindow(start, end)
    future = {"state": "future", "start_date": start, "end_date": end}
    assert SprintWindow.from_document(future) == SprintWindow(None, None)


def test_the_report_counts_each_sprint_and_project() -> None:
    membership = [
        rows(sprint_issue([1], 5, status="10002"),
             [history("11", 2, sprint_item(None, "1"), points_item(None, "5")),
              history("12", 60, status_item("3", "10002"))])["1"],
        rows(sprint_issue([1, 2], 3), [history("11", 2, sprint_item(None, "1"),
                                                points_item(None, "3")),
                                        history("12", 100, sprint_item("1", "1, 2"))])["1"],
        rows(sprint_issue([1], 2), [history("11", 20, sprint_item(None, "1"),
                                             points_item(None, "2"))])["1"],
        rows(sprint_issue([], 1), [history("11", 2, sprint_item(None, "1"),
                                            points_item(None, "1")),
                                    history("12", 30, sprint_item("1", None))])["1"],
    ]
    sprints: dict[str, dict[str, Any]] = {
        "1": {"name": "Sprint 1", "state": "closed", "board_ids": [1],
              "activated_date": at(10), "complete_date": at(100)},
        "9": {"name": "Empty", "state": "future"},
    }
    report = {row["sprint_id"]: row for row in sprint_report_rows(membership,
                                                                  sprints)}
    one = report["1"]
    assert one["project_key"] == "CORE" and one["sprint_name"] == "Sprint 1"
    assert (one["issues_committed"], one["issues_added"], one["issues_removed"],
            one["issues_completed"], one["issues_carried_over"]) == (3, 1, 1, 1, 2)
    # Carried over: the one moved to sprint 2 and the one added mid-sprint, both unfinished.
    assert (one["story_points_committed"], one["story_points_completed"]) == (9.0, 5.0)
    assert isinstance(one["start_date"], datetime)
    # A sprint nobody was in still has its row, every figure zero.
    assert report["9"]["project_key"] == "(none)" and report["9"]["issues_committed"] == 0


def test_a_data_center_sprint_field_without_a_change_is_read_from_its_strings() -> None:
    doc = issue()
    doc["raw"]["fields"][SPRINT] = [
        "com.atlassian.greenhopper.service.sprint.Sprint@1f2e[id=1,rapidViewId=3,state=CLOSED,"
        "name=Sprint 1, the long one,startDate=2026-03-01T09:00:00.000Z,endDate=<null>,"
        "completeDate=<null>,activatedDate=<null>,sequence=1,goal=]"]
    only = FIELDS.derived
    intervals = issue_field_intervals(doc, [], CATALOG, tracked=only, only=only)
    assert intervals[SPRINT][0].value == ("1",)
    assert intervals[SPRINT][0].value_string == ("Sprint 1, the long one",)
    (row,) = sprint_issue_rows(doc, intervals, FIELDS, WINDOWS, DIRECTORY)
    assert row["sprint_id"] == "1" and row["in_sprint_at_start"] is True


def test_the_report_counts_rows_as_stored_from_a_stream() -> None:
    """Rows as a store may hold them: a flag missing or None is false, story points stored as
    numeric text count and other text does not, a row without a sprint counts nowhere; the
    rows come from a generator, read once."""
    stored: list[dict[str, Any]] = [
        {"sprint_id": "1", "project_key": None, "in_sprint_at_start": True,
         "completed_in_sprint": True, "story_points_at_start": "3",
         "story_points_at_end": 2.5},
        {"sprint_id": "1", "project_key": None, "in_sprint_at_start": None,
         "added_during_sprint": True, "story_points_at_start": 8.0,
         "story_points_at_end": "many", "completed_in_sprint": True},
        {"sprint_id": None, "project_key": "CORE", "in_sprint_at_start": True},
    ]

    rows = sprint_report_rows((row for row in stored), {"1": {"name": "Sprint 1"}})

    assert [(row["sprint_id"], row["project_key"]) for row in rows] == [("1", "(none)")]
    row = rows[0]
    assert (row["issues_committed"], row["issues_added"], row["issues_completed"]) == (1, 1, 2)
    assert (row["story_points_committed"], row["story_points_completed"]) == (3.0, 2.5)
    assert isinstance(row["issues_committed"], int)
