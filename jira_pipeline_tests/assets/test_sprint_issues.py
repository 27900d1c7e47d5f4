"""`jira_sprint_issues` and `jira_sprint_report`: sprint membership derived from the stored
issues and changelogs equals the fake's ground truth, costs no request, follows moves made
after the sync, and the report's figures follow from the membership."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest

from jira_pipeline.fakejira import agile
from jira_pipeline.fakejira.dataset import EPIC, SUBTASK
from jira_pipeline.timeutil import parse_jira_datetime, to_epoch_ms
from jira_pipeline_tests.assets.conftest import (
    Pipeline,
    check_results,
    day_start,
    materializations,
)

# What the membership needs: the field catalog, the issues and their changelogs.
MEMBERSHIP_ASSETS = ["jira_fields", "jira_statuses", "jira_projects", "jira_boards",
                     "jira_sprints", "jira_issues", "jira_issue_changelogs",
                     "jira_sprint_issues"]


def stored_membership(pipeline: Pipeline) -> dict[int, dict[str, list[tuple[int, int | None]]]]:
    """The stored rows as the fake's ground truth shapes them: sprint -> issue -> intervals."""
    out: dict[int, dict[str, list[tuple[int, int | None]]]] = {}
    for row in pipeline.db["jira_sprint_issues"].find({}):
        out.setdefault(int(row["sprint_id"]), {})[row["issue_id"]] = [
            (to_epoch_ms(parse_jira_datetime(span["added_at"])),
             None if span["removed_at"] is None
             else to_epoch_ms(parse_jira_datetime(span["removed_at"])))
            for span in row["intervals"]
        ]
    return out


@pytest.mark.parametrize("mode", ["cloud", "datacenter"])
def test_membership_equals_the_fakes_ground_truth_for_every_sprint_without_a_request(
    pipeline_factory: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch, mode: str,
) -> None:
    if mode == "datacenter":  # its sprint field is a list of Sprint@ strings
        monkeypatch.setenv("JIRA_PAT", "demo-pat")
        pipeline = pipeline_factory(issues=150, days=45, mode=mode, pat="demo-pat")
    else:
        pipeline = pipeline_factory(issues=150, days=45)
    keys = pipeline.partition_keys()
    pipeline.run("jira_sync_job", keys[0], keys[-1],
                 assets=[name for name in MEMBERSHIP_ASSETS if name != "jira_sprint_issues"])
    before = pipeline.fake.admin.stats()["requests"]

    result = pipeline.run("jira_sync_job", keys[0], keys[-1], assets=["jira_sprint_issues"])

    truth = agile.sprint_membership(pipeline.fake.site.data)
    assert truth, "the fake gives some issues sprint history"
    assert stored_membership(pipeline) == truth
    # Derived from what was stored: not one request to Jira but the membership check's
    # (its sample of closed sprints, counted in its own figures).
    after = pipeline.fake.admin.stats()["requests"]
    asked = {endpoint: sum(after[endpoint].values()) - sum(before.get(endpoint, {}).values())
             for endpoint in after}
    asked = {endpoint: n for endpoint, n in asked.items() if n}
    check = check_results(result)[("jira_sprint_issues", "sprint_membership_matches_jira")]
    assert check.passed
    assert asked == {"GET /rest/agile/1.0/sprint/{sprintId}/issue":
                     check.metadata["api_calls"].value}
    # One step for the partition range: each partition's materialization carries its figures.
    meta = materializations(result, "jira_sprint_issues")[0]
    assert meta["membership_rows"] == sum(len(issues) for issues in truth.values())
    current = {(str(sid), issue_id) for sid, issues in truth.items()
               for issue_id, spans in issues.items() if spans[-1][1] is None}
    members = {(row["sprint_id"], row["issue_id"])
               for row in pipeline.db["jira_sprint_issues"].find({"is_member": True})}
    assert members == current


