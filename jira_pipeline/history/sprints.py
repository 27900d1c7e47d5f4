"""`jira_sprint_issues` and `jira_sprint_report`: sprint membership over time, derived from the
issues' sprint field and its changelog (no request beyond the issue sync), and per sprint what
was committed, added, removed, completed and carried over.

An issue's sprint field holds every sprint it has been in that is still relevant (Jira keeps a
closed sprint in the field of an issue it closed with, and adds the next one when the issue is
carried over), and each change of the field is one changelog item holding the whole set before
and after (`"1, 2"` -> `"1, 2, 3"`). So the field's intervals (`history/fields.py`) give, per
sprint, the intervals the issue spent in it; the sprint's start (activation) and completion
dates from `jira_sprints` then say whether it was committed at the start, added during the
sprint, removed before its end, and in it at the end. Story points come from the story point
field's intervals, the status category at the end from the status intervals.

A row records the sprint dates it was computed with (`sprint_started_at`,
`sprint_completed_at`): a sprint started or closed since is found by comparing them with the
stored sprint, and its issues are recomputed (starting a sprint does not update its issues).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jira_pipeline.history.fields import Interval, number_value
from jira_pipeline.history.transitions import Directory
from jira_pipeline.timeutil import parse_jira_datetime

SPRINT_FIELD_TYPE = "com.pyxis.greenhopper.jira:gh-sprint"
STORY_POINTS_TYPE = "com.pyxis.greenhopper.jira:jsw-story-points"
# Company-managed projects' story points are a plain number field with one of these names.
STORY_POINT_NAMES = ("story points", "story point estimate")
DONE_CATEGORY = "Done"
# What the report reads of a membership row.
MEMBERSHIP_FIELDS = (
    "sprint_id", "issue_id", "project_key", "in_sprint_at_start", "added_during_sprint",
    "removed_during_sprint", "in_sprint_at_end", "completed_in_sprint", "carried_over",
    "story_points_at_start", "story_points_at_end",
)  # fmt: skip
REPORT_COUNTS = (
    "issues_committed", "issues_added", "issues_removed", "issues_completed",
    "issues_carried_over", "story_points_committed", "story_points_completed",
)  # fmt: skip
NO_PROJECT = "(none)"


@dataclass(frozen=True)
class SprintFields:
    """Which custom fields hold the sprints and the story points (None: the site has none)."""

    sprint: str | None
    story_points: str | None

    @classmethod
    def from_documents(cls, documents: Iterable[Mapping[str, Any]]) -> SprintFields:
        """From `jira_fields` documents (`field_id`, `name`, `schema_custom`): the sprint field
        by its type; story points by type (team-managed `jsw-story-points`) else by name."""
        sprint = story_type = story_name = None
        for doc in sorted(documents, key=lambda d: str(d.get("field_id") or "")):
            field_id, custom = doc.get("field_id"), doc.get("schema_custom")
            if not field_id or doc.get("is_deleted"):
                continue
            if custom == SPRINT_FIELD_TYPE and sprint is None:
                sprint = str(field_id)
            elif custom == STORY_POINTS_TYPE and story_type is None:
                story_type = str(field_id)
            elif (str(doc.get("name") or "").lower() in STORY_POINT_NAMES
                  and story_name is None):
                story_name = str(field_id)
        return cls(sprint, story_type or story_name)

    @property
    def derived(self) -> tuple[str, ...]:
        """The fields whose intervals the derivation reads."""
        return (*(f for f in (self.sprint, self.story_points) if f), "status")


@dataclass(frozen=True)
class SprintWindow:
    """A stored sprint's dates: `started_at` (activation, else the planned start) of a started
    sprint, `completed_at` of a closed one."""

    started_at: datetime | None
    completed_at: datetime | None

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> SprintWindow:
        state = str(doc.get("state") or "").lower()
        started = _moment(doc.get("activated_date")) or _moment(doc.get("start_date"))
        return cls(started if state in ("active", "closed") else None,
                   _moment(doc.get("complete_date")) if state == "closed" else None)


def _moment(value: Any) -> datetime | None:
    # Stored dates may come back naive (UTC); anything else is no date.
    return parse_jira_datetime(value) if isinstance(value, datetime) else None


def membership(sprint_intervals: Sequence[Interval]) -> dict[str, list[tuple[datetime,
                                                                              datetime | None]]]:
    """Per sprint id, the [added, removed) intervals the issue spent in it, oldest first
    (removed None: it is in the sprint now)."""
    spans: dict[str, list[tuple[datetime, datetime | None]]] = {}
    for interval in sprint_intervals:
        sprints = interval.value if isinstance(interval.value, tuple) else (
            (interval.value,) if isinstance(interval.value, str) and interval.value else ())
        for sprint_id in sprints:
            runs = spans.setdefault(sprint_id, [])
            if runs and runs[-1][1] == interval.valid_from:
                runs[-1] = (runs[-1][0], interval.valid_until)  # still in it: one run
            else:
                runs.append((interval.valid_from, interval.valid_until))
    return spans


def _inside(runs: Sequence[tuple[datetime, datetime | None]], moment: datetime) -> bool:
    return any(added <= moment and (removed is None or moment < removed)
               for added, removed in runs)


def _value_at(intervals: Sequence[Interval], moment: datetime | None) -> Interval | None:
    """The interval holding `moment` (None: the current one)."""
    if not intervals:
        return None
    if moment is None:
        return intervals[-1]
    found = None
    for interval in intervals:
        if interval.valid_from <= moment:
            found = interval
    return found


def _points(interval: Interval | None) -> float | None:
    # A number field's changelog item carries the number as text in from/toString only.
    if interval is None:
        return None
    for value in (interval.value_string, interval.value):
        if (number := number_value(value)) is not None:
            return number
    return None


def sprint_issue_rows(
    issue: Mapping[str, Any],
    intervals: Mapping[str, Sequence[Interval]],
    fields: SprintFields,
    sprints: Mapping[str, SprintWindow],
    directory: Directory,
) -> list[dict[str, Any]]:
    """The `jira_sprint_issues` documents of one issue (without connection_id): one per sprint
    it has ever been in. The end of an active sprint is now (its issues' current values)."""
    if fields.sprint is None:
        return []
    spans = membership(intervals.get(fields.sprint, ()))
    points = intervals.get(fields.story_points, ()) if fields.story_points else ()
    status = intervals.get("status", ())
    rows = []
    for sprint_id, runs in sorted(spans.items()):
        window = sprints.get(sprint_id, SprintWindow(None, None))
        start, end = window.started_at, window.completed_at
        member_now = runs[-1][1] is None
        at_start = start is not None and _inside(runs, start)
        at_end = _inside(runs, end) if end is not None else member_now
        during = [run for run in runs if start is not None and run[0] > start
                  and (end is None or run[0] < end)]
        left = [run for run in runs if start is not None and run[1] is not None
                and run[1] > start and (end is None or run[1] <= end)]
        status_end = _value_at(status, end)
        status_id = status_end.value if status_end and isinstance(status_end.value, str) else None
        info = directory.statuses.get(status_id or "")
        category = info.category if info else None
        started = start is not None
        rows.append({
            "sprint_id": sprint_id,
            "issue_id": str(issue["issue_id"]),
            "issue_key": issue.get("key"),
            "project_key": issue.get("project_key"),
            "intervals": [{"added_at": added, "removed_at": removed} for added, removed in runs],
            "added_at": runs[0][0],
            "removed_at": None if member_now else runs[-1][1],
            "is_member": member_now,
            "sprint_started_at": start,
            "sprint_completed_at": end,
            "in_sprint_at_start": at_start,
            "added_during_sprint": started and not at_start and bool(during),
            "removed_during_sprint": started and bool(left) and not at_end,
            "in_sprint_at_end": started and at_end,
            "status_category_at_end": category if started and at_end else None,
            "completed_in_sprint": started and at_end and category == DONE_CATEGORY,
            "carried_over": (end is not None and at_end and category != DONE_CATEGORY),
            "story_points_at_start": _points(_value_at(points, start)) if at_start else None,
            "story_points_at_end": (_points(_value_at(points, end))
                                    if started and at_end else None),
        })  # fmt: skip
    return rows


def stale_issue_ids(
    rows: Iterable[Mapping[str, Any]], sprints: Mapping[str, SprintWindow]
) -> set[str]:
    """The issues of stored rows computed with other sprint dates than the stored sprint's (a
    sprint started or closed since, or stored only after the row was written)."""
    stale = set()
    for row in rows:
        window = sprints.get(str(row.get("sprint_id")), SprintWindow(None, None))
        if (_same_moment(row.get("sprint_started_at"), window.started_at)
                and _same_moment(row.get("sprint_completed_at"), window.completed_at)):
            continue
        stale.add(str(row["issue_id"]))
    return stale


def _same_moment(stored: Any, current: datetime | None) -> bool:
    if stored is None or current is None:
        return stored is None and current is None
    if not isinstance(stored, datetime):
        return False
    # The store may hand back naive UTC datetimes, and keeps milliseconds only.
    return abs((parse_jira_datetime(stored) - parse_jira_datetime(current)).total_seconds()) < 1e-3


def _flag(value: Any) -> bool:
    """A membership flag as stored: None (or NaN) is False."""
    return not (value is None or (isinstance(value, float) and math.isnan(value))) and bool(value)


def sprint_report_rows(
    memberships: Iterable[Mapping[str, Any]], sprints: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """`jira_sprint_report`: one row per sprint and project of its issues (a sprint with no
    issue has one row under "(none)"), with the sprint's name, state and dates. The membership
    rows are counted as they stream past: memory holds the counts, never the rows."""
    counted: dict[tuple[str, str], dict[str, Any]] = {}
    for row in memberships:
        if row.get("sprint_id") is None:
            continue
        project = row.get("project_key")
        counts = counted.setdefault(
            (str(row["sprint_id"]), str(NO_PROJECT if project is None else project)),
            {name: 0.0 if name.startswith("story_points") else 0 for name in REPORT_COUNTS})
        for name, flag in (("issues_committed", "in_sprint_at_start"),
                           ("issues_added", "added_during_sprint"),
                           ("issues_removed", "removed_during_sprint"),
                           ("issues_completed", "completed_in_sprint"),
                           ("issues_carried_over", "carried_over")):
            counts[name] += _flag(row.get(flag))
        for name, points, flag in (
                ("story_points_committed", "story_points_at_start", "in_sprint_at_start"),
                ("story_points_completed", "story_points_at_end", "completed_in_sprint")):
            value = number_value(row.get(points))
            if _flag(row.get(flag)) and value is not None:
                counts[name] += value
    with_rows = {sprint_id for sprint_id, _ in counted}
    for sprint_id in sprints:
        if sprint_id not in with_rows:
            counted[(sprint_id, NO_PROJECT)] = {
                name: 0.0 if name.startswith("story_points") else 0 for name in REPORT_COUNTS}
    rows = []
    for (sprint_id, project_key), counts in sorted(counted.items()):
        sprint = sprints.get(sprint_id, {})
        rows.append({
            "sprint_id": sprint_id,
            "project_key": project_key,
            "sprint_name": sprint.get("name"),
            "state": sprint.get("state"),
            "board_ids": sprint.get("board_ids"),
            "start_date": sprint.get("activated_date") or sprint.get("start_date"),
            "end_date": sprint.get("end_date"),
            "complete_date": sprint.get("complete_date"),
            **counts,
        })  # fmt: skip
    return rows
