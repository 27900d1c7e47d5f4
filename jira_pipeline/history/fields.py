"""`jira_issue_field_history`: an issue's value intervals per field, rebuilt from its stored
document (the current values) and its complete changelog (`jira_issue_changelogs` documents).

One row per (issue, field, valid_from). Scalars keep Jira's `from`/`to` (an id where Jira has
one) as `value` and `fromString`/`toString` as `value_string`; arrays (labels, components, fix
versions, sprints, multi-selects) hold the whole set per interval, sorted, as Fivetran's
ISSUE_MULTISELECT_HISTORY does. Jira records an array change in one of two ways, both read:
- the whole set in one item (`labels`: `"a b"` -> `"a b c"`; sprints and multi-selects:
  `"1, 2"` -> `"1, 2, 3"`), read forward like a scalar;
- one item per value added (`to` set) or removed (`from` set) (`components`, `fixVersions`,
  `versions`), read backwards from the issue's current set.
The value at `created` is the first change's `from` (no change: the current value), so an
issue's history needs nothing but its changelog and itself.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jira_pipeline.jira.sprints import data_center_sprint
from jira_pipeline.timeutil import parse_jira_datetime

# Fields every issue gets a history of, changed or not (the check compares the first three).
TRACKED_FIELDS = ("status", "assignee", "priority", "labels")
# Jira writes one item per value added or removed for these.
PER_VALUE_ARRAY_FIELDS = frozenset({"components", "fixVersions", "versions"})
# Known arrays whatever `jira_fields` says (or when it is not there).
ARRAY_FIELDS = PER_VALUE_ARRAY_FIELDS | {"labels"}
# Changelog names of system fields whose item carries no `fieldId` (older Data Center data).
FIELD_IDS_BY_CHANGELOG_NAME = {
    "status": "status", "assignee": "assignee", "priority": "priority", "labels": "labels",
    "component": "components", "fix version": "fixVersions", "version": "versions",
    "resolution": "resolution", "summary": "summary", "issuetype": "issuetype",
    "project": "project", "key": "issuekey", "reporter": "reporter", "description": "description",
}  # fmt: skip
# What identifies an object value and what names it, in the order Jira's shapes use them.
_ID_KEYS = ("accountId", "id", "key", "value", "name")
_NAME_KEYS = ("displayName", "name", "value", "key")

Value = str | tuple[str, ...] | None


@dataclass(frozen=True)
class FieldCatalog:
    """Field names and kinds from `jira_fields` ({field_id, name, schema_type, ...}): the history's
    `field_name`, and which fields are arrays. Empty: the changelog's names are used."""

    names: Mapping[str, str] = field(default_factory=dict)
    arrays: frozenset[str] = frozenset()
    ids_by_name: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_documents(cls, documents: Iterable[Mapping[str, Any]]) -> FieldCatalog:
        names: dict[str, str] = {}
        arrays: set[str] = set()
        ids_by_name: dict[str, str] = {}
        for doc in documents:
            field_id = doc.get("field_id")
            if not field_id:
                continue
            field_id = str(field_id)
            if doc.get("name"):
                names[field_id] = str(doc["name"])
                ids_by_name.setdefault(str(doc["name"]).lower(), field_id)
            # Stored `jira_fields` documents hold `schema_type`; Jira's own field JSON `schema`.
            schema = doc.get("schema")
            if doc.get("schema_type") == "array" or (
                    isinstance(schema, Mapping) and schema.get("type") == "array"):
                arrays.add(field_id)
        return cls(names, frozenset(arrays), ids_by_name)

    def field_id(self, item: Mapping[str, Any]) -> str:
        """The field an item changed: its `field_id`, else its changelog name resolved."""
        if item.get("field_id"):
            return str(item["field_id"])
        name = str(item.get("field") or "")
        known = FIELD_IDS_BY_CHANGELOG_NAME.get(name.lower())
        return known or self.ids_by_name.get(name.lower()) or name

    def is_array(self, field_id: str) -> bool:
        return field_id in ARRAY_FIELDS or field_id in self.arrays


