"""The issue hierarchy and issue links: issues carry `parent_id` / `parent_key` (sub-tasks and
epics' children), and `jira_issue_links` holds each link from both issues' sides under one link
id, refreshed with the issues (a link removed or an issue deleted leaves no row)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from jira_pipeline.assets.sites import site_connection_id
from jira_pipeline_tests.assets.conftest import Pipeline, materializations

LINKS = "jira_issue_links"


def rows_by_link(pipeline: Pipeline) -> dict[str, dict[str, dict[str, Any]]]:
    """link id -> {issue key: row}."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for row in pipeline.db[LINKS].find():
        out.setdefault(row["link_id"], {})[row["issue_key"]] = row
    return out


def test_sub_tasks_and_epic_children_carry_their_parent(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=120, days=5)
    pipeline.sync_everything()

    issues = pipeline.stored_issues()
    by_id = {doc["issue_id"]: doc for doc in issues.values()}
    subtasks = [d for d in issues.values() if d["issue_type"] == "Sub-task"]
    epic_children = [d for d in issues.values() if d["issue_type"] != "Sub-task"
                     and d["parent_id"] is not None]
    assert subtasks and epic_children
    for child in subtasks + epic_children:
        parent = by_id[child["parent_id"]]
        assert child["parent_key"] == parent["key"]
        assert child["raw"]["fields"]["parent"]["id"] == parent["issue_id"]
    assert {by_id[d["parent_id"]]["issue_type"] for d in epic_children} == {"Epic"}
    assert all(by_id[d["parent_id"]]["issue_type"] != "Sub-task" for d in subtasks)
    orphans = [d for d in issues.values() if "parent" not in d["raw"]["fields"]]
    assert orphans and all(d["parent_id"] is None and d["parent_key"] is None for d in orphans)


def test_data_center_epic_children_name_their_epic_through_the_epic_link_field(
    pipeline_factory: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JIRA_PAT", "demo-pat")
    pipeline = pipeline_factory(issues=120, days=5, mode="datacenter", pat="demo-pat")
    pipeline.sync_everything()

    issues = pipeline.stored_issues()
    by_id = {doc["issue_id"]: doc for doc in issues.values()}
    by_key = {doc["key"]: doc for doc in issues.values()}
    epic_children = [d for d in issues.values() if d["raw"]["fields"].get("customfield_10014")]
    subtasks = [d for d in issues.values() if d["issue_type"] == "Sub-task"]
    assert epic_children and subtasks
    for child in epic_children:
        assert "parent" not in child["raw"]["fields"], "Data Center: no parent for epic children"
        assert by_key[child["parent_key"]]["issue_type"] == "Epic"
        assert child["parent_id"] is None  # Epic Link holds a key only: the id is not resolved
    for child in subtasks:
        assert by_id[child["parent_id"]]["key"] == child["parent_key"]


def test_each_link_is_stored_from_both_sides_with_one_id_and_opposite_directions(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=120, days=5)
    result = pipeline.sync_everything()

    issues = pipeline.stored_issues()
    rendered = sum(len(d["raw"]["fields"]["issuelinks"]) for d in issues.values())
    links = rows_by_link(pipeline)
    assert rendered > 10, "the dataset links a share of its issues"
    assert sum(len(sides) for sides in links.values()) == rendered
    connection = site_connection_id(pipeline.fake.base_url)
    by_key = {d["key"]: d for d in issues.values()}
    for link_id, sides in links.items():
        assert len(sides) == 2, f"link {link_id} is stored on both issues"
        (a_key, a), (b_key, b) = sides.items()
        assert (a["other_issue_key"], b["other_issue_key"]) == (b_key, a_key)
        assert (a["other_issue_id"], b["other_issue_id"]) == (by_key[b_key]["issue_id"],
                                                              by_key[a_key]["issue_id"])
        assert {a["direction"], b["direction"]} == {"outward", "inward"}
        assert a["link_type_id"] == b["link_type_id"] and a["link_type_name"] in {
            "Blocks", "Cloners", "Duplicate", "Relates"}
        for row in (a, b):
            assert row["phrase"] == row["raw"]["type"][row["direction"]]
            assert row["connection_id"] == connection and row["synced_at"]
            assert row["raw"] in by_key[row["issue_key"]]["raw"]["fields"]["issuelinks"]
    # One single-run step for the whole range: each partition's materialization reports it.
    assert {m["links"] for m in materializations(result, LINKS)} == {rendered}
    index = pipeline.db[LINKS].index_information()["connection_issue_link_unique"]
    assert index["unique"] and [k for k, _ in index["key"]] == [
        "connection_id", "issue_id", "link_id"]

    again = pipeline.sync_everything()
    assert materializations(again, LINKS)[0]["inserted"] == 0, "a rerun writes nothing new"
    assert rows_by_link(pipeline) == links


def test_a_link_removed_or_added_in_jira_is_reflected_after_the_next_run(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=120, days=5)
    pipeline.sync_everything()
    links = rows_by_link(pipeline)
    link_id, sides = sorted(links.items())[0]
    a_key, b_key = sorted(sides)
    unlinked = [k for k, d in pipeline.stored_issues().items()
                if not d["raw"]["fields"]["issuelinks"]]
    c_key, d_key = (pipeline.stored_issues()[i]["key"] for i in unlinked[:2])

    pipeline.fake.admin.advance_clock(60)
    pipeline.fake.admin.unlink_issues(link_id)
    added = pipeline.fake.admin.link_issues("Duplicate", c_key, d_key)
    pipeline.run("jira_issues_job", pipeline.today)

    after = rows_by_link(pipeline)
    assert link_id not in after
    assert pipeline.db[LINKS].count_documents({"issue_key": {"$in": [a_key, b_key]},
                                               "link_id": link_id}) == 0
    assert {k: r["direction"] for k, r in after[added].items()} == {c_key: "outward",
                                                                    d_key: "inward"}
    assert after[added][c_key]["phrase"] == "duplicates"
    assert after[added][d_key]["phrase"] == "is duplicated by"
    assert {k: v for k, v in after.items() if k != added} == {
        k: v for k, v in links.items() if k != link_id}


def test_a_deleted_issue_s_links_are_gone_from_both_sides(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=120, days=5)
    pipeline.sync_everything()
    links = rows_by_link(pipeline)
    victim_key = next(iter(sorted(links.values(), key=lambda s: sorted(s))[0]))
    victim = next(d for d in pipeline.stored_issues().values() if d["key"] == victim_key)
    partners = {row["other_issue_key"]
                for row in pipeline.db[LINKS].find({"issue_id": victim["issue_id"]})}
    assert partners

    pipeline.fake.admin.delete_issue(victim_key)
    result = pipeline.run("jira_sync_job", pipeline.today, reconcile_deletions=True)

    assert result.success
    assert pipeline.stored_issues(deleted=True).keys() == {victim["issue_id"]}
    assert pipeline.db[LINKS].count_documents({"issue_id": victim["issue_id"]}) == 0
    # The partners' `updated` did not move in Jira, yet their links to the deleted issue go.
    assert pipeline.db[LINKS].count_documents({"other_issue_id": victim["issue_id"]}) == 0
    survivors = {link_id: sides for link_id, sides in links.items() if victim_key not in sides}
    assert rows_by_link(pipeline) == survivors
