"""`jira_boards` and `jira_sprints`: full-refresh dimensions of the dimensions step. Every
board is stored, each sprint once with every board that shows it, kanban boards cost no sprint
request, a board without sprints is skipped and counted, vanished rows are marked deleted and
revived, and a sprint only issues reference is fetched one by one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from jira_pipeline.assets.sites import site_connection_id
from jira_pipeline.fakejira import agile
from jira_pipeline.jira.sprints import sprint_ids
from jira_pipeline_tests.assets.conftest import (
    Pipeline,
    check_results,
    materializations,
    this_hour,
)
from jira_pipeline_tests.conftest import FakeJiraHandle
from jira_pipeline_tests.fakejira.jira_pages import basic_client, ok_json

SPRINT_LIST = "GET /rest/agile/1.0/board/{boardId}/sprint"
ONE_SPRINT = "GET /rest/agile/1.0/sprint/{sprintId}"


def stored(pipeline: Pipeline, collection: str, id_field: str) -> dict[str, dict]:
    return {doc[id_field]: doc for doc in pipeline.db[collection].find()}


def requests(pipeline: Pipeline, endpoint: str) -> dict[str, int]:
    return pipeline.fake.admin.stats()["requests"].get(endpoint, {})


def test_a_dimensions_run_stores_every_board_and_each_sprint_once(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=30, days=40)
    data = pipeline.fake.site.data

    result = pipeline.run("jira_dimensions_job")

    assert result.success
    spent = pipeline.fake.admin.stats()["requests"]  # before this test's own requests
    connection = site_connection_id(pipeline.fake.base_url)
    boards = stored(pipeline, "jira_boards", "board_id")
    truth = agile.boards(data)
    assert set(boards) == {str(b.id) for b in truth}
    with basic_client(pipeline.fake) as client:
        listed = ok_json(client.get("/rest/agile/1.0/board"))["values"]
        for board in listed:
            doc = boards[str(board["id"])]
            assert doc["raw"] == board and doc["connection_id"] == connection
            assert (doc["name"], doc["type"]) == (board["name"], board["type"])
            assert doc["project_key"] == board["location"]["projectKey"]
            assert doc["project_id"] == str(board["location"]["projectId"])
            assert doc["is_deleted"] is False
        sprints = stored(pipeline, "jira_sprints", "sprint_id")
        assert set(sprints) == {str(s.id) for s in agile.sprints(data)}
        assert pipeline.db["jira_sprints"].count_documents({}) == len(sprints)
        shown_by = {str(s.id): sorted(str(b.id) for b in truth if s.board_id in b.shows)
                    for s in agile.sprints(data)}
        shared = [sid for sid, by in shown_by.items() if len(by) == 2]
        assert shared, "the cross-team board shows other boards' sprints"
        for sprint in agile.sprints(data):
            doc = sprints[str(sprint.id)]
            assert doc["board_ids"] == sorted(shown_by[str(sprint.id)], key=int)
            assert doc["origin_board_id"] == str(sprint.board_id)
            assert doc["raw"] == ok_json(client.get(f"/rest/agile/1.0/sprint/{sprint.id}"))
            assert (doc["name"], doc["state"], doc["goal"]) == (sprint.name, sprint.state,
                                                                 sprint.goal)
            assert isinstance(doc["created_date"], datetime)
            assert (doc["start_date"] is None) == (sprint.start_ms is None)
            assert (doc["complete_date"] is None) == (sprint.complete_ms is None)
            assert (doc["activated_date"] is None) == (sprint.activated_ms is None)
            if sprint.start_ms is not None:
                assert int(doc["start_date"].timestamp() * 1000) == sprint.start_ms
    # Kanban boards cost no sprint request: one list (one page) per other board.
    asked = [b for b in truth if b.type != "kanban"]
    assert spent[SPRINT_LIST] == {"200": len(asked) - 1, "400": 1}
    # The board listing is one page, read once: the sprints' walk starts from the listing
    # jira_boards read in the same step.
    assert spent["GET /rest/agile/1.0/board"] == {"200": 1}
    assert ONE_SPRINT not in spent  # no issue is stored yet: none referenced
    [meta] = materializations(result, "jira_sprints")
    assert meta["boards_without_sprints"] == 1
    assert meta["kanban_boards_not_asked"] == sum(b.type == "kanban" for b in truth)
    assert meta["boards_asked"] == len(asked)
    checks = check_results(result)
    for asset in ("jira_boards", "jira_sprints"):
        assert checks[(asset, "not_empty")].passed
        assert checks[(asset, "no_duplicate_keys")].passed
    assert checks[("jira_sprints", "referenced_sprints_stored")].passed
    indexes = pipeline.db["jira_sprints"].index_information()
    assert indexes["connection_sprint_unique"]["unique"] is True


@pytest.mark.parametrize("alone", ["jira_boards", "jira_sprints"])
def test_boards_or_sprints_materialized_alone_list_the_boards_themselves(
    pipeline_factory: Callable[..., Pipeline], alone: str,
) -> None:
    """Materialized alone (from the UI), either walk lists the boards itself (once) and stores
    every row Jira has, as a run of both does."""
    pipeline = pipeline_factory(issues=20, days=20)
    data = pipeline.fake.site.data
    truth = {"jira_boards": {str(b.id) for b in agile.boards(data)},
             "jira_sprints": {str(s.id) for s in agile.sprints(data)}}

    result = pipeline.run("jira_dimensions_job", assets=[alone])

    assert result.success
    assert requests(pipeline, "GET /rest/agile/1.0/board") == {"200": 1}
    field = "board_id" if alone == "jira_boards" else "sprint_id"
    assert set(stored(pipeline, alone, field)) == truth[alone] != set()
    other = "jira_sprints" if alone == "jira_boards" else "jira_boards"
    assert pipeline.db[other].count_documents({}) == 0


def test_a_board_removed_from_the_listing_is_marked_deleted_and_revived(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=20, days=20)
    kanban = next(b for b in agile.boards(pipeline.fake.site.data) if b.type == "kanban")
    pipeline.run("jira_dimensions_job")

    pipeline.fake.admin.remove_board(kanban.id)
    removed = pipeline.run("jira_dimensions_job")

    doc = stored(pipeline, "jira_boards", "board_id")[str(kanban.id)]
    assert doc["is_deleted"] is True and doc["deleted_at"] is not None
    assert materializations(removed, "jira_boards")[0]["marked_deleted"] == 1
    live = pipeline.db["jira_boards"].count_documents({"is_deleted": False})
    assert live == len(agile.boards(pipeline.fake.site.data)) - 1

    pipeline.fake.admin.restore_board(kanban.id)
    pipeline.run("jira_dimensions_job")
    doc = stored(pipeline, "jira_boards", "board_id")[str(kanban.id)]
    assert doc["is_deleted"] is False and doc["deleted_at"] is None


def _half_referenced_boards(data: Any) -> list[tuple[int, set[str], set[str]]]:
    """Boards no other board shows (once deleted, nothing lists their sprints) some of whose
    sprints issues reference, not all: (board id, its sprints, those referenced)."""
    in_field = {str(sid) for issue in data.issues for sid in
                agile.current_sprint_ids(data, issue)}
    shown_elsewhere = {b for board in agile.boards(data) for b in board.shows
                       if b != board.id}
    candidates = []
    for board in agile.boards(data):
        own = {str(s.id) for s in agile.sprints(data) if s.board_id == board.id}
        if board.id not in shown_elsewhere and own and set() < own & in_field < own:
            candidates.append((board.id, own, own & in_field))
    return candidates


def test_a_sprint_only_issues_reference_is_fetched_one_by_one(
    pipeline_factory: Callable[..., Pipeline],
    fake_jira_factory: Callable[..., FakeJiraHandle],
) -> None:
    # The dataset depends on its clock (this hour) as well as its seed: the first seed whose
    # dataset holds such a board, so the test does not depend on the hour it runs at.
    now = this_hour()
    seed = next((seed for seed in range(1, 40) if _half_referenced_boards(
        fake_jira_factory(issues=150, days=40, now=now, seed=seed).site.data)), None)
    assert seed is not None, "some board's sprints are referenced, not all"
    pipeline = pipeline_factory(issues=150, days=40, now=now, seed=seed)
    synced = pipeline.sync_everything()
    assert check_results(synced)[("jira_sprints", "referenced_sprints_stored")].passed
    candidates = _half_referenced_boards(pipeline.fake.site.data)
    board_id, own, referenced = candidates[0]
    before = sum(requests(pipeline, ONE_SPRINT).values())

    pipeline.fake.admin.remove_board(board_id)
    result = pipeline.run("jira_dimensions_job")

    sprints = stored(pipeline, "jira_sprints", "sprint_id")
    for sprint_id in referenced:
        assert sprints[sprint_id]["is_deleted"] is False
        assert sprints[sprint_id]["board_ids"] == []  # no board listed it this run
        assert sprints[sprint_id]["origin_board_id"] == str(board_id)
    for sprint_id in own - referenced:
        assert sprints[sprint_id]["is_deleted"] is True
    assert sum(requests(pipeline, ONE_SPRINT).values()) - before == len(referenced)
    [meta] = materializations(result, "jira_sprints")
    assert meta["referenced_not_listed"] == meta["fetched_one_by_one"] == len(referenced)
    assert check_results(result)[("jira_sprints", "referenced_sprints_stored")].passed
    assert stored(pipeline, "jira_boards", "board_id")[str(board_id)]["is_deleted"] is True


def test_a_referenced_sprint_jira_does_not_have_fails_the_check(
    pipeline_factory: Callable[..., Pipeline],
) -> None:
    pipeline = pipeline_factory(issues=40, days=10)
    admin = pipeline.fake.admin
    cloud_key, dc_key = sorted(i["key"] for i in admin.issues())[:2]
    # One Cloud-shaped and one Data Center-shaped value naming sprints Jira has no trace of.
    admin.set_raw_fields(cloud_key, {"customfield_10020": [
        {"id": 9999, "name": "Lost", "state": "closed", "boardId": 77, "goal": ""}]})
    admin.set_raw_fields(dc_key, {"customfield_10020": [
        "com.atlassian.greenhopper.service.sprint.Sprint@1a[id=9998,rapidViewId=77,"
        "state=CLOSED,name=Gone,startDate=<null>,endDate=<null>,completeDate=<null>,"
        "activatedDate=<null>,sequence=9998,goal=<null>]"]})
    admin.touch_issue(cloud_key)
    admin.touch_issue(dc_key)

    result = pipeline.sync_everything()

    stored_values = [doc["raw"]["fields"]["customfield_10020"]
                     for doc in pipeline.db["jira_issues"].find({"key": {"$in": [cloud_key,
                                                                                 dc_key]}})]
    assert sorted(sid for v in stored_values for sid in sprint_ids(v)) == ["9998", "9999"]
    check = check_results(result)[("jira_sprints", "referenced_sprints_stored")]
    assert not check.passed
    assert check.metadata["missing_sprints"].value == 2
    assert check.metadata["sample"].value == "9998, 9999"
    # Both were asked for by id (and Jira answered 404): the run itself did not fail.
    assert requests(pipeline, ONE_SPRINT).get("404") == 2
    assert result.success


@pytest.mark.parametrize("mode", ["datacenter"])
def test_data_center_boards_and_sprints(
    pipeline_factory: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch, mode: str,
) -> None:
    monkeypatch.setenv("JIRA_PAT", "demo-pat")
    pipeline = pipeline_factory(issues=40, days=30, mode=mode, pat="demo-pat")
    data = pipeline.fake.site.data

    result = pipeline.sync_everything()

    assert result.success
    sprints = stored(pipeline, "jira_sprints", "sprint_id")
    assert set(sprints) == {str(s.id) for s in agile.sprints(data)}
    assert all(doc["activated_date"] is None for doc in sprints.values())  # DC sends none
    assert sprints["1"]["board_ids"] == ["1", str(len(agile.boards(data)))]
    referenced = {sid for doc in pipeline.db["jira_issues"].find(
        {}, {"raw.fields.customfield_10020": 1}) for sid in sprint_ids(
        doc["raw"]["fields"].get("customfield_10020"))}
    assert referenced and referenced <= set(sprints)
    assert check_results(result)[("jira_sprints", "referenced_sprints_stored")].passed
    [meta] = materializations(result, "jira_sprints")
    assert meta["boards_without_sprints"] == 1


def test_the_dimensions_step_reads_the_issues_references_once_for_users_sprints_and_check(
    pipeline_factory: Callable[..., Pipeline], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Users and sprints both complete their listings from what stored issues reference, and
    `referenced_sprints_stored` judges the same references: one projected pass over the issues
    serves all three (it was three passes, each over every live issue)."""
    pipeline = pipeline_factory(issues=40, days=10)
    assert pipeline.sync_everything().success
    collection_type = type(pipeline.db["jira_issues"])
    real_find = collection_type.find
    passes: list[set[str]] = []

    def counted_find(self: Any, *args: Any, **kwargs: Any) -> Any:
        projection = args[1] if len(args) > 1 else kwargs.get("projection")
        if self.name == "jira_issues" and isinstance(projection, dict):
            passes.append(set(projection))
        return real_find(self, *args, **kwargs)

    monkeypatch.setattr(collection_type, "find", counted_find)
    result = pipeline.run("jira_dimensions_job")

    assert result.success
    reading_references = [p for p in passes
                          if {"assignee_account_id", "raw.fields.customfield_10020"} & p]
    assert reading_references == [
        {"status_id", "assignee_account_id", "reporter_account_id",
         "raw.fields.customfield_10020", "_id"}]
    assert check_results(result)[("jira_sprints", "referenced_sprints_stored")].passed
    [users] = materializations(result, "jira_users")
    assert users["referenced_not_listed"] == 0