@dataclass(slots=True)
class FieldValue:
    value: Value
    value_string: Value


@dataclass(slots=True)
class Change:
    """One history entry's change of one field (its items, usually one)."""

    at: datetime
    history_id: str
    author_account_id: str | None
    field_name: str
    items: list[Mapping[str, Any]]


@dataclass(slots=True)
class Interval:
    field_id: str
    field_name: str
    valid_from: datetime
    valid_until: datetime | None
    value: Value
    value_string: Value
    author_account_id: str | None
    history_id: str | None  # the change that set the value; None for the value at creation


def _moment(value: Any) -> datetime:
    # Stored dates come back aware (tz_aware clients) or naive UTC: parse only what is not.
    if isinstance(value, datetime) and value.tzinfo is UTC:
        return value
    return parse_jira_datetime(value)


def number_value(value: Any) -> float | None:
    """A number, or a numeric string, as a float (None otherwise: NaN, a bool, other text), as
    pandas' `to_numeric(errors="coerce")` reads a stored value."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return None if math.isnan(number) else number


def ordered_entries(
    changelog: Iterable[Mapping[str, Any]],
) -> list[tuple[datetime, str, Mapping[str, Any]]]:
    """(instant, history id, entry) oldest first; equal timestamps in history id order (Jira's
    ids grow), entries without a timestamp left out (they cannot be placed)."""
    keyed = []
    for entry in changelog:
        created = entry.get("created")
        if created is None:
            continue
        history_id = str(entry.get("history_id") or "")
        number = int(history_id) if history_id.isdigit() else 0
        keyed.append((_moment(created), number, history_id, entry))
    keyed.sort(key=lambda k: k[:3])
    return [(at, history_id, entry) for at, _, history_id, entry in keyed]


def changes_by_field(
    changelog: Iterable[Mapping[str, Any]], catalog: FieldCatalog,
    only: Collection[str] | None = None,
) -> dict[str, list[Change]]:
    """Each field's changes (of the fields in `only`, if given), oldest first (items of one
    entry for one field grouped)."""
    changes: dict[str, list[Change]] = {}
    field_id_of = catalog.field_id
    for at, history_id, entry in ordered_entries(changelog):
        in_entry: dict[str, Change] = {}
        for item in entry.get("items") or ():
            if not isinstance(item, Mapping):
                continue
            field_id = field_id_of(item)
            if not field_id or (only is not None and field_id not in only):
                continue
            change = in_entry.get(field_id)
            if change is None:
                change = in_entry[field_id] = Change(
                    at, history_id, entry.get("author_account_id"),
                    str(item.get("field") or field_id), [],
                )
                changes.setdefault(field_id, []).append(change)
            change.items.append(item)
    return changes


def _raw_fields(issue: Mapping[str, Any]) -> Mapping[str, Any]:
    raw = issue.get("raw")
    fields = raw.get("fields") if isinstance(raw, Mapping) else None
    return fields if isinstance(fields, Mapping) else {}


def _id_of(value: Any) -> str | None:
    if isinstance(value, str) and (sprint := data_center_sprint(value)) is not None:
        return sprint[0]  # a Data Center sprint field element
    if isinstance(value, Mapping):
        for key in _ID_KEYS:
            if value.get(key) is not None:
                return str(value[key])
        return None
    return None if value is None else str(value)


def _name_of(value: Any) -> str | None:
    if isinstance(value, str) and (sprint := data_center_sprint(value)) is not None:
        return sprint[1] or sprint[0]
    if isinstance(value, Mapping):
        for key in _NAME_KEYS:
            if value.get(key) is not None:
                return str(value[key])
        return None
    return None if value is None else str(value)


def _sorted_set(ids: Iterable[str | None], names: Mapping[str, str | None]) -> FieldValue:
    values = tuple(sorted({value for value in ids if value}))
    return FieldValue(values, tuple(names.get(value) or value for value in values))


def current_value(issue: Mapping[str, Any], field_id: str, is_array: bool) -> FieldValue | None:
    """The issue's value of a field now; None when the issue has no such field."""
    fields = _raw_fields(issue)
    if field_id == "status" and issue.get("status_id") is not None:
        return FieldValue(str(issue["status_id"]), issue.get("status_name"))
    if field_id == "assignee" and ("assignee_account_id" in issue or "assignee" in fields):
        account = issue.get("assignee_account_id")
        return FieldValue(account, _name_of(fields.get("assignee")) if account else None)
    if field_id == "priority" and issue.get("priority") is not None:
        return FieldValue(_id_of(fields.get("priority")) or issue["priority"], issue["priority"])
    if field_id == "project" and issue.get("project_id") is not None:
        return FieldValue(str(issue["project_id"]),
                          _name_of(fields.get("project")) or issue.get("project_key"))
    if field_id == "labels" and isinstance(issue.get("labels"), list):
        return _sorted_set(issue["labels"], {})
    if field_id not in fields:
        return None
    raw = fields[field_id]
    if is_array or isinstance(raw, list):
        elements = raw if isinstance(raw, list) else ([] if raw is None else [raw])
        names = {_id_of(element) or "": _name_of(element) for element in elements}
        return _sorted_set((_id_of(element) for element in elements), names)
    return FieldValue(_id_of(raw), _name_of(raw))


