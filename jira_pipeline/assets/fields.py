"""`jira_fields`: Jira's field catalog, system and custom fields (what a field id means)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from jira_pipeline.assets.dimensions import Dimension
from jira_pipeline.jira import JiraClient
from jira_pipeline.jira.fields import FieldRecord
from jira_pipeline.settings import PipelineSettings


async def _fields(client: JiraClient, settings: PipelineSettings) -> AsyncIterator[dict[str, Any]]:
    # One request: Cloud's /rest/api/3/field and Data Center's /rest/api/2/field list them all.
    for field in await client.fields():
        yield field


FIELDS = Dimension(
    asset_name="jira_fields",
    entity="fields",
    description="Jira's field catalog: system and custom fields with their names, schema and "
    "JQL clause names (full refresh; fields gone from Jira are kept, is_deleted: true).",
    record_type=FieldRecord,
    walk=_fields,
    prefetch=True,
    preview_fields=("field_id", "name", "custom", "schema_type", "schema_custom"),
)
