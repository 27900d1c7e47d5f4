"""Records of Jira's reference data: issue types, priorities, resolutions, status categories
(what the ids in an issue's `issuetype`, `priority`, `resolution` and status category mean)."""

from __future__ import annotations

from typing import Any, Self

from jira_pipeline.jira.models import JiraRecord, _required_id


class IssueTypeRecord(JiraRecord):
    issue_type_id: str
    name: str | None
    description: str | None
    subtask: bool | None
    hierarchy_level: int | None  # 1 epic, 0 standard, -1 sub-task (Cloud; absent on old DC)
    scope_project_id: str | None  # team-managed projects' own issue types

    @classmethod
    def from_raw(cls, raw: dict[str, Any], connection_id: str) -> Self:
        raw, type_id = _required_id(raw, connection_id, "issue type")
        scope = raw.get("scope")
        project = scope.get("project") if isinstance(scope, dict) else None
        return cls(
            connection_id=connection_id,
            raw=raw,
            issue_type_id=type_id,
            name=_text(raw.get("name")),
            description=_text(raw.get("description")),
            subtask=raw["subtask"] if isinstance(raw.get("subtask"), bool) else None,
            hierarchy_level=_int(raw.get("hierarchyLevel")),
            scope_project_id=_text(project.get("id")) if isinstance(project, dict) else None,
        )


class PriorityRecord(JiraRecord):
    priority_id: str
    name: str | None
    description: str | None
    status_color: str | None
    is_default: bool | None

    @classmethod
    def from_raw(cls, raw: dict[str, Any], connection_id: str) -> Self:
        raw, priority_id = _required_id(raw, connection_id, "priority")
        return cls(
            connection_id=connection_id,
            raw=raw,
            priority_id=priority_id,
            name=_text(raw.get("name")),
            description=_text(raw.get("description")),
            status_color=_text(raw.get("statusColor")),
            is_default=raw["isDefault"] if isinstance(raw.get("isDefault"), bool) else None,
        )


class ResolutionRecord(JiraRecord):
    resolution_id: str
    name: str | None
    description: str | None
    is_default: bool | None

    @classmethod
    def from_raw(cls, raw: dict[str, Any], connection_id: str) -> Self:
        raw, resolution_id = _required_id(raw, connection_id, "resolution")
        return cls(
            connection_id=connection_id,
            raw=raw,
            resolution_id=resolution_id,
            name=_text(raw.get("name")),
            description=_text(raw.get("description")),
            is_default=raw["default"] if isinstance(raw.get("default"), bool) else None,
        )


class StatusCategoryRecord(JiraRecord):
    status_category_id: str  # Jira sends an integer; stored as text like every other id
    key: str | None  # "new", "indeterminate", "done" (and "undefined")
    name: str | None
    color_name: str | None

    @classmethod
    def from_raw(cls, raw: dict[str, Any], connection_id: str) -> Self:
        raw, category_id = _required_id(raw, connection_id, "status category")
        return cls(
            connection_id=connection_id,
            raw=raw,
            status_category_id=category_id,
            key=_text(raw.get("key")),
            name=_text(raw.get("name")),
            color_name=_text(raw.get("colorName")),
        )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _id_text(value: Any) -> str | None:
    """An id Jira may send as a number (`projectId`, a board's or sprint's id), as text like
    every other stored id; None for anything else (booleans and empty strings included)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and value else None
