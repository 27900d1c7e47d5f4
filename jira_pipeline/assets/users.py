"""`jira_users`: every user account, active or not, people and apps."""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any

from jira_pipeline.assets.dimensions import Dimension
from jira_pipeline.jira import JiraClient, UserRecord
from jira_pipeline.settings import PipelineSettings


def _users(client: JiraClient, settings: PipelineSettings) -> AsyncIterable[dict[str, Any]]:
    return client.users()


USERS = Dimension(
    asset_name="jira_users",
    entity="users",
    description="Jira users, including inactive and app accounts (full refresh).",
    record_type=UserRecord,
    walk=_users,
    preview_fields=("account_id", "display_name", "account_type", "active"),
)
