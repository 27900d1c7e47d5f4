"""Field names by field id, read from `jira_fields` (read-only: the IO manager writes it)."""

from __future__ import annotations

from pymongo.database import Database

from jira_pipeline.storage.entities import entity_spec


def field_names(
    db: Database, connection_id: str, *, include_deleted: bool = True
) -> dict[str, str]:
    """`{field_id: name}` of the connection's stored fields (`customfield_10020` -> `Sprint`).

    Fields Jira no longer lists are included by default: histories still name them.
    """
    selector: dict[str, object] = {"connection_id": connection_id}
    if not include_deleted:
        selector["is_deleted"] = {"$ne": True}
    collection = db[entity_spec("fields").collection]
    return {
        str(doc["field_id"]): str(doc["name"])
        for doc in collection.find(selector, {"field_id": 1, "name": 1, "_id": 0})
        if doc.get("field_id") is not None and doc.get("name") is not None
    }
