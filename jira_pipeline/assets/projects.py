"""`jira_projects`: every project the account can browse (or those in JIRA_PROJECTS)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from jira_pipeline.assets.dimensions import Dimension
from jira_pipeline.jira import JiraClient, ProjectRecord
from jira_pipeline.settings import PipelineSettings


async def _projects(
    client: JiraClient, settings: PipelineSettings
) -> AsyncIterator[dict[str, Any]]:
    async for project in client.projects():
        if not settings.projects or project.get("key") in settings.projects:
            yield project


PROJECTS = Dimension(
    asset_name="jira_projects",
    entity="projects",
    description="Jira projects (full refresh; projects gone from Jira are kept, is_deleted: true).",
    record_type=ProjectRecord,
    walk=_projects,
    prefetch=True,
    preview_fields=("key", "name", "project_type", "category"),
)
