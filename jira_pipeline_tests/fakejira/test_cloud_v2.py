"""In Cloud mode the fake serves REST v2 beside v3, as Jira Cloud does, for clients written
against v2 (the Singer tap, for one): the same operations, rich text as plain strings.

Which document validates these bodies: Atlassian's v2 OpenAPI document (swagger-v2.v3.json)
could not be obtained through the project's tools, so every v2 body is validated against its
v3 twin's schema in the vendored v3 document, and, because the v3 schemas leave rich-text
properties untyped, `assert_valid_v2_response` also requires every rich text (description,
environment, comment and worklog bodies, textarea custom fields) to be a string and no ADF
document to appear anywhere in the body.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from jira_pipeline.fakejira import FakeJiraHandle
from jira_pipeline.fakejira.render import adf_text
from jira_pipeline_tests.fakejira.jira_pages import basic_client, error_messages, ok_json
from jira_pipeline_tests.fakejira.oauth_flow import bearer, exchange_code
from jira_pipeline_tests.openapi import adf_locations, assert_valid_v2_response

ALL = {"fields": "*all", "expand": "changelog,renderedFields,names"}


def _walk_v2_search(client: httpx.Client, jql: str, method: str, prefix: str = "") -> list[dict]:
    """Every issue of a v2 search/jql walk, each page validated as a v2 body."""
    path = f"{prefix}/rest/api/2/search/jql"
    issues: list[dict] = []
    token: str | None = None
    for _ in range(100):
        request: dict[str, Any] = {"jql": jql, "maxResults": 50, **ALL}
        if token:
            request["nextPageToken"] = token
        if method == "GET":
            response = client.get(path, params=request)
        else:
            response = client.post(path, json={**request, "fields": ["*all"]})
        page = ok_json(response)
        assert_valid_v2_response(method, path, 200, page)
        issues.extend(page["issues"])
        if page["isLast"]:
            return issues
        token = page["nextPageToken"]
    raise AssertionError("v2 search/jql never reported isLast")


def _walk_v3_search(client: httpx.Client, jql: str) -> list[dict]:
    issues: list[dict] = []
    token: str | None = None
    for _ in range(100):
        request: dict[str, Any] = {"jql": jql, "maxResults": 50, **ALL, "fields": ["*all"]}
        if token:
            request["nextPageToken"] = token
        page = ok_json(client.post("/rest/api/3/search/jql", json=request))
        issues.extend(page["issues"])
        if page["isLast"]:
            return issues
        token = page["nextPageToken"]
    raise AssertionError("v3 search/jql never reported isLast")


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/rest/api/2/myself", {}),
        ("/rest/api/2/serverInfo", {}),
        ("/rest/api/2/project/search", {"maxResults": 2}),
        ("/rest/api/2/statuses/search", {}),
        ("/rest/api/2/status", {}),
        ("/rest/api/2/users/search", {"maxResults": 1000}),
        ("/rest/api/2/field", {}),
    ],
)
def test_cloud_serves_v2_reference_endpoints(
    reader: httpx.Client, path: str, params: dict[str, Any]
) -> None:
    body = ok_json(reader.get(path, params=params))
    assert body, f"{path} answered an empty body"
    assert_valid_v2_response("GET", path, 200, body)
    v3 = ok_json(reader.get(path.replace("/rest/api/2/", "/rest/api/3/"), params=params))
    # The same data: only the links say which version served it.
    assert _without_links(body) == _without_links(v3)


def _without_links(body: Any) -> Any:
    if isinstance(body, dict):
        return {k: _without_links(v) for k, v in body.items()
                if k not in ("self", "nextPage", "serverTime") and not str(v).startswith("http")}
    if isinstance(body, list):
        return [_without_links(v) for v in body]
    return body


def test_cloud_v2_users_are_cloud_users(reader: httpx.Client) -> None:
    """Cloud v2 names users by accountId, as v3 does; Data Center's key and name are absent."""
    me = ok_json(reader.get("/rest/api/2/myself"))
    assert me["accountId"] and me["accountType"] == "atlassian"
    assert "key" not in me and "name" not in me
    assert me["self"].endswith(f"/rest/api/2/user?accountId={me['accountId']}")
    server = ok_json(reader.get("/rest/api/2/serverInfo"))
    assert server["deploymentType"] == "Cloud"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_v2_search_jql_sends_the_v3_issues_with_plain_text(
    reader: httpx.Client, read_only_fake: FakeJiraHandle, method: str
) -> None:
    projects = ", ".join(sorted({i["project_key"] for i in read_only_fake.admin.issues()}))
    jql = f"project in ({projects}) ORDER BY key"
    v2 = _walk_v2_search(reader, jql, method)
    v3 = _walk_v3_search(reader, jql)
    assert len(v2) == len(read_only_fake.admin.issues()) == len(v3)
    assert [i["key"] for i in v2] == [i["key"] for i in v3]
    described = commented = logged = 0
    for old, new in zip(v2, v3, strict=True):
        assert old["self"].endswith(f"/rest/api/2/issue/{old['id']}")
        assert old["fields"]["updated"] == new["fields"]["updated"]
        assert old["fields"]["status"]["id"] == new["fields"]["status"]["id"]
        if new["fields"]["description"] is None:
            assert old["fields"]["description"] is None
        else:
            described += 1
            assert old["fields"]["description"] == adf_text(new["fields"]["description"])
        for plain, rich in zip(old["fields"]["comment"]["comments"],
                               new["fields"]["comment"]["comments"], strict=True):
            commented += 1
            assert plain["body"] == adf_text(rich["body"])
        for plain, rich in zip(old["fields"]["worklog"]["worklogs"],
                               new["fields"]["worklog"]["worklogs"], strict=True):
            logged += 1
            assert plain["comment"] == adf_text(rich["comment"])
        assert old["changelog"]["total"] == new["changelog"]["total"]
        assert old["renderedFields"]["description"] == new["renderedFields"]["description"]
    # The walk saw every kind of rich text, so the checks above compared something.
    assert described and commented and logged


