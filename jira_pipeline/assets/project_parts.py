"""`jira_project_versions` and `jira_project_components`: every project's versions and
components, full-refresh dimensions asked project by project."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from jira_pipeline.assets.dimensions import Dimension
from jira_pipeline.jira import JiraClient, JiraNotFound
from jira_pipeline.jira.project_parts import ComponentRecord, VersionRecord
from jira_pipeline.settings import PipelineSettings

SKIPPED = "projects_not_found"  # listed, then 404 when asked (deleted in between)


async def _listed_projects(
    client: JiraClient, settings: PipelineSettings
) -> AsyncIterator[dict[str, Any]]:
    """The projects Jira lists now, archived ones included (their versions still name the
    fix versions of their issues), or those in JIRA_PROJECTS: asked of Jira, not read from
    jira_projects, so a project created since the last projects run has its versions too, and
    the walk never reads the store from its event loop (one request per 50 projects)."""
    async for project in client.projects(archived=True):
        if not settings.projects or project.get("key") in settings.projects:
            yield project


async def _per_project(
    client: JiraClient,
    settings: PipelineSettings,
    counts: dict[str, int],
    rows: Callable[[JiraClient, str], AsyncIterator[dict[str, Any]]],
) -> AsyncIterator[dict[str, Any]]:
    counts.setdefault(SKIPPED, 0)
    async for project in _listed_projects(client, settings):
        ref = str(project.get("id") or project.get("key"))
        try:
            async for row in rows(client, ref):
                yield _with_project_key(row, project)
        except JiraNotFound:
            # Deleted between the listing and this request: its rows are gone with it.
            counts[SKIPPED] += 1


def _with_project_key(row: dict[str, Any], project: dict[str, Any]) -> dict[str, Any]:
    """Jira's GET answers leave out a version's `project` (the key, a documented field of
    Version): the walk knows it and fills it in, so documents carry the project key."""
    if isinstance(row, dict) and "project" not in row and isinstance(project.get("key"), str):
        return {**row, "project": project["key"]}
    return row


def _versions(
    client: JiraClient, settings: PipelineSettings, counts: dict[str, int]
) -> AsyncIterator[dict[str, Any]]:
    return _per_project(client, settings, counts, lambda c, ref: c.project_versions(ref))


def _components(
    client: JiraClient, settings: PipelineSettings, counts: dict[str, int]
) -> AsyncIterator[dict[str, Any]]:
    return _per_project(client, settings, counts, lambda c, ref: c.project_components(ref))


PROJECT_VERSIONS = Dimension(
    asset_name="jira_project_versions",
    entity="project_versions",
    description="Every project's versions (releases), archived ones too, with release and "
    "start dates (full refresh; vanished ones marked deleted).",
    record_type=VersionRecord,
    counted_walk=_versions,
    preview_fields=("version_id", "project_key", "name", "released", "release_date"),
)
PROJECT_COMPONENTS = Dimension(
    asset_name="jira_project_components",
    entity="project_components",
    description="Every project's components with their lead and assignee type (full "
    "refresh; vanished ones marked deleted).",
    record_type=ComponentRecord,
    counted_walk=_components,
    preview_fields=("component_id", "project_key", "name", "assignee_type"),
)
PROJECT_PARTS = (PROJECT_VERSIONS, PROJECT_COMPONENTS)
