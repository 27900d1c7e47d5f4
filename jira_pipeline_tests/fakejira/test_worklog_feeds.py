"""The fake's worklog feeds (/worklog/updated, /worklog/deleted, /worklog/list) answer as
Atlassian documents them, from the generated worklogs, and follow admin edits a minute late."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from jira_pipeline.timeutil import parse_jira_datetime, to_epoch_ms
from jira_pipeline_tests.fakejira.jira_pages import basic_client, ok_json
from jira_pipeline_tests.openapi import assert_valid_response

UPDATED = "/rest/api/3/worklog/updated"
DELETED = "/rest/api/3/worklog/deleted"
LIST = "/rest/api/3/worklog/list"


def walk_feed(client: httpx.Client, path: str, since: int = 0) -> tuple[list[dict], list[dict]]:
    """Follow a ChangedWorklogs feed's nextPage until lastPage; (values, pages)."""
    values: list[dict] = []
    pages: list[dict] = []
    for _ in range(1000):
        page = ok_json(client.get(path, params={"since": since}))
        assert_valid_response("GET", path, 200, page)
        pages.append(page)
        values.extend(page["values"])
        if page["lastPage"]:
            assert "nextPage" not in page
            return values, pages
        next_since = int(parse_qs(urlsplit(page["nextPage"]).query)["since"][0])
        assert next_since == page["until"] > since, "a nextPage that does not advance"
        since = next_since
    raise AssertionError("the feed never reached lastPage")


def issue_worklogs(client: httpx.Client, issue_id: str) -> list[dict]:
    body = ok_json(client.get(f"/rest/api/3/issue/{issue_id}/worklog",
                              params={"maxResults": 5000}))
    assert_valid_response("GET", "/rest/api/3/issue/{issueIdOrKey}/worklog", 200, body)
    return body["worklogs"]


def listed(client: httpx.Client, ids: list[int]) -> list[dict]:
    body = ok_json(client.post(LIST, json={"ids": ids}))
    assert_valid_response("POST", LIST, 200, body)
    return body


def test_updated_feed_and_list_serve_every_generated_worklog_as_the_issues_do(
    fake_jira_factory: Any,
) -> None:
    fake = fake_jira_factory(issues=1200, seed=3)
    with basic_client(fake) as client:
        values, pages = walk_feed(client, UPDATED)
        assert len(pages) >= 2, "more than 1,000 worklogs: the feed pages"
        assert all(len(page["values"]) <= 1000 for page in pages)
        times = [value["updatedTime"] for value in values]
        assert times == sorted(times), "each page lists oldest to youngest"
        ids = list(dict.fromkeys(value["worklogId"] for value in values))
        expected: dict[str, dict] = {}
        for issue in fake.admin.issues():
            for worklog in issue_worklogs(client, issue["id"]):
                expected[worklog["id"]] = worklog
        assert {str(i) for i in ids} == set(expected)
        got: dict[str, dict] = {}
        for start in range(0, len(ids), 1000):
            for worklog in listed(client, ids[start:start + 1000]):
                got[worklog["id"]] = worklog
        assert got == expected


def test_list_refuses_more_than_1000_ids_or_none(jira: httpx.Client) -> None:
    too_many = jira.post(LIST, json={"ids": list(range(1, 1002))})
    assert too_many.status_code == 400
    assert jira.post(LIST, json={"ids": []}).status_code == 400
    assert jira.post(LIST, json={}).status_code == 400


def test_a_new_worklog_reaches_the_feed_a_minute_later_and_bumps_its_issue(
    fake_jira: Any, jira: httpx.Client
) -> None:
    issue = fake_jira.admin.issues()[0]
    before = ok_json(jira.get(f"/rest/api/3/issue/{issue['key']}"))["fields"]
    added = fake_jira.admin.add_worklog(issue["key"], seconds=5400)
    since = to_epoch_ms(parse_jira_datetime(added["updated"]))
    values, _ = walk_feed(jira, UPDATED, since)
    assert int(added["id"]) not in [v["worklogId"] for v in values], "the last minute is left out"
    fake_jira.admin.advance_clock(61)
    values, _ = walk_feed(jira, UPDATED, since)
    assert [v["worklogId"] for v in values] == [int(added["id"])]
    after = ok_json(jira.get(f"/rest/api/3/issue/{issue['key']}"))["fields"]
    assert after["updated"] != before["updated"]
    spent_before = (before["timetracking"] or {}).get("timeSpentSeconds", 0)
    assert after["timetracking"]["timeSpentSeconds"] == spent_before + 5400
    assert after["worklog"]["total"] == before["worklog"]["total"] + 1


def test_a_deleted_worklog_leaves_list_and_reaches_the_deleted_feed_a_minute_later(
    fake_jira: Any, jira: httpx.Client
) -> None:
    issue = next(i for i in fake_jira.admin.issues() if fake_jira.admin.worklogs(i["key"]))
    worklog = fake_jira.admin.worklogs(issue["key"])[0]
    since = to_epoch_ms(fake_jira.admin.now())
    fake_jira.admin.delete_worklog(worklog["id"])
    assert listed(jira, [int(worklog["id"])]) == [], "list leaves out a deleted worklog"
    assert walk_feed(jira, DELETED, since)[0] == []
    fake_jira.admin.advance_clock(61)
    values, _ = walk_feed(jira, DELETED, since)
    assert [v["worklogId"] for v in values] == [int(worklog["id"])]
    assert worklog["id"] not in {w["id"] for w in issue_worklogs(jira, issue["id"])}
    fields = ok_json(jira.get(f"/rest/api/3/issue/{issue['id']}"))["fields"]
    logged = sum(w["timeSpentSeconds"] for w in fake_jira.admin.worklogs(issue["key"]))
    assert (fields["timetracking"] or {}).get("timeSpentSeconds", 0) == logged


def test_a_worklog_moved_to_another_issue_keeps_its_id(fake_jira: Any, jira: httpx.Client) -> None:
    issues = fake_jira.admin.issues()
    source = next(i for i in issues if fake_jira.admin.worklogs(i["key"]))
    target = next(i for i in issues if i["key"] != source["key"])
    worklog = fake_jira.admin.worklogs(source["key"])[0]
    fake_jira.admin.edit_worklog(worklog["id"], issue_key=target["key"])
    [moved] = listed(jira, [int(worklog["id"])])
    assert moved["issueId"] == target["id"]
    assert worklog["id"] in {w["id"] for w in issue_worklogs(jira, target["id"])}
    assert worklog["id"] not in {w["id"] for w in issue_worklogs(jira, source["id"])}


@pytest.mark.parametrize("path", [UPDATED, DELETED])
def test_feeds_reject_a_since_that_is_not_a_number(jira: httpx.Client, path: str) -> None:
    assert jira.get(path, params={"since": "yesterday"}).status_code == 400