def test_v2_issue_comment_and_worklog_endpoints_send_plain_text(
    reader: httpx.Client, read_only_fake: FakeJiraHandle
) -> None:
    keys = [i["key"] for i in read_only_fake.admin.issues()]
    comments = worklogs = 0
    for key in keys[:40]:
        issue = ok_json(reader.get(f"/rest/api/2/issue/{key}"))
        assert_valid_v2_response("GET", f"/rest/api/2/issue/{key}", 200, issue)
        page = ok_json(reader.get(f"/rest/api/2/issue/{key}/comment"))
        assert_valid_v2_response("GET", f"/rest/api/2/issue/{key}/comment", 200, page)
        comments += len(page["comments"])
        logs = ok_json(reader.get(f"/rest/api/2/issue/{key}/worklog"))
        assert_valid_v2_response("GET", f"/rest/api/2/issue/{key}/worklog", 200, logs)
        worklogs += len(logs["worklogs"])
        changes = ok_json(reader.get(f"/rest/api/2/issue/{key}/changelog"))
        assert_valid_v2_response("GET", f"/rest/api/2/issue/{key}/changelog", 200, changes)
    assert comments and worklogs


def test_rich_text_custom_fields_and_environment_are_strings_in_v2(
    fake_jira_factory: Any,
) -> None:
    fake = fake_jira_factory(issues=5)
    key = fake.admin.issues()[0]["key"]
    doc = {"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": "Runs on "},
                                          {"type": "text", "text": "Linux", "marks": [
                                              {"type": "strong"}]}]},
        {"type": "bulletList", "content": [{"type": "listItem", "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": "kernel 6"}]}]}]},
    ]}
    fake.admin.set_raw_fields(key, {"environment": doc, "customfield_10099": doc})
    with basic_client(fake) as client:
        v2 = ok_json(client.get(f"/rest/api/2/issue/{key}"))
        v3 = ok_json(client.get(f"/rest/api/3/issue/{key}"))
    assert_valid_v2_response("GET", f"/rest/api/2/issue/{key}", 200, v2)
    assert v2["fields"]["environment"] == "Runs on Linux\n\nkernel 6"
    assert v2["fields"]["customfield_10099"] == "Runs on Linux\n\nkernel 6"
    assert v3["fields"]["environment"] == doc and v3["fields"]["customfield_10099"] == doc


def test_the_v2_validator_rejects_adf(fake_jira_factory: Any) -> None:
    """The check above can fail: a v3 body (ADF) does not pass as a v2 one."""
    fake = fake_jira_factory(issues=5)
    key = next(i["key"] for i in fake.admin.issues())
    with basic_client(fake) as client:
        v3 = ok_json(client.get(f"/rest/api/3/issue/{key}/comment"))
    assert adf_locations(v3)
    with pytest.raises(AssertionError, match="ADF found"):
        assert_valid_v2_response("GET", f"/rest/api/2/issue/{key}/comment", 200, v3)


def test_v2_removed_search_and_errors_are_cloud_answers(reader: httpx.Client) -> None:
    assert error_messages(reader.get("/rest/api/2/search", params={"jql": "created >= 0"}), 410)
    assert error_messages(reader.get("/rest/api/2/project/NOSUCH"), 404)
    assert error_messages(reader.get("/rest/api/2/search/jql", params={"jql": "updated >> 5"}),
                          400)


def test_v2_needs_credentials(read_only_fake: FakeJiraHandle) -> None:
    with httpx.Client(base_url=read_only_fake.base_url) as anonymous:
        assert error_messages(anonymous.get("/rest/api/2/myself"), 401)


def test_v2_is_served_behind_the_oauth_gateway(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(issues=10)
    with httpx.Client(base_url=fake.base_url) as client:
        tokens = exchange_code(client, fake)
        prefix = f"/ex/jira/{fake.cloud_id}"
        me = ok_json(client.get(f"{prefix}/rest/api/2/myself",
                                headers=bearer(tokens["access_token"])))
        assert_valid_v2_response("GET", f"{prefix}/rest/api/2/myself", 200, me)
        client.headers.update(bearer(tokens["access_token"]))
        issues = _walk_v2_search(client, "created >= 0 ORDER BY key", "POST", prefix)
    assert len(issues) == 10


def test_datacenter_still_serves_no_v3(fake_jira_factory: Any) -> None:
    fake = fake_jira_factory(mode="datacenter", issues=5)
    headers = {"Authorization": f"Bearer {fake.config.pat}"}
    with httpx.Client(base_url=fake.base_url, headers=headers) as client:
        assert client.get("/rest/api/3/myself").status_code == 404
        me = ok_json(client.get("/rest/api/2/myself"))
    assert me["name"] and "accountId" not in me
