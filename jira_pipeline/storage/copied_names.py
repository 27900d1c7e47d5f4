"""Names issues copy from dimensions (a status's name and category, a project's key), kept in
step with the dimension: Jira renames a status without moving any issue's `updated`, so no issue
sync would ever bring the new name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database

from jira_pipeline.storage.entities import ISSUES, entity_spec
from jira_pipeline.timeutil import utc_now

_BATCH = 1000
# On a dimension row: the content_hash whose names every stored issue already copies. An upsert
# that changes the row replaces the document, dropping this, so the row is pending again.
COPIED_MARK = "names_copied_hash"


@dataclass(frozen=True)
class CopiedNames:
    """Which issue fields copy which fields of one dimension, joined on the dimension's id."""

    issue_reference: str  # the issue field holding the dimension's Jira id
    fields: tuple[tuple[str, str], ...]  # (issue field, dimension field)
    # The issue key starts with the project key: Jira re-keys a project's issues with it.
    rekeys_issues: bool = False


COPIED_NAMES: dict[str, CopiedNames] = {
    "statuses": CopiedNames(
        "status_id", (("status_name", "name"), ("status_category", "status_category"))
    ),
    "projects": CopiedNames("project_id", (("project_key", "key"),), rekeys_issues=True),
}


def refresh_copied_names(
    db: Database, entity: str, connection_id: str | None = None
) -> dict[str, int]:
    """Bring every stored issue's copy of `entity`'s names up to the stored dimension rows.

    Only rows changed since their names were last copied are pending (see COPIED_MARK), so a
    run in which no status changed reads no issue. Otherwise one projected pass over the issues
    (never their `raw`), and writes only for stale ones, each guarded by the values it read so a
    concurrent issue write is never overwritten; a row is marked copied only once its issues are
    written, so a run that dies in between leaves it pending for the next. A refreshed issue
    loses its `content_hash`, so the next fetch of it replaces the whole document even if Jira's
    JSON is what was stored before. `raw` stays as Jira sent it. Returns the metadata
    `{"issues_renamed": n}` for entities issues copy names from, else `{}`.
    """
    copied = COPIED_NAMES.get(entity)
    if copied is None:
        return {}
    current, pending = _pending_names(db, entity, copied, connection_id)
    if not current:
        return {"issues_renamed": 0}
    renamed = _copy_names(db, copied, current, connection_id)
    db[entity_spec(entity).collection].bulk_write(
        [UpdateOne({"_id": _id, "content_hash": digest}, {"$set": {COPIED_MARK: digest}})
         for _id, digest in pending],
        ordered=False,
    )
    return {"issues_renamed": renamed}


def _copy_names(
    db: Database,
    copied: CopiedNames,
    current: dict[tuple[str, str], dict[str, Any]],
    connection_id: str | None,
) -> int:
    # Read first, then write: the embedded store must not hold a cursor over what it rewrites.
    stale = _stale_issues(db, copied, current, connection_id)
    collection = db[ISSUES.collection]
    renamed = 0
    for (jira_id, stored, names), issues in stale.items():
        unset = {"$unset": {"content_hash": ""}}
        guard = {copied.issue_reference: jira_id,
                 **dict(zip(_issue_fields(copied), stored, strict=True))}
        changes = dict(zip(_issue_fields(copied), names, strict=True))
        if copied.rekeys_issues:
            # A new key is a write of the issue: stamped, so the checks that read only the
            # issues written since their last evaluation see it (storage/check_memo.py).
            written = {"synced_at": utc_now()}
            updates = [
                UpdateOne(
                    {"_id": _id, **guard, "key": key},
                    {"$set": {**changes, **_new_key(key, guard, changes), **written}, **unset},
                )
                for _id, key in issues
            ]
            for start in range(0, len(updates), _BATCH):
                batch = updates[start : start + _BATCH]
                renamed += collection.bulk_write(batch, ordered=False).modified_count
            continue
        ids = [_id for _id, _ in issues]
        for start in range(0, len(ids), _BATCH):
            result = collection.update_many(
                {"_id": {"$in": ids[start : start + _BATCH]}, **guard},
                {"$set": changes, **unset},
            )
            renamed += result.modified_count
    if copied.rekeys_issues:
        project_keys = {stored[0]: names[0] for _, stored, names in stale
                        if stored[0] and names[0]}
        renamed += _rekey_parents(collection, project_keys, connection_id)
    return renamed


