"""The reference data analysts join on: `jira_issue_types`, `jira_priorities`,
`jira_resolutions` and `jira_status_categories`, each a full-refresh dimension."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from jira_pipeline.assets.dimensions import Dimension
from jira_pipeline.jira import JiraClient
from jira_pipeline.jira.reference import (
    IssueTypeRecord,
    PriorityRecord,
    ResolutionRecord,
    StatusCategoryRecord,
)
from jira_pipeline.settings import PipelineSettings


async def _issue_types(
    client: JiraClient, settings: PipelineSettings
) -> AsyncIterator[dict[str, Any]]:
    for issue_type in await client.issue_types():
        yield issue_type


def _priorities(client: JiraClient, settings: PipelineSettings) -> AsyncIterator[dict[str, Any]]:
    return client.priorities()


def _resolutions(client: JiraClient, settings: PipelineSettings) -> AsyncIterator[dict[str, Any]]:
    return client.resolutions()


async def _status_categories(
    client: JiraClient, settings: PipelineSettings
) -> AsyncIterator[dict[str, Any]]:
    for category in await client.status_categories():
        yield category


ISSUE_TYPES = Dimension(
    asset_name="jira_issue_types",
    entity="issue_types",
    description="Jira issue types (Epic, Story, Sub-task...) with their hierarchy level (full "
    "refresh; vanished ones marked deleted).",
    record_type=IssueTypeRecord,
    walk=_issue_types,
    prefetch=True,
    preview_fields=("issue_type_id", "name", "subtask", "hierarchy_level"),
)
PRIORITIES = Dimension(
    asset_name="jira_priorities",
    entity="priorities",
    description="Jira priorities with their colors (full refresh; vanished ones marked deleted).",
    record_type=PriorityRecord,
    walk=_priorities,
    prefetch=True,
    preview_fields=("priority_id", "name", "status_color"),
)
RESOLUTIONS = Dimension(
    asset_name="jira_resolutions",
    entity="resolutions",
    description="Jira resolutions (Done, Won't Do...) (full refresh; vanished ones marked "
    "deleted).",
    record_type=ResolutionRecord,
    walk=_resolutions,
    prefetch=True,
    preview_fields=("resolution_id", "name", "description"),
)
STATUS_CATEGORIES = Dimension(
    asset_name="jira_status_categories",
    entity="status_categories",
    description="Jira status categories (To Do, In Progress, Done) with their keys and colors "
    "(full refresh; vanished ones marked deleted).",
    record_type=StatusCategoryRecord,
    walk=_status_categories,
    prefetch=True,
    preview_fields=("status_category_id", "key", "name", "color_name"),
)
REFERENCE_DATA = (ISSUE_TYPES, PRIORITIES, RESOLUTIONS, STATUS_CATEGORIES)
