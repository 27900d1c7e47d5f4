"""What stored live issues name by id in their raw fields (issue types, priorities,
resolutions, versions, components) and the dimension collections lack: read by the checks
and by the refresh sensor, which requests a refresh of the dimension that lacks them."""

from __future__ import annotations

from pymongo.database import Database

from jira_pipeline.storage.entities import entity_spec

# The reference data an issue names by id: (entity, the field of `raw.fields` that holds it).
ISSUE_REFERENCE_DATA = (("issue_types", "issuetype"), ("priorities", "priority"),
                        ("resolutions", "resolution"))


# The versions and components an issue names by id, in lists of `raw.fields`.
ISSUE_PROJECT_PARTS = (("project_versions", "fixVersions"), ("project_versions", "versions"),
                       ("project_components", "components"))


def referenced_ids_projection(references: tuple[tuple[str, str], ...]) -> dict[str, int]:
    """The projection of an issue to the ids `references` name (`raw.fields.<field>.id`)."""
    return {f"raw.fields.{name}.id": 1 for _, name in references}


def add_referenced_ids(
    doc: dict, references: tuple[tuple[str, str], ...], referenced: dict[str, set[str]]
) -> None:
    """Adds to `referenced[entity]` the ids one stored issue names in its `raw.fields`."""
    fields = (doc.get("raw") or {}).get("fields") or {}
    for entity, name in references:
        value = fields.get(name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict) and item.get("id") not in (None, ""):
                referenced[entity].add(str(item["id"]))


def not_stored_live(
    db: Database, connection_id: str, referenced: dict[str, set[str]]
) -> dict[str, list[str]]:
    """Per entity, the referenced ids its collection does not store live, sorted."""
    live = {"connection_id": connection_id, "is_deleted": {"$ne": True}}
    missing: dict[str, list[str]] = {}
    for entity, ids in referenced.items():
        spec = entity_spec(entity)
        stored = {str(i) for i in db[spec.collection].distinct(spec.id_field, live)}
        missing[entity] = sorted(ids - stored)
    return missing
