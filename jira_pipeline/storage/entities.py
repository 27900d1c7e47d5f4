"""Where each Jira entity is stored, its natural key, and how a document's `_id` is derived."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

# Fixed forever: changing it would give every stored document a new `_id`.
JIRA_PIPELINE_NAMESPACE = uuid.UUID("6f1c1d2e-8b0a-5c3e-9a51-4a1f0e7d2b90")


class UnknownEntityError(ValueError):
    """An entity or collection name that the storage layer does not know."""


@dataclass(frozen=True)
class EntitySpec:
    """How one Jira entity is stored."""

    name: str  # "issues"
    collection: str  # "jira_issues"
    id_field: str  # the Jira id inside a record: "issue_id"
    version_field: str | None  # a newer value wins; None = last write wins
    datetime_fields: tuple[str, ...]  # top-level fields stored as BSON dates
    key_fields: tuple[str, ...]  # what load_input returns (never `raw`)


ISSUES = EntitySpec(
    name="issues",
    collection="jira_issues",
    id_field="issue_id",
    version_field="updated",
    datetime_fields=("created", "updated", "resolution_date"),
    key_fields=(
        "connection_id", "issue_id", "key", "project_id", "project_key", "summary", "issue_type",
        "status_id", "status_name", "status_category", "priority", "assignee_account_id",
        "reporter_account_id", "labels", "created", "updated", "resolution_date", "parent_key",
        "parent_id", "is_deleted", "deleted_at", "synced_at",
    ),
)  # fmt: skip
PROJECTS = EntitySpec(
    name="projects",
    collection="jira_projects",
    id_field="project_id",
    version_field=None,
    datetime_fields=(),
    key_fields=(
        "connection_id", "project_id", "key", "name", "project_type", "category",
        "lead_account_id", "is_deleted", "deleted_at", "synced_at",
    ),
)  # fmt: skip
STATUSES = EntitySpec(
    name="statuses",
    collection="jira_statuses",
    id_field="status_id",
    version_field=None,
    datetime_fields=(),
    key_fields=(
        "connection_id", "status_id", "name", "status_category", "scope_project_id",
        "is_deleted", "deleted_at", "synced_at",
    ),
)  # fmt: skip
USERS = EntitySpec(
    name="users",
    collection="jira_users",
    id_field="account_id",
    version_field=None,
    datetime_fields=(),
    key_fields=(
        "connection_id", "account_id", "display_name", "account_type", "active", "time_zone",
        "email_address", "is_deleted", "deleted_at", "synced_at",
    ),
)  # fmt: skip
# One per worklog, from Jira's worklog feeds; `updated` guards against a stale answer.
WORKLOGS = EntitySpec(
    name="worklogs",
    collection="jira_worklogs",
    id_field="worklog_id",
    version_field="updated",
    datetime_fields=("started", "created", "updated"),
    key_fields=(
        "connection_id", "worklog_id", "issue_id", "author_account_id",
        "update_author_account_id", "started", "time_spent_seconds", "comment", "created",
        "updated", "is_deleted", "deleted_at", "synced_at",
    ),
)  # fmt: skip

# Jira's field catalog (system and custom fields): what field ids in changelogs and issues mean.
FIELDS = EntitySpec(
    name="fields",
    collection="jira_fields",
    id_field="field_id",
    version_field=None,
    datetime_fields=(),
    key_fields=(
        "connection_id", "field_id", "key", "name", "custom", "schema_type", "schema_items",
        "schema_custom", "clause_names", "is_deleted", "deleted_at", "synced_at",
    ),
)  # fmt: skip
# One document per issue comment; `updated` moves when the comment is edited.
COMMENTS = EntitySpec(
    name="comments",
    collection="jira_issue_comments",
    id_field="comment_id",
    version_field=None,
    datetime_fields=("created", "updated"),
    key_fields=(
        "connection_id", "comment_id", "issue_id", "issue_key", "author_account_id",
        "update_author_account_id", "created", "updated", "body_text", "visibility",
        "is_deleted", "deleted_at", "synced_at",
    ),
)  # fmt: skip

ENTITIES: dict[str, EntitySpec] = {spec.name: spec for spec in (PROJECTS, STATUSES, USERS, ISSUES)}
ENTITIES.update({spec.name: spec for spec in (FIELDS, COMMENTS)})
# One document per history entry (issue 13); histories are immutable, so the last write wins.
ISSUE_CHANGELOGS = EntitySpec(
    name="issue_changelogs",
    collection="jira_issue_changelogs",
    id_field="history_id",
    version_field=None,
    datetime_fields=("created",),
    key_fields=(
        "connection_id", "issue_id", "issue_key", "history_id", "author_account_id", "created",
        "items", "is_deleted", "deleted_at", "synced_at",
    ),
)  # fmt: skip
ENTITIES[ISSUE_CHANGELOGS.name] = ISSUE_CHANGELOGS
ENTITIES[WORKLOGS.name] = WORKLOGS
# The reference data issues point at by id (issue 14): full-refresh dimensions.
ISSUE_TYPES = EntitySpec(
    name="issue_types",
    collection="jira_issue_types",
    id_field="issue_type_id",
    version_field=None,
    datetime_fields=(),
    key_fields=(
        "connection_id", "issue_type_id", "name", "description", "subtask", "hierarchy_level",
        "scope_project_id", "is_deleted", "deleted_at", "synced_at",
    ),
)  # fmt: skip
PRIORITIES = EntitySpec(
    name="priorities",
    collection="jira_priorities",
    id_field="priority_id",
    version_field=None,
    datetime_fields=(),
    key_fields=(
        "connection_id", "priority_id", "name", "description", "status_color", "is_default",
        "is_deleted", "deleted_at", "synced_at",
    ),
)  # fmt: skip
RESOLUTIONS = EntitySpec(
    name="resolutions",
    collection="jira_resolutions",
    id_field="resolution_id",
    version_field=None,
    datetime_fields=(),
    key_fields=(
        "connection_id", "resolution_id", "name", "description", "is_default", "is_deleted",
        "deleted_at", "synced_at",
    ),
)  # fmt: skip
STATUS_CATEGORIES = EntitySpec(
    name="status_categories",
    collection="jira_status_categories",
    id_field="status_category_id",
    version_field=None,
    datetime_fields=(),
    key_fields=(
        "connection_id", "status_category_id", "key", "name", "color_name", "is_deleted",
        "deleted_at", "synced_at",
    ),
)  # fmt: skip
REFERENCE_ENTITIES = (ISSUE_TYPES, PRIORITIES, RESOLUTIONS, STATUS_CATEGORIES)
ENTITIES.update({spec.name: spec for spec in REFERENCE_ENTITIES})
# Jira Software's boards and sprints (issue 14): full-refresh dimensions.
BOARDS = EntitySpec(
    name="boards",
    collection="jira_boards",
    id_field="board_id",
    version_field=None,
    datetime_fields=(),
    key_fields=(
        "connection_id", "board_id", "name", "type", "project_id", "project_key", "is_deleted",
        "deleted_at", "synced_at",
    ),
)  # fmt: skip
SPRINTS = EntitySpec(
    name="sprints",
    collection="jira_sprints",
    id_field="sprint_id",
    version_field=None,
    datetime_fields=("start_date", "end_date", "complete_date", "activated_date",
                     "created_date"),
    key_fields=(
        "connection_id", "sprint_id", "name", "state", "board_ids", "origin_board_id", "goal",
        "start_date", "end_date", "complete_date", "activated_date", "created_date",
        "is_deleted", "deleted_at", "synced_at",
    ),
)  # fmt: skip
ENTITIES.update({spec.name: spec for spec in (BOARDS, SPRINTS)})
# A project's versions and components (issue 14): full-refresh dimensions.
PROJECT_VERSIONS = EntitySpec(
    name="project_versions",
    collection="jira_project_versions",
    id_field="version_id",
    version_field=None,
    datetime_fields=("release_date", "start_date"),
    key_fields=(
        "connection_id", "version_id", "project_id", "project_key", "name", "description",
        "released", "archived", "overdue", "release_date", "start_date", "is_deleted",
        "deleted_at", "synced_at",
    ),
)  # fmt: skip
PROJECT_COMPONENTS = EntitySpec(
    name="project_components",
    collection="jira_project_components",
    id_field="component_id",
    version_field=None,
    datetime_fields=(),
    key_fields=(
        "connection_id", "component_id", "project_id", "project_key", "name", "description",
        "lead_account_id", "assignee_type", "is_deleted", "deleted_at", "synced_at",
    ),
)  # fmt: skip
PROJECT_PART_ENTITIES = (PROJECT_VERSIONS, PROJECT_COMPONENTS)
ENTITIES.update({spec.name: spec for spec in PROJECT_PART_ENTITIES})
CONNECTIONS_COLLECTION = "jira_connections"


def entity_spec(name: str) -> EntitySpec:
    """Look an entity up by its name ("issues") or its collection ("jira_issues")."""
    spec = ENTITIES.get(name)
    if spec is not None:
        return spec
    for candidate in ENTITIES.values():
        if candidate.collection == name:
            return candidate
    known = ", ".join(sorted(ENTITIES))
    raise UnknownEntityError(f"unknown Jira entity {name!r} (known: {known})")


def document_id(connection_id: str, entity: str, jira_id: str) -> uuid.UUID:
    """The `_id` of an entity document: stable across runs, processes and machines."""
    return uuid.uuid5(JIRA_PIPELINE_NAMESPACE, f"{connection_id}:{entity}:{jira_id}")


@dataclass(frozen=True)
class DerivedSpec:
    """A collection computed from stored entities (not fetched from Jira): written only by the
    IO manager, a recomputed range replacing its rows."""

    name: str  # "issue_daily_summary"
    collection: str  # "jira_issue_daily_summary"
    key_fields: tuple[str, ...]  # the natural key (unique index); `_id` is derived from it
    range_field: str  # a recomputed [start, end) of this field replaces the range's rows
    count_fields: tuple[str, ...]


# One row per UTC day, project and status of the issues updated that day; `created` and
# `resolved` count the project's issues created and resolved that day (the same on each of the
# day's status rows; a day with none updated has one "(none updated)" row).
DAILY_SUMMARY = DerivedSpec(
    name="issue_daily_summary",
    collection="jira_issue_daily_summary",
    key_fields=("connection_id", "day", "project_key", "status_name"),
    range_field="day",
    count_fields=("issues_updated", "created", "resolved"),
)


# One row per issue, field and interval of its value (`history/fields.py`); an issue's rows are
# recomputed whole and replace its stored ones (`storage/derived_rows.py`).
FIELD_HISTORY = DerivedSpec(
    name="issue_field_history",
    collection="jira_issue_field_history",
    key_fields=("connection_id", "issue_id", "field_id", "valid_from"),
    range_field="issue_id",
    count_fields=(),
)
# One row per issue and status interval (`history/transitions.py`), replaced per issue.
STATUS_TRANSITIONS = DerivedSpec(
    name="issue_status_transitions",
    collection="jira_issue_status_transitions",
    key_fields=("connection_id", "issue_id", "entered_at"),
    range_field="issue_id",
    count_fields=(),
)
# One row per issue and issue link, as that issue sees it (`assets/issue_links.py`), replaced
# per issue.
ISSUE_LINKS = DerivedSpec(
    name="issue_links",
    collection="jira_issue_links",
    key_fields=("connection_id", "issue_id", "link_id"),
    range_field="issue_id",
    count_fields=(),
)
# One row per UTC day, project and status (`history/time_in_status.py`), replaced per day range.
TIME_IN_STATUS_DAILY = DerivedSpec(
    name="time_in_status_daily",
    collection="jira_time_in_status_daily",
    key_fields=("connection_id", "project_key", "status_id", "day"),
    range_field="day",
    count_fields=("issues_in_status", "transitions"),
)
# One row per sprint and issue ever in it (`history/sprints.py`), replaced per issue.
SPRINT_ISSUES = DerivedSpec(
    name="sprint_issues",
    collection="jira_sprint_issues",
    key_fields=("connection_id", "sprint_id", "issue_id"),
    range_field="issue_id",
    count_fields=(),
)
# One row per sprint and project of its issues, recomputed whole each run.
SPRINT_REPORT = DerivedSpec(
    name="sprint_report",
    collection="jira_sprint_report",
    key_fields=("connection_id", "sprint_id", "project_key"),
    range_field="sprint_id",
    count_fields=(
        "issues_committed", "issues_added", "issues_removed", "issues_completed",
        "issues_carried_over", "story_points_committed", "story_points_completed",
    ),
)  # fmt: skip
