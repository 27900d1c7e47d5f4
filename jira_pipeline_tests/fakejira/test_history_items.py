"""The fake's history items carry what Jira writes for an edit: ids as `from`/`to` where the
field has them (assignee: account ids; priority: priority ids), names as the strings."""

from __future__ import annotations

from typing import Any

from jira_pipeline_tests.fakejira.jira_pages import basic_client, ok_json
from jira_pipeline_tests.openapi import assert_valid_response


def test_an_assignee_and_priority_edit_is_written_with_ids_and_names(
    fake_jira_factory: Any,
) -> None:
    fake = fake_jira_factory(issues=20, seed=3)
    issue = fake.admin.issues()[0]
    with basic_client(fake) as client:
        users = ok_json(client.get("/rest/api/3/users/search", params={"maxResults": 1000}))
        someone = next(user for user in users if user.get("accountType") == "atlassian")
        fake.admin.touch_issue(issue["key"], {"assignee": {"accountId": someone["accountId"]},
                                              "priority": {"name": "Lowest"}})
        path = f"/rest/api/3/issue/{issue['id']}/changelog"
        body = ok_json(client.get(path, params={"maxResults": 100}))
    assert_valid_response("GET", "/rest/api/3/issue/{issueIdOrKey}/changelog", 200, body)
    last = body["values"][-1]["items"]
    assignee = next(item for item in last if item["field"] == "assignee")
    priority = next(item for item in last if item["field"] == "priority")
    assert (assignee["to"], assignee["toString"]) == (someone["accountId"],
                                                      someone["displayName"])
    assert (priority["to"], priority["toString"]) == ("5", "Lowest")
    assert priority["from"] in {"1", "2", "3", "4"} and priority["fromString"]
