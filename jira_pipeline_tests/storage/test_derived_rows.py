"""How derived rows (field history, transitions, time in status) replace a scope's stored rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jira_pipeline.storage.derived_rows import (
    DerivedRows,
    RowScope,
    derived_row_id,
    write_derived_rows,
)
from jira_pipeline.storage.entities import FIELD_HISTORY
from jira_pipeline.storage.indexes import ensure_indexes
from jira_pipeline_tests.storage.conftest import Store

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def row(issue_id: str, field_id: str, hours: int, value: str) -> dict[str, Any]:
    return {"issue_id": issue_id, "field_id": field_id, "valid_from": T0 + timedelta(hours=hours),
            "valid_until": None, "value": value, "is_current": True}


def replace(store: Store, *scopes: tuple[list[str], list[dict[str, Any]]],
            connection_id: str = "conn-1") -> Any:
    return write_derived_rows(store.db, DerivedRows(FIELD_HISTORY, connection_id, [
        RowScope({"issue_id": {"$in": ids}}, rows) for ids, rows in scopes]))


def stored(store: Store, connection_id: str = "conn-1") -> list[tuple[str, str, int, str]]:
    return sorted(
        (doc["issue_id"], doc["field_id"],
         int((doc["valid_from"].replace(tzinfo=UTC) - T0).total_seconds() // 3600), doc["value"])
        for doc in store.db.jira_issue_field_history.find({"connection_id": connection_id}))


def test_a_scope_is_replaced_whole_and_other_scopes_and_sites_are_left_alone(
    store: Store,
) -> None:
    ensure_indexes(store.db)
    first = replace(store, (["1", "2"], [row("1", "status", 0, "a"), row("1", "status", 2, "b"),
                                         row("2", "status", 0, "x")]))
    replace(store, (["1"], [row("1", "status", 0, "other-site")]), connection_id="conn-2")
    assert (first.inserted, first.removed) == (3, 0)

    again = replace(store, (["1"], [row("1", "status", 0, "a"), row("1", "status", 3, "c")]))

    assert (again.inserted, again.updated, again.unchanged, again.removed) == (1, 0, 1, 1)
    assert stored(store) == [("1", "status", 0, "a"), ("1", "status", 3, "c"),
                             ("2", "status", 0, "x")]
    assert stored(store, "conn-2") == [("1", "status", 0, "other-site")]


def test_rerunning_the_same_rows_changes_nothing(store: Store) -> None:
    rows = [row("1", "status", 0, "a"), row("1", "priority", 0, "3")]
    replace(store, (["1"], rows))
    synced = {doc["_id"]: doc["synced_at"] for doc in store.db.jira_issue_field_history.find()}

    again = replace(store, (["1"], rows))

    assert (again.unchanged, again.inserted, again.updated, again.removed) == (2, 0, 0, 0)
    assert {doc["_id"]: doc["synced_at"]
            for doc in store.db.jira_issue_field_history.find()} == synced


def test_an_issue_without_rows_any_more_loses_them(store: Store) -> None:
    replace(store, (["1", "2"], [row("1", "status", 0, "a"), row("2", "status", 0, "x")]))
    gone = replace(store, (["2"], []))
    assert gone.removed == 1 and stored(store) == [("1", "status", 0, "a")]


def test_ids_derive_from_the_natural_key_and_a_repeated_key_is_refused(store: Store) -> None:
    one = {**row("1", "status", 0, "a"), "connection_id": "conn-1"}
    assert derived_row_id(FIELD_HISTORY, one) == derived_row_id(
        FIELD_HISTORY, {**one, "value": "b"})
    assert derived_row_id(FIELD_HISTORY, one) != derived_row_id(
        FIELD_HISTORY, {**one, "connection_id": "conn-2"})
    with pytest.raises(ValueError, match="share the key"):
        replace(store, (["1"], [row("1", "status", 0, "a"), row("1", "status", 0, "b")]))