def _rekey_parents(
    issues: Collection, project_keys: dict[str, str], connection_id: str | None
) -> int:
    """Children copy their parent's key: `OLD-7` becomes `NEW-7` when project OLD is now NEW."""
    if not project_keys:
        return 0
    selector: dict[str, Any] = {"parent_key": {"$ne": None}}
    if connection_id is not None:
        selector["connection_id"] = connection_id
    updates = []
    for child in issues.find(selector, {"parent_key": 1}):
        old = child["parent_key"]
        prefix, _, number = str(old).rpartition("-")
        if prefix in project_keys:
            updates.append(UpdateOne(
                {"_id": child["_id"], "parent_key": old},
                {"$set": {"parent_key": f"{project_keys[prefix]}-{number}"},
                 "$unset": {"content_hash": ""}},
            ))
    changed = 0
    for start in range(0, len(updates), _BATCH):
        changed += issues.bulk_write(updates[start : start + _BATCH], ordered=False).modified_count
    return changed


def _pending_names(
    db: Database, entity: str, copied: CopiedNames, connection_id: str | None
) -> tuple[dict[tuple[str, str], dict[str, Any]], list[tuple[Any, Any]]]:
    """The names of the live rows not yet copied into issues, by (connection, Jira id), and
    those rows' (_id, content_hash)."""
    spec = entity_spec(entity)
    selector: dict[str, Any] = {"is_deleted": {"$ne": True}}
    if connection_id is not None:
        selector["connection_id"] = connection_id
    wanted = {"connection_id": 1, spec.id_field: 1, "content_hash": 1, COPIED_MARK: 1}
    wanted.update({field: 1 for _, field in copied.fields})
    current: dict[tuple[str, str], dict[str, Any]] = {}
    pending: list[tuple[Any, Any]] = []
    for doc in db[spec.collection].find(selector, wanted):
        if doc.get(COPIED_MARK) is not None and doc.get(COPIED_MARK) == doc.get("content_hash"):
            continue
        key = (str(doc["connection_id"]), str(doc[spec.id_field]))
        current[key] = {issue_field: doc.get(field) for issue_field, field in copied.fields}
        pending.append((doc["_id"], doc.get("content_hash")))
    return current, pending


def _issue_fields(copied: CopiedNames) -> list[str]:
    return [issue_field for issue_field, _ in copied.fields]


def _stale_issues(
    db: Database,
    copied: CopiedNames,
    current: dict[tuple[str, str], dict[str, Any]],
    connection_id: str | None,
) -> dict[tuple[Any, tuple[Any, ...], tuple[Any, ...]], list[tuple[Any, Any]]]:
    """(dimension id, stored names, current names) -> [(_id, key)] of the issues whose copy is
    stale."""
    referenced = sorted({jira_id for _, jira_id in current})
    selector: dict[str, Any] = {copied.issue_reference: {"$in": referenced}}
    if connection_id is not None:
        selector["connection_id"] = connection_id
    fields = _issue_fields(copied)
    wanted = dict.fromkeys(["connection_id", copied.issue_reference, "key", *fields], 1)
    stale: dict[tuple[Any, tuple[Any, ...], tuple[Any, ...]], list[tuple[Any, Any]]] = {}
    for doc in db[ISSUES.collection].find(selector, wanted):
        names = current.get((str(doc.get("connection_id")), str(doc[copied.issue_reference])))
        if names is None:
            continue  # a dimension row we do not hold: nothing to copy from
        stored = tuple(doc.get(field) for field in fields)
        wanted_names = tuple(names[field] for field in fields)
        if stored != wanted_names:
            group = (doc[copied.issue_reference], stored, wanted_names)
            stale.setdefault(group, []).append((doc["_id"], doc.get("key")))
    return stale


def _new_key(key: Any, stored: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, str]:
    """`OLD-12` under a project now keyed `NEW` becomes `NEW-12` (Jira re-keys the issues)."""
    old, new = stored.get("project_key"), changes.get("project_key")  # rekeys_issues: projects
    prefix = f"{old}-"
    if not (isinstance(key, str) and old and new and key.startswith(prefix)):
        return {}
    return {"key": f"{new}-{key[len(prefix):]}"}


def follow_issue_keys(issues: Collection, rekeyed: list[tuple[str, str, str]]) -> int:
    """Issues copy their parent's key (`parent_key`); a parent moved to another project has a
    new key while its children's `updated` stays. Point the children at the new key; returns
    how many were changed. `rekeyed` holds (connection id, old key, new key), a batch's worth:
    one read finds all their children."""
    by_connection: dict[str, dict[str, str]] = {}
    for connection_id, old, new in rekeyed:
        by_connection.setdefault(connection_id, {})[old] = new
    updates: list[UpdateOne] = []
    for connection_id, renamed in by_connection.items():
        selector = {"connection_id": connection_id, "parent_key": {"$in": sorted(renamed)}}
        for child in issues.find(selector, {"parent_key": 1}):
            old = child["parent_key"]
            updates.append(UpdateOne(
                {"_id": child["_id"], "parent_key": old},
                {"$set": {"parent_key": renamed[old]}, "$unset": {"content_hash": ""}},
            ))
    if not updates:
        return 0
    return issues.bulk_write(updates, ordered=False).modified_count