def _split_set(text: str | None, *, whitespace: bool) -> list[str]:
    if not text:
        return []
    if whitespace:
        return text.split()
    return [part.strip() for part in text.strip().strip("[]").split(",") if part.strip()]


def _whole_set(ids: str | None, strings: str | None, field_id: str) -> FieldValue:
    """A set written whole: labels space-separated, sprints and multi-selects by commas."""
    labels = field_id == "labels"
    names = _split_set(strings, whitespace=labels)
    keys = _split_set(ids, whitespace=labels) if ids else names
    if len(keys) == len(names):
        pairs = dict(zip(keys, names, strict=True))
        return _sorted_set(keys, pairs)
    return _sorted_set(keys, {})


def _before(change: Change, field_id: str, is_array: bool) -> FieldValue:
    first = change.items[0]
    if is_array:
        return _whole_set(first.get("from"), first.get("from_string"), field_id)
    return FieldValue(first.get("from"), first.get("from_string"))


def _after(change: Change, field_id: str, is_array: bool) -> FieldValue:
    last = change.items[-1]
    if is_array:
        return _whole_set(last.get("to"), last.get("to_string"), field_id)
    return FieldValue(last.get("to"), last.get("to_string"))


def _per_value_sets(
    changes: Sequence[Change], current: FieldValue | None
) -> list[FieldValue]:
    """The set before each change and after the last, for fields changed one value per item:
    read backwards from the current set (forwards from empty when the field is gone)."""
    names: dict[str, str | None] = {}
    if current is not None and isinstance(current.value, tuple):
        assert isinstance(current.value_string, tuple)
        names.update(zip(current.value, current.value_string, strict=True))
    moves: list[tuple[set[str], set[str]]] = []
    for change in changes:
        added: set[str] = set()
        removed: set[str] = set()
        for item in change.items:
            to = item.get("to") or item.get("to_string")
            was = item.get("from") or item.get("from_string")
            if to:
                added.add(str(to))
                names.setdefault(str(to), item.get("to_string"))
            if was:
                removed.add(str(was))
                names.setdefault(str(was), item.get("from_string"))
        moves.append((added, removed))
    sets: list[set[str]]
    if current is not None and isinstance(current.value, tuple):
        sets = [set(current.value)]
        for added, removed in reversed(moves):
            sets.append((sets[-1] - added) | removed)
        sets.reverse()
    else:
        sets = [set()]
        for added, removed in moves:
            sets.append((sets[-1] - removed) | added)
    return [_sorted_set(values, names) for values in sets]


