"""Records the pipeline stores: key fields pulled out of Jira's JSON, the whole JSON as `raw`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from jira_pipeline.timeutil import TimestampError, parse_jira_datetime

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


class RecordRejected(ValueError):
    """Jira JSON that cannot become a record at all (no id, no key, no usable `updated`).

    It carries what the dead letter in `jira_sync_errors` needs; the message names the key.
    """

    def __init__(
        self, reason: str, *, raw: Any, connection_id: str, jira_id: str | None, key: str | None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw
        self.connection_id = connection_id
        self.jira_id = jira_id
        self.key = key


class FieldReader:
    """Reads key fields out of Jira JSON, turning a value of an unexpected type into None.

    Jira sites hold odd data (a script writing `labels` as a string, an app sending `priority`
    by name): one such value must not fail the run, nor be stored mangled. The field is stored
    as null, the raw JSON keeps the value, and `nulled` names the field for the run's metadata.
    A missing or null value is not odd: it is simply None.
    """

    def __init__(self, fields: Any) -> None:
        self.fields = fields if isinstance(fields, dict) else {}
        self.nulled: list[str] = []

    def _odd(self, name: str) -> None:
        self.nulled.append(name)

    def text(self, name: str, *path: str) -> str | None:
        """A string (or an id Jira sends as a number) at `path`; anything else is odd."""
        value = _get(self.fields, *path)
        if value is None:
            return None
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return str(value)
        self._odd(name)
        return None

    def obj(self, name: str, field: str) -> dict[str, Any] | None:
        """An object-valued field (`status`, `priority`, `assignee`, ...); anything else is odd."""
        value = self.fields.get(field)
        if value is None or isinstance(value, dict):
            return value
        self._odd(name)
        return None

    def text_in(self, name: str, field: str, *path: str) -> str | None:
        """A string inside an object-valued field: odd if the field or the string is."""
        value = self.obj(name, field)
        if value is None:
            return None
        inner = _get(value, *path)
        if inner is None or isinstance(inner, str) or (
            isinstance(inner, int) and not isinstance(inner, bool)
        ):
            return None if inner is None else str(inner)
        self._odd(name)
        return None

    def labels(self, name: str, field: str) -> list[str] | None:
        """A list of strings; a string is odd, never split into its characters."""
        value = self.fields.get(field)
        if value is None:
            return []
        if isinstance(value, list) and all(isinstance(label, str) for label in value):
            return list(value)
        self._odd(name)
        return None

    def timestamp(self, name: str, field: str) -> datetime | None:
        value = self.fields.get(field)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                return parse_jira_datetime(value)
            except TimestampError:
                pass
        self._odd(name)
        return None


class JiraRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    connection_id: str
    raw: dict[str, Any] = Field(repr=False)
    # Key fields stored as null because Jira sent a value of an unexpected type (not stored).
    nulled_fields: tuple[str, ...] = Field(default=(), exclude=True, repr=False)

    @classmethod
    def from_raw(cls, raw: dict[str, Any], connection_id: str) -> Self:
        """The record of Jira's JSON `raw`: key fields extracted, `raw` kept whole."""
        raise NotImplementedError(f"{cls.__name__} does not say how to read Jira's JSON")