def test_an_issue_moved_after_the_sync_is_followed_by_the_next_partition_run(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=150, days=45)
    keys = pipeline.partition_keys()
    pipeline.run("jira_sync_job", keys[0], keys[-1], assets=MEMBERSHIP_ASSETS)
    data = pipeline.fake.site.data
    active = max((s for s in agile.sprints(data) if s.state == "active"), key=lambda s: sum(
        s.id in agile.current_sprint_ids(data, issue) for issue in data.issues))
    outsider = next(issue for issue in data.issues if not issue.deleted
                    and active.id not in agile.current_sprint_ids(data, issue)
                    and issue.type not in (EPIC, SUBTASK))
    member = next(issue for issue in data.issues if not issue.deleted
                  and active.id in agile.current_sprint_ids(data, issue)
                  and issue.key != outsider.key)
    admin = pipeline.fake.admin
    admin.move_to_sprint(active.id, add=[outsider.key])
    admin.move_to_sprint(active.id, remove=[member.key])

    pipeline.run("jira_issues_job", pipeline.today,
                 assets=["jira_issues", "jira_issue_changelogs", "jira_sprint_issues"])

    assert stored_membership(pipeline) == agile.sprint_membership(data)
    rows = {row["issue_id"]: row for row in pipeline.db["jira_sprint_issues"].find(
        {"sprint_id": str(active.id)})}
    assert rows[str(outsider.id)]["is_member"] is True
    assert rows[str(outsider.id)]["added_during_sprint"] is True
    assert rows[str(member.id)]["is_member"] is False
    assert rows[str(member.id)]["removed_during_sprint"] is True


def test_a_rerun_writes_nothing_new(pipeline_factory: Callable[..., Pipeline]) -> None:
    pipeline = pipeline_factory(issues=100, days=45)
    keys = pipeline.partition_keys()
    pipeline.run("jira_sync_job", keys[0], keys[-1], assets=MEMBERSHIP_ASSETS)

    again = pipeline.run("jira_sync_job", keys[0], keys[-1], assets=["jira_sprint_issues"])

    meta = materializations(again, "jira_sprint_issues")[0]
    assert meta["membership_rows"] > 0
    assert (meta["inserted"], meta["updated"], meta["removed"]) == (0, 0, 0)


def report_oracle(data: Any) -> dict[tuple[str, str], dict[str, int]]:
    """Each closed sprint's issue figures straight from the fake's ground truth."""
    keys = {str(issue.id): issue.key.rpartition("-")[0] for issue in data.issues}
    out: dict[tuple[str, str], dict[str, int]] = {}
    for sprint in agile.sprints(data):
        if sprint.state != "closed":
            continue
        start = sprint.activated_ms or sprint.start_ms
        end = sprint.complete_ms
        assert start is not None and end is not None
        for issue_id, spans in agile.sprint_membership(data).get(sprint.id, {}).items():
            def inside(moment: int, spans: list[tuple[int, int | None]] = spans) -> bool:
                return any(a <= moment and (r is None or moment < r) for a, r in spans)

            figures = out.setdefault((str(sprint.id), keys[issue_id]), {
                "issues_committed": 0, "issues_added": 0, "issues_removed": 0})
            at_start, at_end = inside(start), inside(end)
            figures["issues_committed"] += at_start
            figures["issues_added"] += (not at_start) and any(start < a < end for a, _ in spans)
            figures["issues_removed"] += (not at_end) and any(
                r is not None and start < r <= end for _, r in spans)
    return out


