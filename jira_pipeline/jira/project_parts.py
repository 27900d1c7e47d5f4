"""Records of a project's versions (what an issue's `fixVersions` and `versions` name) and
components (what its `components` name)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Self

from jira_pipeline.jira.models import JiraRecord, _required_id, _user_id
from jira_pipeline.jira.reference import _id_text, _text


class VersionRecord(JiraRecord):
    version_id: str
    project_id: str | None
    project_key: str | None  # Version.project: absent from Jira's answers, set by the walk
    name: str | None
    description: str | None
    released: bool | None
    archived: bool | None
    overdue: bool | None  # Jira sends it for unreleased versions only
    release_date: datetime | None  # a date-only value: that day's UTC midnight
    start_date: datetime | None

    @classmethod
    def from_raw(cls, raw: dict[str, Any], connection_id: str) -> Self:
        raw, version_id = _required_id(raw, connection_id, "version")
        return cls(
            connection_id=connection_id,
            raw=raw,
            version_id=version_id,
            project_id=_id_text(raw.get("projectId")),
            project_key=_text(raw.get("project")),
            name=_text(raw.get("name")),
            description=_text(raw.get("description")),
            released=_flag(raw.get("released")),
            archived=_flag(raw.get("archived")),
            overdue=_flag(raw.get("overdue")),
            release_date=_day(raw.get("releaseDate")),
            start_date=_day(raw.get("startDate")),
        )


class ComponentRecord(JiraRecord):
    component_id: str
    project_id: str | None
    project_key: str | None
    name: str | None
    description: str | None
    lead_account_id: str | None  # Cloud accountId; Data Center user key (or name)
    assignee_type: str | None  # PROJECT_DEFAULT, COMPONENT_LEAD, PROJECT_LEAD, UNASSIGNED

    @classmethod
    def from_raw(cls, raw: dict[str, Any], connection_id: str) -> Self:
        raw, component_id = _required_id(raw, connection_id, "component")
        lead = _user_id(raw.get("lead")) or _text(raw.get("leadAccountId"))
        return cls(
            connection_id=connection_id,
            raw=raw,
            component_id=component_id,
            project_id=_id_text(raw.get("projectId")),
            project_key=_text(raw.get("project")),
            name=_text(raw.get("name")),
            description=_text(raw.get("description")),
            lead_account_id=lead,
            assignee_type=_text(raw.get("assigneeType")),
        )


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _day(value: Any) -> datetime | None:
    """A `yyyy-mm-dd` date (or a full timestamp's day) as that day's UTC midnight: a BSON date
    that sorts and compares with every other stored datetime; None for anything else."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        day = date.fromisoformat(value[:10])
    except ValueError:
        return None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