def field_intervals(
    field_id: str,
    field_name: str,
    changes: Sequence[Change],
    current: FieldValue | None,
    created: datetime | None,
    creator_account_id: str | None,
    is_array: bool,
) -> list[Interval]:
    """A field's intervals from the issue's creation on; the last is open (current).

    Changes at one instant keep only the last one's value (an interval must have a length, and
    (issue, field, valid_from) is the row's key); a change at or before `created` replaces the
    value at creation.
    """
    if not changes:
        if current is None or created is None:
            return []
        return [Interval(field_id, field_name, created, None, current.value,
                         current.value_string, creator_account_id, None)]
    if field_id in PER_VALUE_ARRAY_FIELDS:
        values = _per_value_sets(changes, current)
    else:
        values = [_before(changes[0], field_id, is_array)]
        values.extend(_after(change, field_id, is_array) for change in changes)
    starts: list[tuple[datetime | None, str | None, str | None]] = [
        (created, creator_account_id, None)
    ]
    starts.extend((change.at, change.author_account_id, change.history_id) for change in changes)
    kept: list[tuple[datetime, str | None, str | None, FieldValue]] = []
    for (start, author, history_id), value in zip(starts, values, strict=True):
        if start is None:
            continue
        while kept and kept[-1][0] >= start:
            kept.pop()  # a later change at the same instant (or before creation) wins
        kept.append((start, author, history_id, value))
    intervals = []
    for n, (start, author, history_id, value) in enumerate(kept):
        until = kept[n + 1][0] if n + 1 < len(kept) else None
        intervals.append(Interval(field_id, field_name, start, until, value.value,
                                  value.value_string, author, history_id))
    return intervals


def issue_field_intervals(
    issue: Mapping[str, Any],
    changelog: Iterable[Mapping[str, Any]],
    catalog: FieldCatalog | None = None,
    tracked: Sequence[str] = TRACKED_FIELDS,
    only: Collection[str] | None = None,
) -> dict[str, list[Interval]]:
    """Every field's intervals for one issue: the tracked fields and every changed one (or,
    given `only`, the tracked ones and the changed ones among `only`)."""
    catalog = catalog or FieldCatalog()
    changes = changes_by_field(changelog, catalog, only)
    created = parse_jira_datetime(issue.get("created")) if issue.get("created") else None
    creator = _id_of(_raw_fields(issue).get("creator")) or issue.get("reporter_account_id")
    out: dict[str, list[Interval]] = {}
    for field_id in (*tracked, *(f for f in changes if f not in tracked)):
        field_changes = changes.get(field_id, [])
        is_array = catalog.is_array(field_id)
        name = catalog.names.get(field_id) or (
            field_changes[-1].field_name if field_changes else field_id)
        intervals = field_intervals(
            field_id, name, field_changes, current_value(issue, field_id, is_array),
            created, creator, is_array,
        )
        if intervals:
            out[field_id] = intervals
    return out


def _stored(value: Value) -> Any:
    return list(value) if isinstance(value, tuple) else value


def field_history_rows(
    issue: Mapping[str, Any], intervals: Mapping[str, list[Interval]]
) -> list[dict[str, Any]]:
    """The `jira_issue_field_history` documents of one issue (without connection_id)."""
    rows = []
    for field_intervals_ in intervals.values():
        for interval in field_intervals_:
            rows.append({
                "issue_id": str(issue["issue_id"]),
                "issue_key": issue.get("key"),
                "project_key": issue.get("project_key"),
                "field_id": interval.field_id,
                "field_name": interval.field_name,
                "valid_from": interval.valid_from,
                "valid_until": interval.valid_until,
                "value": _stored(interval.value),
                "value_string": _stored(interval.value_string),
                "author_account_id": interval.author_account_id,
                "history_id": interval.history_id,
                "is_current": interval.valid_until is None,
            })  # fmt: skip
    return rows
