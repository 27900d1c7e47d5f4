"""`jira_project_versions` and `jira_project_components`: every project's versions and
components, full-refresh dimensions asked of the projects concurrently."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

from jira_pipeline.assets.dimensions import Dimension, StepListings
from jira_pipeline.jira import JiraClient, JiraNotFound, merge_pages
from jira_pipeline.jira.project_parts import ComponentRecord, VersionRecord
from jira_pipeline.settings import PipelineSettings

SKIPPED = "projects_not_found"  # listed, then 404 when asked (deleted in between)
# The listing of every project, archived ones too, in a step's StepListings: the versions
# walk reads it, the components walk of the same run starts from it.
PROJECT_LISTING = "projects_with_archived"
_ROWS_A_PAGE = 50  # rows a project's walk hands over at once (Jira's own page of them)


async def _listed_projects(
    client: JiraClient, settings: PipelineSettings, listings: StepListings
) -> list[dict[str, Any]]:
    """The projects Jira lists now, archived ones included (their versions still name the
    fix versions of their issues), or those in JIRA_PROJECTS: asked of Jira, not read from
    jira_projects, so a project created since the last projects run has its versions too, and
    the walk never reads the store from its event loop (one request per 50 projects, once a
    run for both walks)."""
    return [
        project
        async for project in listings.rows(PROJECT_LISTING,
                                           lambda: client.projects(archived=True))
        if not settings.projects or project.get("key") in settings.projects
    ]


async def _per_project(
    client: JiraClient,
    settings: PipelineSettings,
    counts: dict[str, int],
    listings: StepListings,
    rows: Callable[[JiraClient, str], AsyncIterator[dict[str, Any]]],
) -> AsyncIterator[dict[str, Any]]:
    """Every listed project's rows, the projects asked concurrently: as many at once as the
    client keeps requests in flight (its limiter paces and bounds them as always), so the
    walk's wall time grows with projects x latency / in-flight, not projects x latency. Rows
    come in the order the answers do."""
    counts.setdefault(SKIPPED, 0)

    async def one_project(project: dict[str, Any]) -> AsyncIterator[list[dict[str, Any]]]:
        ref = str(project.get("id") or project.get("key"))
        page: list[dict[str, Any]] = []
        try:
            async for row in rows(client, ref):
                page.append(_with_project_key(row, project))
                if len(page) >= _ROWS_A_PAGE:
                    yield page
                    page = []
        except JiraNotFound:
            # Deleted between the listing and this request: its rows are gone with it.
            counts[SKIPPED] += 1
        if page:
            yield page

    projects = await _listed_projects(client, settings, listings)
    width = client.limiter.max_in_flight
    async with aclosing(merge_pages((one_project(p) for p in projects), max_running=width,
                                    max_buffered=width)) as pages:
        async for page in pages:
            for row in page:
                yield row


def _with_project_key(row: dict[str, Any], project: dict[str, Any]) -> dict[str, Any]:
    """Jira's GET answers leave out a version's `project` (the key, a documented field of
    Version): the walk knows it and fills it in, so documents carry the project key."""
    if isinstance(row, dict) and "project" not in row and isinstance(project.get("key"), str):
        return {**row, "project": project["key"]}
    return row


def _versions(
    client: JiraClient, settings: PipelineSettings, counts: dict[str, int],
    listings: StepListings,
) -> AsyncIterator[dict[str, Any]]:
    return _per_project(client, settings, counts, listings,
                        lambda c, ref: c.project_versions(ref))


def _components(
    client: JiraClient, settings: PipelineSettings, counts: dict[str, int],
    listings: StepListings,
) -> AsyncIterator[dict[str, Any]]:
    return _per_project(client, settings, counts, listings,
                        lambda c, ref: c.project_components(ref))


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
