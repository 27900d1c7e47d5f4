"""Boards and sprints through JiraClient against the fake over HTTP, and the sprint field's
parser (Cloud objects, Data Center strings)."""

import asyncio

import pytest

from jira_pipeline.fakejira import agile
from jira_pipeline.jira import BearerPAT, JiraBadRequest, JiraClient, RateLimiter
from jira_pipeline.jira.sprints import SprintRecord, SprintsNotSupported, sprint_ids
from jira_pipeline_tests.jira.test_client import FAST_RETRY, basic_client, requests_to


def test_sprint_ids_reads_cloud_objects_and_data_center_strings():
    cloud = [{"id": 3, "name": "CORE Sprint 3", "state": "closed", "boardId": 1},
             {"id": 4, "name": "CORE Sprint 4", "state": "active", "boardId": 1}]
    dc = ["com.atlassian.greenhopper.service.sprint.Sprint@6dd2b6a1[id=12,rapidViewId=3,"
          "state=CLOSED,name=Team, the first,startDate=2017-12-11T11:23:58.000+01:00,"
          "endDate=<null>,completeDate=<null>,activatedDate=<null>,sequence=12,goal=<null>]",
          "com.atlassian.greenhopper.service.sprint.Sprint@1f[rapidViewId=3,id=13,state=ACTIVE]"]
    assert sprint_ids(cloud) == ["3", "4"]
    assert sprint_ids(dc) == ["12", "13"]
    assert sprint_ids(None) == [] and sprint_ids("Sprint 1") == [] and sprint_ids({}) == []
    assert sprint_ids([{"name": "no id"}, "garbage", True, {"id": 5}, {"id": 5}]) == ["5"]


def test_boards_and_sprints_are_paged_and_a_board_without_sprints_is_told_apart(
    fake_jira_factory,
):
    fake = fake_jira_factory(issues=50)
    truth = agile.boards(fake.site.data)

    async def scenario():
        async with basic_client(fake) as client:
            boards = [b async for b in client.boards(page_size=3)]
            shown = {}
            refused = []
            for board in boards:
                try:
                    shown[board["id"]] = [s async for s in client.board_sprints(
                        str(board["id"]), page_size=2)]
                except SprintsNotSupported as error:
                    refused.append(error.board_id)
            one = await client.sprint("1")
            none = await client.sprint("99999")
            return boards, shown, refused, one, none

    boards, shown, refused, one, none = asyncio.run(scenario())
    assert [b["id"] for b in boards] == [b.id for b in truth]
    assert sorted(refused) == sorted(str(b.id) for b in truth if not b.supports_sprints)
    assert [s["id"] for s in shown[1]] == [s.id for s in agile.sprints(fake.site.data)
                                          if s.board_id == 1]
    assert one["id"] == 1 and none is None
    assert requests_to(fake, "/rest/agile/1.0/board", 200) == -(-len(truth) // 3)


def test_another_400_of_a_sprint_list_is_raised_as_it_came(fake_jira_factory):
    fake = fake_jira_factory(issues=10)
    fake.admin.fail_board_sprints(3, 400, "The board filter is invalid")

    async def scenario():
        async with basic_client(fake) as client:
            return [s async for s in client.board_sprints("3")]

    with pytest.raises(JiraBadRequest, match="The board filter is invalid"):
        asyncio.run(scenario())


def test_data_center_serves_the_same_agile_paths(fake_jira_factory):
    fake = fake_jira_factory(issues=10, mode="datacenter")

    async def scenario():
        async with JiraClient(BearerPAT(fake.config.pat), fake.base_url,
                              limiter=RateLimiter(0.0, 4), retry=FAST_RETRY) as client:
            boards = [b async for b in client.boards()]
            return boards, [s async for s in client.board_sprints("1")]

    boards, sprints = asyncio.run(scenario())
    assert len(boards) == len(agile.boards(fake.site.data))
    records = [SprintRecord.from_raw({"sprint": s, "board_ids": [1, 10]}, "c") for s in sprints]
    assert all(r.board_ids == ["1", "10"] and r.created_date is not None for r in records)
    assert all(r.activated_date is None for r in records)  # Data Center sends none
    assert {r.state for r in records} >= {"closed", "active"}


def test_pages_without_is_last_are_walked_to_their_end_each_row_once(fake_jira_factory):
    fake = fake_jira_factory(issues=10)
    fake.admin.omit_agile_is_last()
    truth = agile.boards(fake.site.data)
    own = [s.id for s in agile.sprints(fake.site.data) if s.board_id == 1]

    async def scenario():
        async with basic_client(fake) as client:
            boards = [b["id"] async for b in client.boards(page_size=4)]
            sprints = [s["id"] async for s in client.board_sprints("1", page_size=3)]
            return boards, sprints

    boards, sprints = asyncio.run(scenario())
    assert boards == [b.id for b in truth]
    assert sorted(sprints) == own and len(own) > 3
    # Boards pages state `total`: the walk stops there; sprint pages say nothing, so the walk
    # reads on to an empty page.
    assert requests_to(fake, "/rest/agile/1.0/board", 200) == -(-len(truth) // 4)
    assert requests_to(fake, "/board/{boardId}/sprint", 200) == -(-len(own) // 3) + 1
