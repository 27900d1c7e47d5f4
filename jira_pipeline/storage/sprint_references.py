"""The sprints stored issues reference, read from their sprint field (whichever custom field
`jira_fields` says is Jira Software's sprint field)."""

from __future__ import annotations

from pymongo.database import Database

from jira_pipeline.jira.sprints import SPRINT_FIELD_CUSTOM, sprint_ids


def sprint_field_ids(db: Database, connection_id: str) -> list[str]:
    """The ids of the stored sprint fields (by schema, whatever their customfield number)."""
    query = {"connection_id": connection_id, "schema_custom": SPRINT_FIELD_CUSTOM}
    return sorted(str(f) for f in db["jira_fields"].distinct("field_id", query))


def sprint_fields_projection(fields: list[str]) -> dict[str, int]:
    """The projection of an issue to its sprint field(s), nothing else of `raw`."""
    return {f"raw.fields.{field}": 1 for field in fields}


def add_sprint_ids(doc: dict, fields: list[str], found: set[str]) -> None:
    """Adds to `found` the sprint ids one stored issue's sprint field(s) hold."""
    values = (doc.get("raw") or {}).get("fields") or {}
    for field in fields:
        found.update(sprint_ids(values.get(field)))


def sprints_not_stored(db: Database, connection_id: str, referenced: set[str]) -> list[str]:
    """The referenced sprints not stored live, in sprint-number order."""
    live = {"connection_id": connection_id, "is_deleted": {"$ne": True}}
    stored = {str(s) for s in db["jira_sprints"].distinct("sprint_id", live)}
    return sorted(referenced - stored, key=lambda s: (len(s), s))

