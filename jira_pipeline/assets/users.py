"""`jira_users`: every user account, active or not, people and apps."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo.database import Database

from jira_pipeline.assets.dimensions import Dimension
from jira_pipeline.jira import JiraClient, UserRecord
from jira_pipeline.settings import PipelineSettings

# Stored users that user search does not list, re-fetched per run (least recently synced first).
REFRESH_PER_RUN = 100
_NEVER = datetime.min.replace(tzinfo=UTC)


def _users(client: JiraClient, settings: PipelineSettings) -> AsyncIterable[dict[str, Any]]:
    return client.users()


@dataclass
class ReferencedUsers:
    """The users live issues reference; `stored` holds when each one already stored was last
    synced."""

    ids: set[str]
    stored: dict[str, datetime]

    def plan(self, missing: list[str]) -> tuple[list[str], set[str]]:
        """Every user not stored yet is fetched; of those stored, the least recently synced
        REFRESH_PER_RUN are, and the rest are kept as stored. A site whose user search never
        lists thousands of its users would otherwise cost thousands of requests every run."""
        new = [user_id for user_id in missing if user_id not in self.stored]
        known = sorted((user_id for user_id in missing if user_id in self.stored),
                       key=lambda user_id: (self.stored[user_id], user_id))
        return new + known[:REFRESH_PER_RUN], set(known[REFRESH_PER_RUN:])


class UnlistedUsers:
    """User search can leave people out (Data Center caps and truncates its listing): each user
    an issue references that the listing missed is fetched by its id, so every reference
    resolves."""

    group = "users"

    def referenced(self, db: Database, connection_id: str, ids: set[str]) -> ReferencedUsers:
        ids = {str(user_id) for user_id in ids}
        live = {"connection_id": connection_id, "is_deleted": {"$ne": True}}
        stored = {
            str(doc["account_id"]): doc.get("synced_at") or _NEVER
            for doc in db["jira_users"].find(live, {"account_id": 1, "synced_at": 1, "_id": 0})
            if doc.get("account_id") in ids
        }
        return ReferencedUsers(ids, stored)

    async def fetch(self, client: JiraClient, ids: list[str]) -> AsyncIterator[dict[str, Any]]:
        for user_id in ids:
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
    completion=UnlistedUsers(),
)