def test_the_sprint_report_follows_from_the_membership_and_the_check_passes(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=150, days=45)

    result = pipeline.sync_everything()

    checks = check_results(result)
    assert checks[("jira_sprint_issues", "sprint_membership_matches_jira")].passed
    data = pipeline.fake.site.data
    stored = {(row["sprint_id"], row["project_key"]): row
              for row in pipeline.db["jira_sprint_report"].find({})}
    expected = report_oracle(data)
    assert expected
    for key, figures in expected.items():
        assert {name: stored[key][name] for name in figures} == figures, key
    sprint_ids = {str(sprint.id) for sprint in agile.sprints(data)}
    assert {sprint_id for sprint_id, _ in stored} == sprint_ids
    # Completed and carried over split the issues in a closed sprint at its end.
    for row in stored.values():
        if row["state"] == "closed":
            ends = pipeline.db["jira_sprint_issues"].count_documents(
                {"sprint_id": row["sprint_id"], "project_key": row["project_key"],
                 "in_sprint_at_end": True})
            assert row["issues_completed"] + row["issues_carried_over"] == ends
    # The README's scope-creep query: one aggregation over the membership.
    added: dict[str, int] = {}
    for doc in pipeline.db["jira_sprint_issues"].find({"added_during_sprint": True}):
        added[doc["sprint_id"]] = added.get(doc["sprint_id"], 0) + 1
    rows = list(pipeline.db["jira_sprint_issues"].aggregate([
        {"$match": {"added_during_sprint": True}},
        {"$group": {"_id": "$sprint_id", "added": {"$sum": 1},
                    "points": {"$sum": "$story_points_at_end"}}},
        {"$sort": {"added": -1}}, {"$limit": 5}]))
    assert added and [row["added"] for row in rows] == sorted(added.values(), reverse=True)[:5]
    assert all(added[row["_id"]] == row["added"] for row in rows)


def test_the_membership_check_fails_when_a_stored_member_is_missing(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=150, days=45)
    pipeline.sync_everything()
    closed = max((s for s in agile.sprints(pipeline.fake.site.data) if s.state == "closed"),
                 key=lambda s: (s.complete_ms or 0, s.id))
    # A member whose issue today's partition does not recompute (updated before yesterday).
    quiet = {doc["issue_id"] for doc in pipeline.db["jira_issues"].find(
        {"updated": {"$lt": day_start(date.today() - timedelta(days=1))}})}
    row = next(row for row in pipeline.db["jira_sprint_issues"].find(
        {"sprint_id": str(closed.id), "is_member": True}) if row["issue_id"] in quiet)
    pipeline.db["jira_sprint_issues"].update_one({"_id": row["_id"]},
                                                 {"$set": {"is_member": False}})

    result = pipeline.run("jira_sync_job", pipeline.today, assets=["jira_sprint_issues"])

    check = check_results(result)[("jira_sprint_issues", "sprint_membership_matches_jira")]
    assert not check.passed
    assert f"issue {row['issue_id']} in Jira, not stored" in check.metadata["sample"].value
    assert check.metadata["sprints_checked"].value >= 1


def test_rows_follow_a_sprint_that_closed_after_they_were_written(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=150, days=45)
    keys = pipeline.partition_keys()
    pipeline.run("jira_sync_job", keys[0], keys[-1], assets=MEMBERSHIP_ASSETS)
    closed = max((s for s in agile.sprints(pipeline.fake.site.data) if s.state == "closed"),
                 key=lambda s: (s.complete_ms or 0, s.id))
    rows = pipeline.db["jira_sprint_issues"]
    written = {row["issue_id"]: row for row in rows.find({"sprint_id": str(closed.id)})}
    assert written
    # The rows as they were written while the sprint ran (closing a sprint updates none of its
    # issues, so no partition window brings them back).
    rows.update_many({"sprint_id": str(closed.id)}, {"$set": {
        "sprint_completed_at": None, "in_sprint_at_end": False, "carried_over": False,
        "completed_in_sprint": False}})

    result = pipeline.run("jira_sync_job", pipeline.today, assets=["jira_sprint_issues"])

    meta = materializations(result, "jira_sprint_issues")[0]
    # (Those also updated in today's window are recomputed as such, not counted here.)
    assert 1 <= meta["issues_of_restarted_sprints"] <= len(written)
    after = {row["issue_id"]: row for row in rows.find({"sprint_id": str(closed.id)})}
    assert after.keys() == written.keys()
    for issue_id, row in after.items():
        assert to_epoch_ms(parse_jira_datetime(row["sprint_completed_at"])) == closed.complete_ms
        assert {k: row[k] for k in ("in_sprint_at_end", "carried_over", "completed_in_sprint")} == {
            k: written[issue_id][k] for k in ("in_sprint_at_end", "carried_over",
                                              "completed_in_sprint")}
