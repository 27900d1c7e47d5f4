"""`jira_issue_status_transitions`: an issue's status intervals with the names and categories of
the stored `jira_statuses` (so they follow renames), the project the issue was in, and whether
each move went forward, backward or sideways through the categories."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jira_pipeline.history.fields import Interval

# Jira's three status categories in the order work moves through them.
CATEGORY_ORDER = {"To Do": 0, "In Progress": 1, "Done": 2}
FORWARD, BACKWARD, LATERAL = "forward", "backward", "lateral"


@dataclass(frozen=True)
class StatusInfo:
    name: str | None
    category: str | None


@dataclass(frozen=True)
class Directory:
    """The stored statuses and projects by id (deleted ones included: their names are still
    the best known), what transitions are named with."""

    statuses: Mapping[str, StatusInfo]
    project_keys: Mapping[str, str]

    @classmethod
    def from_documents(
        cls, statuses: Iterable[Mapping[str, Any]], projects: Iterable[Mapping[str, Any]] = ()
    ) -> Directory:
        return cls(
            {str(doc["status_id"]): StatusInfo(doc.get("name"), doc.get("status_category"))
             for doc in statuses if doc.get("status_id") is not None},
            {str(doc["project_id"]): str(doc["key"])
             for doc in projects if doc.get("project_id") is not None and doc.get("key")},
        )


def direction(previous: str | None, current: str | None) -> str | None:
    """forward / backward / lateral by category order; None when either is unknown."""
    if previous not in CATEGORY_ORDER or current not in CATEGORY_ORDER:
        return None
    step = CATEGORY_ORDER[current] - CATEGORY_ORDER[previous]
    return FORWARD if step > 0 else BACKWARD if step < 0 else LATERAL


def _project_at(projects: Sequence[Interval], moment: datetime) -> str | None:
    found = None
    for interval in projects:
        if interval.valid_from <= moment:
            found = interval.value
    if found is None and projects:
        found = projects[0].value
    return found if isinstance(found, str) else None


def status_transition_rows(
    issue: Mapping[str, Any],
    status: Sequence[Interval],
    directory: Directory,
    project: Sequence[Interval] = (),
) -> list[dict[str, Any]]:
    """The `jira_issue_status_transitions` documents of one issue (without connection_id), from
    its status intervals (and project intervals, for an issue moved between projects).

    A status missing from `jira_statuses` keeps the changelog's name and an unknown category
    (its direction is then None); the interval at creation has no previous status and no
    direction; the open interval has no `left_at` and no `minutes_in_status` (it is still
    running: count it up to now where needed).
    """
    current_project = str(issue["project_id"]) if issue.get("project_id") is not None else None
    rows = []
    previous: tuple[str | None, str | None] | None = None
    for interval in status:
        status_id = interval.value if isinstance(interval.value, str) else None
        info = directory.statuses.get(status_id or "")
        name = info.name if info and info.name else (
            interval.value_string if isinstance(interval.value_string, str) else None)
        category = info.category if info else None
        project_id = _project_at(project, interval.valid_from) or current_project
        project_key = directory.project_keys.get(project_id or "") or (
            issue.get("project_key") if project_id == current_project else None)
        minutes = None
        if interval.valid_until is not None:
            minutes = (interval.valid_until - interval.valid_from).total_seconds() / 60
        rows.append({
            "issue_id": str(issue["issue_id"]),
            "issue_key": issue.get("key"),
            "project_id": project_id,
            "project_key": project_key,
            "status_id": status_id,
            "status_name": name,
            "status_category": category,
            "previous_status_id": previous[0] if previous else None,
            "entered_at": interval.valid_from,
            "left_at": interval.valid_until,
            "minutes_in_status": minutes,
            "transition_direction": direction(previous[1], category) if previous else None,
            "author_account_id": interval.author_account_id,
            "history_id": interval.history_id,
            "is_current": interval.valid_until is None,
        })  # fmt: skip
        previous = (status_id, category)
    return rows