def _required_id(
    raw: Any, connection_id: str, entity: str, *, field: str = "id"
) -> tuple[dict[str, Any], str]:
    """`raw` as a dict and its Jira id, or RecordRejected naming what is missing."""
    if not isinstance(raw, dict):
        raise RecordRejected(
            f"a {entity} from Jira is not a JSON object ({type(raw).__name__})",
            raw=raw, connection_id=connection_id, jira_id=None, key=None,
        )
    value = raw.get(field)
    key = raw.get("key")
    key_text = str(key) if isinstance(key, str | int) and not isinstance(key, bool) else None
    if value is None or value == "" or isinstance(value, dict | list | bool):
        raise RecordRejected(
            f"{entity} {key_text or '(no key)'} has no usable `{field}`: cannot store it",
            raw=raw, connection_id=connection_id, jira_id=None, key=key_text,
        )
    return raw, str(value)


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
    labels: list[str] | None
    created: datetime | None
    updated: datetime
    resolution_date: datetime | None
    parent_key: str | None
    parent_id: str | None = None  # epics' children and sub-tasks alike (Cloud's `parent`)

    @classmethod
    def from_raw(
        cls, raw: dict[str, Any], connection_id: str, epic_link_field: str | None = None
    ) -> Self:
        """The record of one issue; RecordRejected (dead-lettered by the sync) when the issue has
        no id, no key or no usable `updated`.

        An issue without `updated` cannot be version-guarded (a newer stored copy could be
        overwritten by it) nor placed in a daily partition, so it is rejected rather than stored
        with a null `updated`; its next edit in Jira stores it and clears the dead letter.
        """
        raw, issue_id = _required_id(raw, connection_id, "issue")
        key = raw.get("key")
        if not isinstance(key, str) or not key:
            raise RecordRejected(
                f"issue {issue_id} has no usable `key`: cannot store it",
                raw=raw, connection_id=connection_id, jira_id=issue_id, key=None,
            )
        read = FieldReader(raw.get("fields"))
        updated = read.timestamp("updated", "updated")
        if updated is None:
            sent = read.fields.get("updated")
            problem = "no `updated` field; ask for it" if sent is None else (
                f"an unusable `updated` ({type(sent).__name__} {str(sent)[:40]!r})"
            )
            raise RecordRejected(
                f"issue {key} has {problem}: without it the issue cannot be version-guarded "
                "or placed in a partition",
                raw=raw, connection_id=connection_id, jira_id=issue_id, key=key,
            )
        status = read.obj("status_id", "status") or {}
        category = status.get("statusCategory")
        if category is not None and not isinstance(category, str | dict):
            read.nulled.append("status_category")
        return cls(
            connection_id=connection_id,
            raw=raw,
            issue_id=issue_id,
            key=key,
            project_id=read.text_in("project_id", "project", "id"),
            project_key=read.text_in("project_key", "project", "key"),
            summary=read.text("summary", "summary"),
            issue_type=read.text_in("issue_type", "issuetype", "name"),
            status_id=read.text_in("status_id", "status", "id") if status else None,
            status_name=read.text_in("status_name", "status", "name") if status else None,
            status_category=_category_name(category),
            priority=read.text_in("priority", "priority", "name"),
            assignee_account_id=_user_id(read.obj("assignee_account_id", "assignee")),
            reporter_account_id=_user_id(read.obj("reporter_account_id", "reporter")),
            labels=read.labels("labels", "labels"),
            created=read.timestamp("created", "created"),
            updated=updated,
            resolution_date=read.timestamp("resolution_date", "resolutiondate"),
            # Data Center's company-managed epics name their children's epic by key in the
            # Epic Link field (`epic_link_field`), not in `parent`: its id stays unknown.
            parent_key=read.text_in("parent_key", "parent", "key") or (
                read.text("parent_key", epic_link_field) if epic_link_field else None),
            parent_id=read.text_in("parent_id", "parent", "id"),
            nulled_fields=tuple(dict.fromkeys(read.nulled)),
        )


class ProjectRecord(JiraRecord):
    project_id: str
    key: str
    name: str | None
    project_type: str | None
    category: str | None
    lead_account_id: str | None

    @classmethod
    def from_raw(cls, raw: dict[str, Any], connection_id: str) -> Self:
        raw, project_id = _required_id(raw, connection_id, "project")
        return cls(
            connection_id=connection_id,
            raw=raw,
            project_id=project_id,
            key=str(raw.get("key") or project_id),
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
    def from_raw(cls, raw: dict[str, Any], connection_id: str) -> Self:
        raw, status_id = _required_id(raw, connection_id, "status")
        scope = raw.get("scope") or {}
        scoped = isinstance(scope, dict) and scope.get("type") == "PROJECT"
        return cls(
            connection_id=connection_id,
            raw=raw,
            status_id=status_id,
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
    def from_raw(cls, raw: dict[str, Any], connection_id: str) -> Self:
        account_id = _user_id(raw)
        if account_id is None:
            raise RecordRejected(
                "user without accountId, key or name: cannot store it",
                raw=raw, connection_id=connection_id, jira_id=None, key=None,
            )
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
