"""The indexes DESIGN.md promises, created idempotently before the first write."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import OperationFailure

from jira_pipeline.storage import entities as derived  # the derived collections' specs
from jira_pipeline.storage.entities import (
    CONNECTIONS_COLLECTION,
    DAILY_SUMMARY,
    ENTITIES,
    ISSUE_CHANGELOGS,
    PROJECT_PART_ENTITIES,
    REFERENCE_ENTITIES,
)
from jira_pipeline.storage.sync_cursors import SYNC_CURSORS_COLLECTION
from jira_pipeline.storage.sync_errors import SYNC_ERRORS_COLLECTION

log = logging.getLogger(__name__)
# A server's codes for "an index on these keys exists under another name or with other
# options" and "an index of this name exists on other keys".
INDEX_OPTIONS_CONFLICT = 85
INDEX_KEY_SPECS_CONFLICT = 86
# Options that tell two indexes on the same keys apart: a server keeps both.
_IDENTITY_OPTIONS = ("collation", "partialFilterExpression")
# Options that change what an index does; `v`, `ns`, `background` and the name do not.
_BEHAVIOUR_OPTIONS = ("unique", "sparse", "expireAfterSeconds", "hidden", "weights",
                      "default_language", "language_override", "textIndexVersion",
                      "2dsphereIndexVersion", "bits", "min", "max", "wildcardProjection")
_FALSE_BY_DEFAULT = ("unique", "sparse", "hidden")

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
        # The issues written since a whole-store check's last evaluation, which are all it
        # reads again (storage/check_memo.py).
        IndexModel([("synced_at", ASCENDING)], name="synced_at"),
    ],
    ENTITIES["fields"].collection: [
        IndexModel(
            [("connection_id", ASCENDING), ("field_id", ASCENDING)],
            name="connection_field_unique",
            unique=True,
        ),
    ],
    ENTITIES["comments"].collection: [
        IndexModel(
            [("connection_id", ASCENDING), ("comment_id", ASCENDING)],
            name="connection_comment_unique",
            unique=True,
        ),
        IndexModel([("connection_id", ASCENDING), ("issue_id", ASCENDING)],
                   name="connection_issue"),
    ],
    DAILY_SUMMARY.collection: [
        # The day last: a row's day is its key's selective field (most rows share a project or
        # a status), and the embedded store checks a unique key by planning on its last field
        # (in insertion order a day-first key made writing N rows cost N^2: 2,325 rows, 9.7 s
        # of CPU). A server answers the per-day range reads from the connection prefix.
        IndexModel(
            [("connection_id", ASCENDING), ("project_key", ASCENDING),
             ("status_name", ASCENDING), ("day", ASCENDING)],
            name="connection_project_status_day_unique",
            unique=True,
        ),
    ],
    ENTITIES["worklogs"].collection: [
        IndexModel(
            [("connection_id", ASCENDING), ("worklog_id", ASCENDING)],
            name="connection_worklog_unique",
            unique=True,
        ),
        IndexModel([("connection_id", ASCENDING), ("issue_id", ASCENDING)],
                   name="connection_issue"),
        IndexModel([("started", ASCENDING)], name="started"),
    ],
    SYNC_CURSORS_COLLECTION: [
        IndexModel(
            [("connection_id", ASCENDING), ("feed", ASCENDING)],
            name="connection_feed_unique",
            unique=True,
        ),
    ],
    derived.FIELD_HISTORY.collection: [
        IndexModel(
            [("connection_id", ASCENDING), ("issue_id", ASCENDING), ("field_id", ASCENDING),
             ("valid_from", ASCENDING)],
            name="connection_issue_field_valid_from_unique",
            unique=True,
        ),
        IndexModel(
            [("connection_id", ASCENDING), ("field_id", ASCENDING), ("valid_from", ASCENDING)],
            name="connection_field_valid_from",
        ),
    ],
    derived.STATUS_TRANSITIONS.collection: [
        IndexModel(
            [("connection_id", ASCENDING), ("issue_id", ASCENDING), ("entered_at", ASCENDING)],
            name="connection_issue_entered_at_unique",
            unique=True,
        ),
        IndexModel(
            [("connection_id", ASCENDING), ("status_id", ASCENDING), ("entered_at", ASCENDING)],
            name="connection_status_entered_at",
        ),
    ],
    derived.ISSUE_LINKS.collection: [
        IndexModel(
            [("connection_id", ASCENDING), ("issue_id", ASCENDING), ("link_id", ASCENDING)],
            name="connection_issue_link_unique",
            unique=True,
        ),
        # Which issues link to a changed or deleted one (their rows are recomputed with it).
        IndexModel([("connection_id", ASCENDING), ("other_issue_id", ASCENDING)],
                   name="connection_other_issue"),
    ],
    derived.TIME_IN_STATUS_DAILY.collection: [
        # The day last, as the daily summary's (the embedded store plans on a key's last field).
        IndexModel(
            [("connection_id", ASCENDING), ("project_key", ASCENDING),
             ("status_id", ASCENDING), ("day", ASCENDING)],
            name="connection_project_status_day_unique",
            unique=True,
        ),
    ],
    # The issue last: it is the key's selective field; (connection, sprint) answers "a
    # sprint's issues". The issue index answers the per-issue replacement.
    derived.SPRINT_ISSUES.collection: [
        IndexModel(
            [("connection_id", ASCENDING), ("sprint_id", ASCENDING), ("issue_id", ASCENDING)],
            name="connection_sprint_issue_unique",
            unique=True,
        ),
        IndexModel([("connection_id", ASCENDING), ("issue_id", ASCENDING)],
                   name="connection_issue"),
    ],
    derived.SPRINT_REPORT.collection: [
        IndexModel(
            [("connection_id", ASCENDING), ("sprint_id", ASCENDING),
             ("project_key", ASCENDING)],
            name="connection_sprint_project_unique",
            unique=True,
        ),
    ],
    SYNC_ERRORS_COLLECTION: [
        IndexModel(
            [("connection_id", ASCENDING), ("entity", ASCENDING), ("jira_id", ASCENDING)],
            name="connection_entity_jira_id_unique",
            unique=True,
        ),
        IndexModel([("last_seen", ASCENDING)], name="last_seen"),
    ],
}
# The history id last: it is the key's selective field (the embedded store plans a unique check
# on a key's last field); the (connection, issue) prefix also answers "an issue's histories".
INDEXES[ISSUE_CHANGELOGS.collection] = [
    IndexModel(
        [("connection_id", ASCENDING), ("issue_id", ASCENDING), ("history_id", ASCENDING)],
        name="connection_issue_history_unique",
        unique=True,
    ),
    IndexModel([("connection_id", ASCENDING), ("created", ASCENDING)], name="connection_created"),
]
# The reference data (issue types, priorities, resolutions, status categories): one unique
# (connection, Jira id) index each, under these fixed names.
REFERENCE_INDEX_NAMES = {
    "jira_issue_types": "connection_issue_type_unique",
    "jira_priorities": "connection_priority_unique",
    "jira_resolutions": "connection_resolution_unique",
    "jira_status_categories": "connection_status_category_unique",
}
for _spec in REFERENCE_ENTITIES:
    INDEXES[_spec.collection] = [
        IndexModel([("connection_id", ASCENDING), (_spec.id_field, ASCENDING)],
                   name=REFERENCE_INDEX_NAMES[_spec.collection], unique=True),
    ]
# A project's versions and components: unique (connection, version / component id).
PROJECT_PART_INDEX_NAMES = {
    "jira_project_versions": "connection_version_unique",
    "jira_project_components": "connection_component_unique",
}
for _spec in PROJECT_PART_ENTITIES:
    INDEXES[_spec.collection] = [
        IndexModel([("connection_id", ASCENDING), (_spec.id_field, ASCENDING)],
                   name=PROJECT_PART_INDEX_NAMES[_spec.collection], unique=True),
    ]

# Boards and sprints (issue 14): one unique (connection, Jira id) index each.
INDEXES["jira_boards"] = [IndexModel([("connection_id", ASCENDING), ("board_id", ASCENDING)],
                                     name="connection_board_unique", unique=True)]
INDEXES["jira_sprints"] = [IndexModel([("connection_id", ASCENDING), ("sprint_id", ASCENDING)],
                                      name="connection_sprint_unique", unique=True)]


class IndexConflictError(RuntimeError):
    """An existing index stands where one of ours must be: same keys with other options, or
    our name on other keys. The message names both indexes and how to resolve it."""


def ensure_indexes(db: Database, collections: list[str] | None = None) -> None:
    """Create the indexes of `collections` (default: all of them), idempotently.

    Indexes are compared by key pattern and options, not by name, as a server does: an
    equivalent index under another name (say, created by hand) is adopted and ours is not
    created; one on the same keys with other options, or one holding our name on other keys,
    fails with IndexConflictError (a server would refuse with IndexOptionsConflict, code 85, or
    IndexKeySpecsConflict, 86; the embedded store would silently keep both).
    """
    for name, models in INDEXES.items():
        if collections is not None and name not in collections:
            continue
        existing = db[name].index_information()
        missing = [model for model in models if _needs_creating(name, model, existing)]
        if not missing:
            continue
        try:
            db[name].create_indexes(missing)
        except OperationFailure as exc:
            if exc.code not in (INDEX_OPTIONS_CONFLICT, INDEX_KEY_SPECS_CONFLICT):
                raise
            wanted = ", ".join(_describe(model.document) for model in missing)
            raise IndexConflictError(
                f"{name}: cannot create index {wanted}: {_first_line(exc)} (code {exc.code}); "
                f"drop the existing index that conflicts (db.{name}.getIndexes() lists them) "
                "and rerun"
            ) from None


def _needs_creating(collection: str, model: IndexModel, existing: Mapping[str, Any]) -> bool:
    wanted = model.document
    name = wanted["name"]
    for existing_name, info in existing.items():
        if not _same_identity(wanted, info):
            continue
        if _behaviour(wanted) != _behaviour(info):
            raise IndexConflictError(
                f"{collection}: our index {_describe(wanted)} conflicts with the existing index "
                f"{_describe({**info, 'name': existing_name})} (same keys, other options): "
                f'drop index {existing_name!r} (db.{collection}.dropIndex("{existing_name}")) '
                "and rerun to have it created as ours, or give it our options"
            )
        if existing_name != name:
            log.info("%s: adopting existing index %r in place of %r (same keys and options)",
                     collection, existing_name, name)
        return False
    taken = existing.get(name)
    if taken is not None:
        raise IndexConflictError(
            f"{collection}: the existing index {_describe({**taken, 'name': name})} holds the "
            f"name of our index {_describe(wanted)} on other keys: drop index {name!r} "
            f'(db.{collection}.dropIndex("{name}")) or rename it, and rerun'
        )
    return True


def _key_pattern(info: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    key = info["key"]
    pairs = key.items() if isinstance(key, Mapping) else key
    return tuple((str(field), _direction(direction)) for field, direction in pairs)


def _direction(direction: Any) -> Any:
    # A server may report 1 as 1.0 (an index created from the shell).
    if isinstance(direction, float) and direction.is_integer():
        return int(direction)
    return direction


def _same_identity(wanted: Mapping[str, Any], info: Mapping[str, Any]) -> bool:
    return _key_pattern(wanted) == _key_pattern(info) and all(
        wanted.get(option) == info.get(option) for option in _IDENTITY_OPTIONS
    )


def _behaviour(info: Mapping[str, Any]) -> dict[str, Any]:
    options = {option: info[option] for option in _BEHAVIOUR_OPTIONS if option in info}
    for option in _FALSE_BY_DEFAULT:
        if not options.get(option):
            options.pop(option, None)
    return options


def _describe(info: Mapping[str, Any]) -> str:
    keys = ", ".join(f"{field}: {direction}" for field, direction in _key_pattern(info))
    options = "".join(f", {option}: {value}" for option, value in _behaviour(info).items())
    return f"{info.get('name')!r} {{{keys}}}{options}"


def _first_line(exc: OperationFailure) -> str:
    details = exc.details or {}
    return str(details.get("errmsg") or exc).splitlines()[0][:200]
