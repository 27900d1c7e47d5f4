"""The indexes DESIGN.md promises, created idempotently before the first write."""

from __future__ import annotations

from pymongo import ASCENDING, IndexModel
from pymongo.database import Database

from jira_pipeline.storage.entities import CONNECTIONS_COLLECTION, ENTITIES

# Names are fixed so that re-running is a no-op and users see meaningful names in `getIndexes()`.
INDEXES: dict[str, list[IndexModel]] = {
    CONNECTIONS_COLLECTION: [
        IndexModel([("id", ASCENDING)], name="id_unique", unique=True),
        IndexModel([("cloud_id", ASCENDING)], name="cloud_id"),
    ],
    ENTITIES["projects"].collection: [
        IndexModel(
            [("connection_id", ASCENDING), ("project_id", ASCENDING)],
            name="connection_project_unique",
            unique=True,
        ),
    ],
    ENTITIES["statuses"].collection: [
        IndexModel(
            [("connection_id", ASCENDING), ("status_id", ASCENDING)],
            name="connection_status_unique",
            unique=True,
        ),
    ],
    ENTITIES["users"].collection: [
        IndexModel(
            [("connection_id", ASCENDING), ("account_id", ASCENDING)],
            name="connection_account_unique",
            unique=True,
        ),
    ],
    ENTITIES["issues"].collection: [
        IndexModel(
            [("connection_id", ASCENDING), ("issue_id", ASCENDING)],
            name="connection_issue_unique",
            unique=True,
        ),
        IndexModel([("updated", ASCENDING)], name="updated"),
        IndexModel(
            [("connection_id", ASCENDING), ("project_key", ASCENDING), ("updated", ASCENDING)],
            name="connection_project_updated",
        ),
        IndexModel([("key", ASCENDING)], name="key"),
    ],
}


def ensure_indexes(db: Database, collections: list[str] | None = None) -> None:
    """Create the indexes of `collections` (default: all of them); existing ones are left alone."""
    for name, models in INDEXES.items():
        if collections is not None and name not in collections:
            continue
        existing = db[name].index_information()
        missing = [model for model in models if model.document["name"] not in existing]
        if missing:
            db[name].create_indexes(missing)
