"""What the issue census reads and writes in the store: live ids (within a scope), the live
rows outside a set of Jira ids, live counts, and marking exactly the ids proven gone."""

from __future__ import annotations

import pytest

from jira_pipeline.storage import upserts
from jira_pipeline.storage.upserts import (
    count_live,
    live_ids_except,
    mark_deleted_ids,
    stored_live_ids,
    upsert_records,
)
from jira_pipeline_tests.storage.conftest import Store, issue


@pytest.fixture
def five_issues(store: Store) -> Store:
    upsert_records(store.db, "issues", [issue(i, project_key="A" if i < 4 else "B")
                                        for i in range(1, 6)])
    upsert_records(store.db, "issues", [issue(2, connection_id="other")])
    return store


def test_marking_ids_marks_only_those_live_rows_of_the_connection(five_issues: Store) -> None:
    db = five_issues.db

    assert mark_deleted_ids(db, "issues", "conn-1", ["2", "4", "99"]) == 2
    assert mark_deleted_ids(db, "issues", "conn-1", ["2"]) == 0  # already marked

    assert sorted(stored_live_ids(db, "issues", "conn-1"), key=int) == ["1", "3", "5"]
    assert list(stored_live_ids(db, "issues", "other")) == ["2"]
    assert count_live(db, "issues", "conn-1") == 3
    assert count_live(db, "issues", "conn-1", scope={"project_key": "A"}) == 2


@pytest.mark.parametrize("ids_sent", ["in_one_nin", "streamed_and_compared_here"])
def test_live_rows_outside_the_walk_are_found_within_the_scope(
    five_issues: Store, ids_sent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if ids_sent == "streamed_and_compared_here":
        monkeypatch.setattr(upserts, "_NIN_MAX_IDS", 1)
    db = five_issues.db
    mark_deleted_ids(db, "issues", "conn-1", ["3"])

    outside = live_ids_except(db, "issues", "conn-1", {"1", "5"})
    in_a = live_ids_except(db, "issues", "conn-1", {"1", "5"}, scope={"project_key": "A"})

    assert sorted(outside, key=int) == ["2", "4"]  # 3 is deleted already, "other" not ours
    assert in_a == ["2"]
