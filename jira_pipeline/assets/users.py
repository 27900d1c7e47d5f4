"""`jira_users`: every user account, active or not, people and apps."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from pymongo.database import Database

from jira_pipeline.assets.dimensions import Dimension
from jira_pipeline.assets.settings import PipelineSettings
from jira_pipeline.jira import JiraClient, UserRecord

# The user ids an issue document holds (Cloud accountId; Data Center key or name).
USER_REFERENCES = ("assignee_account_id", "reporter_account_id")


def _users(client: JiraClient, settings: PipelineSettings) -> AsyncIterable[dict[str, Any]]:
    return client.users()


def referenced_user_ids(db: Database, connection_id: str) -> set[str]:
    """Every user id a live stored issue references (one projected pass over the issues)."""
    live = {"connection_id": connection_id, "is_deleted": {"$ne": True}}
    projection = {**dict.fromkeys(USER_REFERENCES, 1), "_id": 0}
    found: set[str] = set()
    for doc in db["jira_issues"].find(live, projection):
        found.update(str(doc[name]) for name in USER_REFERENCES if doc.get(name))
    return found


class ReferencedUsers:
    """User search can leave people out (Data Center caps and truncates its listing; Cloud
    hides some accounts): each user an issue references that the listing missed is fetched by
    its id, so every reference resolves."""

    def referenced(self, db: Database, connection_id: str) -> set[str]:
        return referenced_user_ids(db, connection_id)

    async def fetch(self, client: JiraClient, missing: list[str]) -> AsyncIterator[dict[str, Any]]:
        for user_id in missing:
            user = await client.user(user_id)
            if user is not None:
                yield user


USERS = Dimension(
    asset_name="jira_users",
    entity="users",
    description="Jira users, including inactive and app accounts (full refresh; users that "
    "issues reference but user search did not list are fetched one by one).",
    record_type=UserRecord,
    walk=_users,
    preview_fields=("account_id", "display_name", "account_type", "active"),
    completion=ReferencedUsers(),
)
