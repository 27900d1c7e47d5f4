"""The fake's agile API: boards and sprints paged as Jira Software pages them, the shared
sprint listed by both boards, the sprint field on issues equal to its changelog's replay
(Cloud objects and Data Center strings) and to the ground truth the pipeline's tests import.

Atlassian's Jira Software OpenAPI document could not be obtained through the project's tools,
so bodies are validated against the published response shapes, written below as JSON schemas
(see jira_pipeline_tests/data/README.md)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import jsonschema
import pytest

from jira_pipeline.fakejira import agile
from jira_pipeline.fakejira.admin import FakeJiraAdminError
from jira_pipeline_tests.fakejira.jira_pages import basic_client, ok_json, walk_token_pages

AGILE = "/rest/agile/1.0"
_ISO = {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"}
LOCATION = {
    "type": "object",
    "required": ["projectId", "projectKey", "projectName", "displayName", "projectTypeKey",
                 "avatarURI", "name"],
    "properties": {"projectId": {"type": "integer"}, "projectKey": {"type": "string"},
                   "projectName": {"type": "string"}, "displayName": {"type": "string"},
                   "projectTypeKey": {"type": "string"}, "avatarURI": {"type": "string"},
                   "name": {"type": "string"}},
    "additionalProperties": False,
}
BOARD = {
    "type": "object",
    "required": ["id", "self", "name", "type", "location"],
    "properties": {"id": {"type": "integer"}, "self": {"type": "string"},
                   "name": {"type": "string"},
                   "type": {"enum": ["scrum", "kanban", "simple"]}, "location": LOCATION},
    "additionalProperties": False,
}
SPRINT = {
    "type": "object",
    "required": ["id", "self", "state", "name", "createdDate", "originBoardId", "goal"],
    "properties": {"id": {"type": "integer"}, "self": {"type": "string"},
                   "state": {"enum": ["future", "active", "closed"]}, "name": {"type": "string"},
                   "startDate": _ISO, "endDate": _ISO, "completeDate": _ISO,
                   "activatedDate": _ISO, "createdDate": _ISO,
                   "originBoardId": {"type": "integer"}, "goal": {"type": "string"}},
    "additionalProperties": False,
}
BOARD_PAGE = {
    "type": "object",
    "required": ["maxResults", "startAt", "total", "isLast", "values"],
    "properties": {"maxResults": {"type": "integer"}, "startAt": {"type": "integer"},
                   "total": {"type": "integer"}, "isLast": {"type": "boolean"},
                   "values": {"type": "array", "items": BOARD}},
    "additionalProperties": False,
}
SPRINT_PAGE = {
    "type": "object",
    "required": ["maxResults", "startAt", "isLast", "values"],
    "properties": {"maxResults": {"type": "integer"}, "startAt": {"type": "integer"},
                   "isLast": {"type": "boolean"}, "values": {"type": "array", "items": SPRINT}},
    "additionalProperties": False,
}
ISSUE_PAGE = {
    "type": "object",
    "required": ["expand", "startAt", "maxResults", "total", "issues"],
    "properties": {"expand": {"type": "string"}, "startAt": {"type": "integer"},
                   "maxResults": {"type": "integer"}, "total": {"type": "integer"},
                   "issues": {"type": "array", "items": {
                       "type": "object", "required": ["id", "key", "fields"]}}},
    "additionalProperties": False,
}
ERROR = {
    "type": "object", "required": ["errorMessages", "errors"],
    "properties": {"errorMessages": {"type": "array", "items": {"type": "string"}},
                   "errors": {"type": "object"}},
    "additionalProperties": False,
}
CLOUD_FIELD_SPRINT = {
    "type": "object",
    "required": ["id", "name", "state", "boardId", "goal"],
    "properties": {"id": {"type": "integer"}, "name": {"type": "string"},
                   "state": {"enum": ["future", "active", "closed"]},
                   "boardId": {"type": "integer"}, "goal": {"type": "string"},
                   "startDate": _ISO, "endDate": _ISO, "completeDate": _ISO},
    "additionalProperties": False,
}
DC_SPRINT = re.compile(
    r"^com\.atlassian\.greenhopper\.service\.sprint\.Sprint@[0-9a-f]+\[id=(\d+),"
    r"rapidViewId=(\d+),state=(CLOSED|ACTIVE|FUTURE),name=([^,]+),startDate=([^,]+),"
    r"endDate=([^,]+),completeDate=([^,]+),activatedDate=([^,]+),sequence=\d+,goal=(.*)\]$")


def walk(client: httpx.Client, path: str, size: int, schema: dict,
         params: dict | None = None) -> list[dict]:
    """startAt/maxResults pages until isLast, each validated; a page without isLast fails."""
    values: list[dict] = []
    for _ in range(1000):
        page = ok_json(client.get(path, params={**(params or {}), "startAt": len(values),
                                                "maxResults": size}))
        jsonschema.validate(page, schema)
        assert page["startAt"] == len(values)
        assert len(page["values"]) <= size
        values.extend(page["values"])
        if page["isLast"]:
            return values
        assert page["values"], "an empty page that is not the last would loop forever"
    raise AssertionError(f"{path} never said isLast")


def dc_client(fake: Any) -> httpx.Client:
    return httpx.Client(base_url=fake.base_url, timeout=30,
                        headers={"Authorization": f"Bearer {fake.config.pat}"})


def test_boards_are_paged_below_their_count_and_each_listed_once(
    reader: httpx.Client, read_only_fake: Any
) -> None:
    truth = agile.boards(read_only_fake.site.data)
    boards = walk(reader, f"{AGILE}/board", 3, BOARD_PAGE)
    assert [b["id"] for b in boards] == [b.id for b in truth]
    assert len(truth) > 3
    kinds = [b["type"] for b in boards]
    projects = read_only_fake.site.data.projects
    assert kinds.count("scrum") == len(projects) + 1  # one a project and the cross-team board
    assert kinds.count("kanban") == len(projects) // 2
    assert kinds.count("simple") == 2
    first = ok_json(reader.get(f"{AGILE}/board"))
    assert first["maxResults"] == 50 and first["total"] == len(truth) and first["isLast"]
    scrum = ok_json(reader.get(f"{AGILE}/board", params={"type": "scrum"}))["values"]
    assert {b["type"] for b in scrum} == {"scrum"}
    core = ok_json(reader.get(f"{AGILE}/board", params={"projectKeyOrId": "CORE"}))["values"]
    assert {b["location"]["projectKey"] for b in core} == {"CORE"}
    assert boards[0]["location"]["projectId"] == int(projects[0].id)


def test_sprints_are_paged_and_filtered_by_state(reader: httpx.Client,
                                                  read_only_fake: Any) -> None:
    truth = [s for s in agile.sprints(read_only_fake.site.data) if s.board_id == 1]
    listed = walk(reader, f"{AGILE}/board/1/sprint", 2, SPRINT_PAGE)
    assert sorted(s["id"] for s in listed) == [s.id for s in truth]
    assert len(truth) > 2
    states = [s["state"] for s in listed]
    assert states.count("active") == 1 and "closed" in states
    assert all("completeDate" in s for s in listed if s["state"] == "closed")
    assert all("completeDate" not in s for s in listed if s["state"] != "closed")
    assert all("startDate" not in s for s in listed if s["state"] == "future")
    assert all("activatedDate" in s for s in listed if s["state"] != "future")  # Cloud
    starts = [s["startDate"] for s in listed if "startDate" in s]
    assert starts == sorted(starts)
    open_ones = walk(reader, f"{AGILE}/board/1/sprint", 50, SPRINT_PAGE,
                     {"state": "future,active"})
    assert {s["state"] for s in open_ones} <= {"future", "active"}
    assert len(open_ones) == sum(1 for s in truth if s.state != "closed")
    bad = reader.get(f"{AGILE}/board/1/sprint", params={"state": "done"})
    assert bad.status_code == 400
    jsonschema.validate(bad.json(), ERROR)


@pytest.mark.parametrize("kind", ["kanban", "simple"])
def test_boards_without_sprints_answer_400(reader: httpx.Client, read_only_fake: Any,
                                           kind: str) -> None:
    board = next(b for b in agile.boards(read_only_fake.site.data)
                 if b.type == kind and not b.supports_sprints)
    response = reader.get(f"{AGILE}/board/{board.id}/sprint")
    assert response.status_code == 400
    assert response.json() == {"errorMessages": ["The board does not support sprints"],
                               "errors": {}}
    jsonschema.validate(response.json(), ERROR)


def test_unknown_board_and_sprint_answer_404(reader: httpx.Client) -> None:
    for path in (f"{AGILE}/board/999/sprint", f"{AGILE}/sprint/9999",
                 f"{AGILE}/sprint/9999/issue"):
        response = reader.get(path)
        assert response.status_code == 404, path
        jsonschema.validate(response.json(), ERROR)


def test_shared_sprint_is_listed_by_both_boards_with_one_id(
    reader: httpx.Client, read_only_fake: Any
) -> None:
    cross = next(b for b in agile.boards(read_only_fake.site.data) if len(b.shows) > 1)
    shown = walk(reader, f"{AGILE}/board/{cross.id}/sprint", 4, SPRINT_PAGE)
    owners = {board: {s["id"]: s for s in walk(reader, f"{AGILE}/board/{board}/sprint", 50,
                                                SPRINT_PAGE)} for board in cross.shows}
    assert {s["originBoardId"] for s in shown} == set(cross.shows) == {1, 2}
    for sprint in shown:
        assert sprint == owners[sprint["originBoardId"]][sprint["id"]]
        assert sprint == ok_json(reader.get(f"{AGILE}/sprint/{sprint['id']}"))
    assert len(shown) == sum(len(listed) for listed in owners.values())


def _sprint_issue_ids(client: httpx.Client, sprint_id: int, size: int = 7) -> list[str]:
    ids: list[str] = []
    for _ in range(1000):
        page = ok_json(client.get(f"{AGILE}/sprint/{sprint_id}/issue",
                                  params={"startAt": len(ids), "maxResults": size,
                                          "fields": "summary,customfield_10020"}))
        jsonschema.validate(page, ISSUE_PAGE)
        for issue in page["issues"]:
            assert sprint_id in [s["id"] for s in issue["fields"]["customfield_10020"]]
        ids.extend(i["id"] for i in page["issues"])
        if len(ids) >= page["total"]:
            assert len(ids) == page["total"]
            return ids
        assert page["issues"]
    raise AssertionError("sprint issues never ended")


def test_sprint_issues_are_the_ground_truths_current_members(
    reader: httpx.Client, read_only_fake: Any
) -> None:
    data = read_only_fake.site.data
    membership = agile.sprint_membership(data)
    checked = 0
    for sprint in agile.sprints(data):
        current = sorted(issue for issue, spans in membership.get(sprint.id, {}).items()
                         if spans[-1][1] is None)
        assert sorted(_sprint_issue_ids(reader, sprint.id)) == current
        checked += bool(current)
    assert checked > 10
    removed = [spans for members in membership.values() for spans in members.values()
               if spans[-1][1] is not None]
    carried = [issue for issue in {i for m in membership.values() for i in m}
               if sum(issue in m for m in membership.values()) > 1]
    assert removed, "some issues are removed from a sprint"
    assert carried, "some issues are carried over to the next sprint"


def _replay(histories: list[dict], field_id: str) -> list[dict]:
    items = [item for history in sorted(histories, key=lambda h: h["created"])
             for item in history["items"] if item.get("fieldId") == field_id]
    return items


def _check_replay(issue: dict, histories: list[dict], field_ids: list[int]) -> None:
    items = _replay(histories, "customfield_10020")
    previous: str | None = None
    for item in items:
        assert item["field"] == "Sprint" and item["fieldtype"] == "custom"
        assert item.get("from") == previous, (issue["key"], items)
        assert (item.get("from") is None) == (item.get("fromString") is None)
        previous = item.get("to")
    assert previous == (", ".join(str(s) for s in field_ids) or None), (issue["key"], items)
    points = _replay(histories, "customfield_10016")
    if points:
        assert points[-1]["field"] == "Story point estimate"
        assert float(points[-1]["toString"]) == issue["fields"]["customfield_10016"]
    if items or points:
        last = max(h["created"] for h in histories if any(
            i.get("fieldId") in ("customfield_10020", "customfield_10016") for i in h["items"]))
        assert _utc(issue["fields"]["updated"]) >= _utc(last), issue["key"]


def _utc(text: str) -> Any:
    from jira_pipeline.timeutil import parse_jira_datetime

    return parse_jira_datetime(text)


def test_cloud_sprint_field_equals_its_changelog_replay(reader: httpx.Client,
                                                         read_only_fake: Any) -> None:
    data = read_only_fake.site.data
    projects = ", ".join(p.key for p in data.projects)
    issues, _ = walk_token_pages(reader, f"project in ({projects}) ORDER BY key", 100,
                                 fields="customfield_10020,customfield_10016,updated")
    in_sprints = [i for i in issues if i["fields"]["customfield_10020"]]
    assert len(in_sprints) > 30
    assert all(i["fields"]["customfield_10016"] is not None for i in in_sprints)
    histories: dict[str, list[dict]] = {i["id"]: [] for i in issues}
    body: dict = {"issueIdsOrKeys": list(histories), "maxResults": 1000}
    while True:
        page = ok_json(reader.post("/rest/api/3/changelog/bulkfetch", json=body))
        for log in page["issueChangeLogs"]:
            histories[log["issueId"]].extend(log["changeHistories"])
        if "nextPageToken" not in page:
            break
        body["nextPageToken"] = page["nextPageToken"]
    by_num = {str(i.id): i for i in data.issues}
    estimates = 0
    for issue in issues:
        value = issue["fields"]["customfield_10020"]
        ids = []
        for sprint in value or []:
            jsonschema.validate(sprint, CLOUD_FIELD_SPRINT)
            ids.append(sprint["id"])
        assert ids == agile.current_sprint_ids(data, by_num[issue["id"]])
        _check_replay(issue, histories[issue["id"]], ids)
        estimates += bool(_replay(histories[issue["id"]], "customfield_10016"))
    assert estimates, "some sprint issues are re-estimated"
    v2 = ok_json(reader.get(f"/rest/api/2/issue/{in_sprints[0]['key']}",
                            params={"fields": "customfield_10020"}))
    assert v2["fields"]["customfield_10020"] == in_sprints[0]["fields"]["customfield_10020"]


def test_datacenter_sprint_field_is_strings_equal_to_its_changelog_replay(
    fake_jira_factory: Any
) -> None:
    fake = fake_jira_factory(issues=120, seed=3, mode="datacenter")
    data = fake.site.data
    sprints = {s.id: s for s in agile.sprints(data)}
    checked = 0
    with dc_client(fake) as client:
        for num in sorted(agile.agile_book(data).events):
            issue = data.issues[num]
            body = ok_json(client.get(f"/rest/api/2/issue/{issue.key}",
                                      params={"expand": "changelog",
                                              "fields": "customfield_10020,customfield_10016,"
                                                        "updated"}))
            ids = []
            for text in body["fields"]["customfield_10020"] or []:
                match = DC_SPRINT.match(text)
                assert match, text
                sprint = sprints[int(match[1])]
                assert int(match[2]) == sprint.board_id and match[3] == sprint.state.upper()
                assert match[4] == sprint.name
                assert (match[7] == "<null>") == (sprint.complete_ms is None)
                ids.append(sprint.id)
            assert ids == agile.current_sprint_ids(data, issue)
            _check_replay(body, body["changelog"]["histories"], ids)
            checked += bool(ids)
        assert checked > 10
        listed = walk(client, f"{AGILE}/board/1/sprint", 3, SPRINT_PAGE)
        assert listed and all("activatedDate" not in s for s in listed)
        assert ok_json(client.get(f"{AGILE}/board"))["total"] == len(agile.boards(data))


def test_many_histories_knob_keeps_sprint_history_consistent(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=60, seed=2, histories=(3, 8))
    data = fake.site.data
    nums = sorted(agile.agile_book(data).events)
    assert nums
    with basic_client(fake) as client:
        for num in nums[:15]:
            issue = data.issues[num]
            body = ok_json(client.get(f"/rest/api/3/issue/{issue.key}",
                                      params={"fields": "customfield_10020,customfield_10016,"
                                                        "updated"}))
            walked: list[dict] = []
            while True:
                page = ok_json(client.get(f"/rest/api/3/issue/{issue.key}/changelog",
                                          params={"startAt": len(walked), "maxResults": 4}))
                walked.extend(page["values"])
                if page["isLast"]:
                    break
            ids = [s["id"] for s in body["fields"]["customfield_10020"] or []]
            assert ids == agile.current_sprint_ids(data, issue)
            assert _replay(walked, "customfield_10020")
            _check_replay(body, walked, ids)


def test_admin_moves_an_issue_into_and_out_of_a_sprint_now(fake_jira: Any) -> None:
    data = fake_jira.site.data
    book = agile.agile_book(data)
    active = next(s for s in book.sprints if s.state == "active" and s.board_id == 1)
    closed = next(s for s in book.sprints if s.state == "closed")
    issue = next(i for i in data.issues if i.project == 0 and i.type == 1
                 and active.id not in book.current(i.num))
    before = agile.current_sprint_ids(data, issue)
    with basic_client(fake_jira) as client:
        old = ok_json(client.get(f"/rest/api/3/issue/{issue.key}"))["fields"]["updated"]
        fake_jira.admin.move_to_sprint(active.id, add=[issue.key])
        body = ok_json(client.get(f"/rest/api/3/issue/{issue.key}",
                                  params={"fields": "customfield_10020,customfield_10016,"
                                                    "updated", "expand": "changelog"}))
        ids = [s["id"] for s in body["fields"]["customfield_10020"]]
        assert ids[-1] == active.id
        assert [i for i in ids if i != active.id] == [
            s for s in before if book.sprints[s - 1].state == "closed"]
        assert _utc(body["fields"]["updated"]) > _utc(old)
        _check_replay(body, body["changelog"]["histories"], ids)
        assert str(issue.id) in _sprint_issue_ids(client, active.id)
        assert agile.sprint_membership(data)[active.id][str(issue.id)][-1][1] is None

        fake_jira.admin.move_to_sprint(active.id, remove=[issue.key])
        body = ok_json(client.get(f"/rest/api/3/issue/{issue.key}",
                                  params={"fields": "customfield_10020,customfield_10016,"
                                                    "updated", "expand": "changelog"}))
        ids = [s["id"] for s in body["fields"]["customfield_10020"] or []]
        assert active.id not in ids
        _check_replay(body, body["changelog"]["histories"], ids)
        assert str(issue.id) not in _sprint_issue_ids(client, active.id)
        assert agile.sprint_membership(data)[active.id][str(issue.id)][-1][1] is not None
    with pytest.raises(FakeJiraAdminError, match="closed sprint"):
        fake_jira.admin.move_to_sprint(closed.id, add=[issue.key])
    with pytest.raises(FakeJiraAdminError, match="is not in sprint"):
        fake_jira.admin.move_to_sprint(active.id, remove=[issue.key])


def test_removed_board_leaves_the_listing_and_comes_back(fake_jira: Any) -> None:
    data = fake_jira.site.data
    with basic_client(fake_jira) as client:
        counts = agile.agile_counts(fake_jira.site.renderer(fake_jira.base_url, "3"))
        fake_jira.admin.remove_board(2)
        ids = [b["id"] for b in walk(client, f"{AGILE}/board", 4, BOARD_PAGE)]
        assert 2 not in ids and len(ids) == counts["jira_boards"] - 1
        assert client.get(f"{AGILE}/board/2/sprint").status_code == 404
        own = [s for s in agile.sprints(data) if s.board_id == 2]
        # Its sprints stay readable by id, and the cross-team board still shows them.
        assert ok_json(client.get(f"{AGILE}/sprint/{own[0].id}"))["originBoardId"] == 2
        after = agile.agile_counts(fake_jira.site.renderer(fake_jira.base_url, "3"))
        assert after == {"jira_boards": counts["jira_boards"] - 1,
                         "jira_sprints": counts["jira_sprints"]}
        fake_jira.admin.restore_board(2)
        assert [b["id"] for b in walk(client, f"{AGILE}/board", 50, BOARD_PAGE)] == sorted(
            [*ids, 2])
        fake_jira.admin.fail_board_sprints(3, 400, "Something else went wrong")
        failed = client.get(f"{AGILE}/board/3/sprint")
        assert failed.status_code == 400
        assert failed.json()["errorMessages"] == ["Something else went wrong"]
        fake_jira.admin.fail_board_sprints(3, None)
        assert client.get(f"{AGILE}/board/3/sprint").status_code == 200


def test_agile_counts_match_what_is_listed(reader: httpx.Client, read_only_fake: Any) -> None:
    counts = agile.agile_counts(read_only_fake.site.renderer(read_only_fake.base_url, "3"))
    boards = walk(reader, f"{AGILE}/board", 50, BOARD_PAGE)
    sprint_ids: set[int] = set()
    for board in boards:
        response = reader.get(f"{AGILE}/board/{board['id']}/sprint")
        if response.status_code == 400:
            continue
        sprint_ids |= {s["id"] for s in ok_json(response)["values"]}
    assert counts == {"jira_boards": len(boards), "jira_sprints": len(sprint_ids)}
    assert counts["jira_sprints"] == len(agile.sprints(read_only_fake.site.data))


def test_agile_api_answers_over_oauth_too(fake_jira: Any) -> None:
    # The site's cloud id prefixes the OAuth surface; without a token it answers 401.
    response = httpx.get(f"{fake_jira.base_url}/ex/jira/{fake_jira.cloud_id}{AGILE}/board")
    assert response.status_code == 401
