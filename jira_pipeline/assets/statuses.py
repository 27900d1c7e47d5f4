"""`jira_statuses`: every workflow status, global and project-scoped."""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any

from jira_pipeline.assets.dimensions import Dimension
from jira_pipeline.jira import JiraClient, StatusRecord
from jira_pipeline.settings import PipelineSettings


def _statuses(client: JiraClient, settings: PipelineSettings) -> AsyncIterable[dict[str, Any]]:
    return client.statuses()


STATUSES = Dimension(
    asset_name="jira_statuses",
    entity="statuses",
    description="Jira statuses with their categories (full refresh; vanished ones marked deleted).",
    record_type=StatusRecord,
    walk=_statuses,
    prefetch=True,
    preview_fields=("status_id", "name", "status_category", "scope_project_id"),
)
