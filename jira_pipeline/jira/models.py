"""Records the pipeline stores: key fields pulled out of Jira's JSON, the whole JSON as `raw`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from jira_pipeline.timeutil import parse_jira_datetime

# statuses/search names categories by enum, the other endpoints by object; store the names
# users see in Jira's UI either way.
_CATEGORY_NAMES = {"TODO": "To Do", "IN_PROGRESS": "In Progress", "DONE": "Done"}
_CATEGORY_KEYS = {"new": "To Do", "indeterminate": "In Progress", "done": "Done"}


def _get(raw: Any, *path: str) -> Any:
    value = raw
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _category_name(category: Any) -> str | None:
    if isinstance(category, str):
        return _CATEGORY_NAMES.get(category, category)
    if isinstance(category, dict):
        if category.get("name"):
            return str(category["name"])
        key = category.get("key")
        return _CATEGORY_KEYS.get(key, key) if key is not None else None
    return None


def _user_id(user: Any) -> str | None:
    """Cloud identifies users by accountId; Data Center by key (or name on old servers)."""
    if not isinstance(user, dict):
        return None
    for field in ("accountId", "key", "name"):
        if user.get(field):
            return str(user[field])
    return None


class JiraRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    connection_id: str
    raw: dict[str, Any] = Field(repr=False)


class IssueRecord(JiraRecord):
    issue_id: str
    key: str
    project_id: str | None
    project_key: str | None
    summary: str | None
    issue_type: str | None
    status_id: str | None
    status_name: str | None
    status_category: str | None
    priority: str | None
    assignee_account_id: str | None
    reporter_account_id: str | None
    labels: list[str]
    created: datetime | None
    updated: datetime
    resolution_date: datetime | None
    parent_key: str | None

    @classmethod
    def from_raw(cls, raw: dict[str, Any], connection_id: str) -> IssueRecord:
        fields = raw.get("fields") or {}
        updated = parse_jira_datetime(fields.get("updated"))
        if updated is None:
            raise ValueError(f"issue {raw.get('key')!r} has no `updated` field; ask for it")
        return cls(
            connection_id=connection_id,
            raw=raw,
            issue_id=str(raw["id"]),
            key=str(raw["key"]),
            project_id=_str_or_none(_get(fields, "project", "id")),
            project_key=_str_or_none(_get(fields, "project", "key")),
            summary=fields.get("summary"),
            issue_type=_str_or_none(_get(fields, "issuetype", "name")),
            status_id=_str_or_none(_get(fields, "status", "id")),
            status_name=_str_or_none(_get(fields, "status", "name")),
            status_category=_category_name(_get(fields, "status", "statusCategory")),
            priority=_str_or_none(_get(fields, "priority", "name")),
            assignee_account_id=_user_id(fields.get("assignee")),
            reporter_account_id=_user_id(fields.get("reporter")),
            labels=[str(label) for label in fields.get("labels") or []],
            created=parse_jira_datetime(fields.get("created")),
            updated=updated,
            resolution_date=parse_jira_datetime(fields.get("resolutiondate")),
            parent_key=_str_or_none(_get(fields, "parent", "key")),
        )


class ProjectRecord(JiraRecord):
    project_id: str
    key: str
    name: str | None
    project_type: str | None
    category: str | None
    lead_account_id: str | None

    @classmethod
    def from_raw(cls, raw: dict[str, Any], connection_id: str) -> ProjectRecord:
        return cls(
            connection_id=connection_id,
            raw=raw,
            project_id=str(raw["id"]),
            key=str(raw["key"]),
            name=raw.get("name"),
            project_type=raw.get("projectTypeKey"),
            category=_str_or_none(_get(raw, "projectCategory", "name")),
            lead_account_id=_user_id(raw.get("lead")),
        )


class StatusRecord(JiraRecord):
    status_id: str
    name: str | None
    status_category: str | None
    scope_project_id: str | None

    @classmethod
    def from_raw(cls, raw: dict[str, Any], connection_id: str) -> StatusRecord:
        scope = raw.get("scope") or {}
        scoped = isinstance(scope, dict) and scope.get("type") == "PROJECT"
        return cls(
            connection_id=connection_id,
            raw=raw,
            status_id=str(raw["id"]),
            name=raw.get("name"),
            status_category=_category_name(raw.get("statusCategory")),
            scope_project_id=_str_or_none(_get(scope, "project", "id")) if scoped else None,
        )


class UserRecord(JiraRecord):
    account_id: str
    display_name: str | None
    account_type: str | None
    active: bool | None
    time_zone: str | None
    email_address: str | None

    @classmethod
    def from_raw(cls, raw: dict[str, Any], connection_id: str) -> UserRecord:
        account_id = _user_id(raw)
        if account_id is None:
            raise ValueError("user without accountId, key or name")
        return cls(
            connection_id=connection_id,
            raw=raw,
            account_id=account_id,
            display_name=raw.get("displayName"),
            account_type=raw.get("accountType"),
            active=raw.get("active"),
            time_zone=raw.get("timeZone"),
            email_address=raw.get("emailAddress"),
        )
