"""The sprints stored issues reference, read from their sprint field (whichever custom field
`jira_fields` says is Jira Software's sprint field)."""

from __future__ import annotations

from pymongo.database import Database

from jira_pipeline.jira.sprints import SPRINT_FIELD_CUSTOM, sprint_ids


def sprint_field_ids(db: Database, connection_id: str) -> list[str]:
    """The ids of the stored sprint fields (by schema, whatever their customfield number)."""
    query = {"connection_id": connection_id, "schema_custom": SPRINT_FIELD_CUSTOM}
    return sorted(str(f) for f in db["jira_fields"].distinct("field_id", query))


def referenced_sprint_ids(db: Database, connection_id: str) -> set[str]:
    """Every sprint id a live stored issue's sprint field holds: one pass over the issues,
    projected to the sprint field(s), nothing else of `raw`."""
    fields = sprint_field_ids(db, connection_id)
    if not fields:
        return set()
    live = {"connection_id": connection_id, "is_deleted": {"$ne": True}}
    projection = {**sprint_fields_projection(fields), "_id": 0}
    found: set[str] = set()
    for doc in db["jira_issues"].find(live, projection, batch_size=500):
        add_sprint_ids(doc, fields, found)
    return found


def sprint_fields_projection(fields: list[str]) -> dict[str, int]:
    """The projection of an issue to its sprint field(s), nothing else of `raw`."""
    return {f"raw.fields.{field}": 1 for field in fields}


def add_sprint_ids(doc: dict, fields: list[str], found: set[str]) -> None:
    """Adds to `found` the sprint ids one stored issue's sprint field(s) hold."""
    values = (doc.get("raw") or {}).get("fields") or {}
    for field in fields:
        found.update(sprint_ids(values.get(field)))


def missing_sprints(db: Database, connection_id: str) -> list[str]:
    """Sprints live issues reference that are not stored live."""
    return sprints_not_stored(db, connection_id, referenced_sprint_ids(db, connection_id))


def sprints_not_stored(db: Database, connection_id: str, referenced: set[str]) -> list[str]:
    """The referenced sprints not stored live, in sprint-number order."""
    live = {"connection_id": connection_id, "is_deleted": {"$ne": True}}
    stored = {str(s) for s in db["jira_sprints"].distinct("sprint_id", live)}
    return sorted(referenced - stored, key=lambda s: (len(s), s))

